"""Bad input: every error names the path (and the expected layout), and scripts/check_data.py."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srha_hf.data import (
    BenchmarkError,
    BenchmarkLayoutError,
    SizeMismatchError,
    UnreadableFileError,
    load_benchmark,
)

REPO = Path(__file__).resolve().parents[1]


def make_bdd(root, sizes=((16, 8),), split="val", label_suffix=".png"):
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "images" / split / f"im{i}.jpg")
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "labels" / split / f"im{i}{label_suffix}")


def test_missing_root_names_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_benchmark("cityscapes", missing, "val")
    assert str(missing) in str(err.value) and "leftImg8bit" in str(err.value)
    assert isinstance(err.value, BenchmarkLayoutError)


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'kitti'.*gtav, synthia, cityscapes, bdd100k, mapillary"):
        load_benchmark("kitti", tmp_path, "val")
    with pytest.raises(ValueError, match="unknown split 'test' for mapillary; expected one of train, val"):
        load_benchmark("mapillary", tmp_path, "test")
    with pytest.raises(ValueError, match="unknown split 'training'"):
        load_benchmark("gtav", tmp_path, "training")


def test_wrong_layout_names_the_missing_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(BenchmarkLayoutError) as err:
        load_benchmark("synthia", tmp_path, "train")
    assert str(tmp_path / "RGB") in str(err.value) and "GT/LABELS" in str(err.value)
    # GTAV flat layout without a split list
    (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "images/00001.png")
    with pytest.raises(BenchmarkLayoutError, match="gtav_split_train.txt.*split.mat"):
        load_benchmark("gtav", tmp_path, "train")


def test_empty_folder(tmp_path):
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "labels/val").mkdir(parents=True)
    with pytest.raises(BenchmarkLayoutError) as err:
        load_benchmark("bdd100k", tmp_path, "val")
    assert "no images" in str(err.value) and str(tmp_path) in str(err.value)
    assert "images/{train,val,test}/<name>.jpg" in str(err.value)


def test_mapillary_config_is_checked(tmp_path):
    (tmp_path / "validation/images").mkdir(parents=True)
    (tmp_path / "validation/labels").mkdir(parents=True)
    with pytest.raises(BenchmarkLayoutError, match="config.json"):
        load_benchmark("mapillary", tmp_path, "val")
    (tmp_path / "config.json").write_text(json.dumps({"labels": [{"name": f"c{i}"} for i in range(124)]}))
    with pytest.raises(BenchmarkError, match="lists 124 labels; expected the Mapillary Vistas v1.2 config with 66"):
        load_benchmark("mapillary", tmp_path, "val")


def test_unreadable_files_are_named(tmp_path):
    make_bdd(tmp_path, ((16, 8), (16, 8)))
    bad_image = tmp_path / "images/val/im1.jpg"
    bad_image.write_bytes(b"this is not a jpeg")
    with pytest.raises(UnreadableFileError, match=str(bad_image)):
        load_benchmark("bdd100k", tmp_path, "val")
    # without the header pass, the error comes when the example is read
    ds = load_benchmark("bdd100k", tmp_path, "val", check_sizes=False)
    with pytest.raises(UnreadableFileError, match=str(bad_image)):
        ds[1]
    bad_label = tmp_path / "labels/val/im0.png"
    bad_label.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(UnreadableFileError, match=str(bad_label)):
        ds[0]


def test_wrong_label_encoding_is_named(tmp_path):
    make_bdd(tmp_path)
    rgb_label = tmp_path / "labels/val/im0.png"
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(rgb_label)
    ds = load_benchmark("bdd100k", tmp_path, "val")
    with pytest.raises(UnreadableFileError, match=f"{rgb_label}.*mode 'RGB'.*single-channel"):
        ds[0]


def test_size_mismatch_excluded_with_warning_or_strict_error(tmp_path):
    make_bdd(tmp_path, ((16, 8), (16, 8), (12, 8)))
    Image.fromarray(np.zeros((8, 15), np.uint8)).save(tmp_path / "labels/val/im1.png")
    with pytest.warns(UserWarning) as record:
        ds = load_benchmark("bdd100k", tmp_path, "val")
    message = str(record[0].message)
    assert "im1.jpg (16x8)" in message and "im1.png (15x8)" in message and "left out" in message
    assert list(ds.with_format(None)["name"]) == ["im0", "im2"]
    with pytest.raises(SizeMismatchError, match="im1.jpg"):
        load_benchmark("bdd100k", tmp_path, "val", strict=True)


def test_missing_pairs_excluded_with_warning_or_strict_error(tmp_path):
    make_bdd(tmp_path, ((16, 8), (16, 8)))
    (tmp_path / "labels/val/im1.png").unlink()
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(tmp_path / "labels/val/orphan.png")
    with pytest.warns(UserWarning, match="1 image\\(s\\) without a label and 1 label\\(s\\) without an image") as record:
        ds = load_benchmark("bdd100k", tmp_path, "val")
    assert "im1.jpg" in str(record[0].message) and "orphan.png" in str(record[0].message)
    assert len(ds) == 1
    with pytest.raises(BenchmarkError, match="im1.jpg"):
        load_benchmark("bdd100k", tmp_path, "val", strict=True)


def test_no_warning_for_a_clean_dataset(tmp_path):
    make_bdd(tmp_path, ((16, 8),), label_suffix="_train_id.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_benchmark("bdd100k", tmp_path, "val")) == 1


# ---- scripts/check_data.py -----------------------------------------------------------------------


def test_check_data_report(tmp_path, check_data, capsys):
    make_bdd(tmp_path, ((16, 8), (16, 8), (16, 8)), split="train")
    Image.fromarray(np.zeros((8, 15), np.uint8)).save(tmp_path / "labels/train/im1.png")  # size mismatch
    Image.fromarray(np.array([[0, 19, 77, 255] * 4] * 8, np.uint8)).save(tmp_path / "labels/train/im2.png")
    (tmp_path / "labels/train/im0.png").unlink()  # missing pair
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(tmp_path / "labels/train/ghost.png")
    report_path = tmp_path / "report.json"
    rc = check_data.main([str(tmp_path), "--dataset", "bdd100k", "--split", "train", "val", "--json", str(report_path)])
    out = capsys.readouterr()
    assert rc == 1
    text = out.out
    assert "images: 3  labels: 3  pairs: 2" in text
    assert "images without a label: 1" in text and "im0.jpg" in text
    assert "labels without an image: 1" in text and "ghost.png" in text
    assert "image/label size mismatches: 1" in text and "im1.png (15x8)" in text
    assert "unknown label values: 2" in text and "19: in 1 file(s)" in text and "77: in 1 file(s)" in text
    assert "[val]" in text and "folder not found" in text
    assert "%" in out.err or "file" in out.err  # the progress bar
    report = json.loads(report_path.read_text())
    assert report["splits"][0]["pairs"] == 2


def test_check_data_clean_dataset_and_bad_root(tmp_path, check_data, capsys):
    make_bdd(tmp_path, ((16, 8),))
    assert check_data.main([str(tmp_path), "--dataset", "bdd100k", "--split", "val", "--no-progress"]) == 0
    assert "OK: no problems found" in capsys.readouterr().out
    assert check_data.main([str(tmp_path / "nope"), "--dataset", "bdd100k"]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_check_data_reports_unknown_gtav_colours_and_skips_absent_splits(tmp_path, check_data, capsys):
    for split in ("train",):
        (tmp_path / "images" / split / "01").mkdir(parents=True)
        (tmp_path / "labels" / split / "01").mkdir(parents=True)
    label = np.zeros((6, 8, 3), np.uint8)
    label[0, 0] = (128, 64, 128)
    label[1, 1] = (1, 2, 3)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "images/train/01/00001.png")
    Image.fromarray(label).save(tmp_path / "labels/train/01/00001.png")
    assert check_data.main([str(tmp_path), "--dataset", "gtav", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "RGB(1,2,3): in 1 file(s)" in out and "RGB(0,0,0)" not in out
    assert "[val]\n  not present" in out and "PROBLEMS: 1" in out
