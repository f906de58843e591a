"""GTAV split lists (the official split.mat, SRHA's text lists) in both layouts, and image/label size
mismatches handled as the reference does (the next matching pair is read) or dropped."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from srha_hf.data import describe_dataset, load_benchmark, read_gtav_split_file
from srha_hf.data.benchmarks import GTAV_EXCLUDED_TRAIN_IDS, BenchmarkError, BenchmarkLayoutError, substitute_next
from srha_hf.training import load_config

REPO = Path(__file__).resolve().parents[1]
ROAD, SKY = (128, 64, 128), (70, 130, 180)


def write_pair(root, split_dir, name, size=(8, 6), label_size=None, value=0, folder="01"):
    """A GTAV image (its pixels all ``value``) and an RGB colour label (road) in the given layout."""
    w, h = size
    lw, lh = label_size or size
    img_dir = root / "images" / split_dir / folder if split_dir else root / "images"
    lab_dir = root / "labels" / split_dir / folder if split_dir else root / "labels"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(img_dir / f"{name}.png")
    Image.fromarray(np.broadcast_to(np.array(ROAD, np.uint8), (lh, lw, 3)).copy()).save(lab_dir / f"{name}.png")


def names(ds):
    return list(ds.with_format(None)["name"])


def test_presplit_layout_with_a_text_list(tmp_path):
    for i in (1, 2, 3, 4):
        write_pair(tmp_path, "train", f"{i:05d}", folder="01" if i < 3 else "02")
    assert len(load_benchmark("gtav", tmp_path, "train")) == 4  # no list: every PNG of images/train
    listing = tmp_path / "gtav_split_train.txt"
    listing.write_text("00001.png\n00004.png\n\n00009.png\n")  # 00009 is not on disk
    with pytest.warns(UserWarning, match=r"1 name\(s\) of .*gtav_split_train.txt \(3\) have no image on disk\n  00009"):
        ds = load_benchmark("gtav", tmp_path, "train", split_file=listing)
    assert names(ds) == ["01/00001", "02/00004"]
    info = json.loads(ds.info.description)["split_list"]
    assert (info["entries"], info["found"], info["listed_not_on_disk"], info["on_disk_not_listed"]) == (3, 2, 1, 2)
    line = describe_dataset(ds)
    assert "gtav train: 2 pairs" in line and "split list: 3 names, 2 found, 1 not on disk, 2 on disk but not listed" in line
    with pytest.raises(BenchmarkError, match="00009"):
        load_benchmark("gtav", tmp_path, "train", split_file=listing, strict=True)


def test_split_mat_in_both_layouts_drops_the_16_ids_from_train(tmp_path):
    ids = [12159, 12160, 15188, 19993, 19994]
    mat = tmp_path / "split.mat"
    savemat(mat, {"trainIds": np.array([ids]).T, "valIds": np.array([[20000]]), "testIds": np.array([[1]])})
    got, source = read_gtav_split_file(mat, "train")
    assert got == ["12159", "19994"] and "trainIds (5) minus SRHA's 3 excluded IDs (2)" in source
    assert read_gtav_split_file(mat, "val")[0] == ["20000"]
    assert {12160, 15188, 19993} <= set(GTAV_EXCLUDED_TRAIN_IDS)

    presplit = tmp_path / "presplit"
    for i in ids + [30000]:
        write_pair(presplit, "train", f"{i:05d}")
    write_pair(presplit, "valid", "20000")
    ds = load_benchmark("gtav", presplit, "train", split_file=mat)
    assert names(ds) == ["01/12159", "01/19994"]
    assert names(load_benchmark("gtav", presplit, "val", split_file=mat)) == ["01/20000"]

    flat = tmp_path / "flat"
    for i in ids + [20000]:
        write_pair(flat, None, f"{i:05d}")
    (flat / "split_data").mkdir()
    (flat / "split_data/gtav_split_train.txt").write_text("12159.png\n12160.png\n")  # found under the root ...
    assert names(load_benchmark("gtav", flat, "train")) == ["12159", "12160"]
    assert names(load_benchmark("gtav", flat, "train", split_file=mat)) == ["12159", "19994"]  # ... an explicit file wins


def test_split_file_forms_and_errors(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "gtav_split_train.txt").write_text("00001\n00002.png\n")
    (folder / "gtav_split_val.txt").write_text("00003.png\n")
    assert read_gtav_split_file(folder, "train")[0] == ["00001", "00002"]
    assert read_gtav_split_file(str(folder / "gtav_split_{split}.txt"), "val")[0] == ["00003"]
    with pytest.raises(BenchmarkLayoutError, match="gtav_split_test.txt"):
        read_gtav_split_file(folder, "test")
    savemat(tmp_path / "other.mat", {"foo": np.array([[1]])})
    with pytest.raises(BenchmarkError, match=r"other.mat has no 'trainIds' array \(it holds foo\)"):
        read_gtav_split_file(tmp_path / "other.mat", "train")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(BenchmarkError, match="empty.txt: the split list is empty"):
        read_gtav_split_file(tmp_path / "empty.txt", "train")
    with pytest.raises(ValueError, match="split_file is for GTAV"):
        load_benchmark("bdd100k", tmp_path, "val", split_file=folder)


def loop_substitute(n, bad):
    """docs/method.md §6.2's runtime skip as a plain loop: move to the next index, wrapping to 0, until it is good."""
    out = []
    for i in range(n):
        j = i
        while j in bad:
            j = (j + 1) % n
        out.append(j)
    return out


def test_substitute_next_equals_the_loop():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        bad = sorted(set(rng.integers(0, n, int(rng.integers(0, n))).tolist()))
        if len(bad) == n:
            continue
        assert substitute_next(n, bad) == loop_substitute(n, set(bad)), (n, bad)


def test_size_mismatch_reads_the_next_pair_or_drops_it(tmp_path):
    for i in range(5):  # 00001 and the last one, 00004, have labels of another size
        write_pair(tmp_path, "train", f"{i:05d}", value=10 * i, label_size=(7, 6) if i in (1, 4) else None)
    with pytest.warns(UserWarning) as record:
        ds = load_benchmark("gtav", tmp_path, "train")  # GTAV default: "next"
    message = str(record[0].message)
    assert "2 image/label pair(s) differ in size" in message and "00001.png (8x6) vs" in message
    assert "01/00001 -> 01/00002" in message and "01/00004 -> 01/00000" in message  # wraps around to 0
    assert names(ds) == ["01/00000", "01/00002", "01/00002", "01/00003", "01/00000"]  # the length is kept
    assert np.asarray(ds[1]["image"])[0, 0, 0] == 20 and np.asarray(ds[4]["image"])[0, 0, 0] == 0
    assert np.asarray(ds[1]["label"]).shape == (6, 8)
    assert json.loads(ds.info.description)["size_mismatches"] == {"rule": "next", "pairs": ["01/00001", "01/00004"]}
    assert "2 image/label size mismatch(es), each read as the next matching pair" in describe_dataset(ds)

    with pytest.warns(UserWarning, match="these pairs are left out"):
        dropped = load_benchmark("gtav", tmp_path, "train", size_mismatch="drop")
    assert names(dropped) == ["01/00000", "01/00002", "01/00003"]
    with pytest.raises(ValueError, match="size_mismatch='skip'; expected one of next, drop"):
        load_benchmark("gtav", tmp_path, "train", size_mismatch="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with no mismatch there is nothing to say
        write_pair(tmp_path / "clean", "train", "00000")
        assert len(load_benchmark("gtav", tmp_path / "clean", "train")) == 1


def test_check_data_reports_the_split_list_and_the_mismatched_files(tmp_path, check_data, capsys):
    for i in range(4):
        write_pair(tmp_path, "train", f"{i:05d}", label_size=(7, 6) if i == 2 else None)
    listing = tmp_path / "list.txt"
    listing.write_text("00000\n00002\n00003\n00042\n")
    report_path = tmp_path / "report.json"
    rc = check_data.main([str(tmp_path), "--dataset", "gtav", "--split", "train", "--gtav_split_file", str(listing),
                          "--no-progress", "--json", str(report_path)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 1
    assert f"split list: {listing} (4): 4 names, 3 pairs found, 1 pair(s) on disk not listed" in text
    assert "names of the split list not on disk: 1\n    00042" in text
    assert "image/label size mismatches: 1" in text and "the loader's size_mismatch 'next'" in text
    assert "00002.png (7x6) -> read as 01/00003" in text
    report = json.loads(report_path.read_text())["splits"][0]
    assert report["split_list"]["found"] == 3 and report["size_mismatch_rule"] == "next"
    assert check_data.main([str(tmp_path), "--dataset", "gtav", "--split", "train", "--size_mismatch", "drop", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "the loader's size_mismatch 'drop': left out" in text and "read as" not in text


def test_the_recipe_key_selects_the_split_file_per_split(tmp_path):
    (tmp_path / "lists").mkdir()
    single = str(tmp_path / "train.txt")
    c = load_config(None, {"gtav_split_file": single})
    assert c.split_file_for("gtav", "train") == single
    assert c.split_file_for("gtav", "val") is None and c.split_file_for("cityscapes", "train") is None
    c = load_config(None, {"source_dataset": "cityscapes", "gtav_split_file": single})
    assert c.split_file_for("gtav", "val") is None  # a single text list is the source's training list
    for shared in (str(tmp_path / "split.mat"), str(tmp_path / "lists"), str(tmp_path / "gtav_split_{split}.txt")):
        c = load_config(None, {"source_dataset": "cityscapes", "gtav_split_file": shared})
        assert c.split_file_for("gtav", "val") == shared
    assert load_config(None, {}).size_mismatch is None
    with pytest.raises(ValueError, match="size_mismatch must be 'next', 'drop' or null, got 'skip'"):
        load_config(None, {"size_mismatch": "skip"})
