"""The embedded synthetic benchmark: real layouts, decodable, deterministic, idempotent, shifted."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from srha_hf.data import load_benchmark
from srha_hf.data import synthetic as S

SMALL = dict(num_train=4, num_val=2, size=(96, 54), seed=3)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return root, S.make_synthetic_benchmark(root, **SMALL)


def make_synthetic_data_script():
    """``scripts/make_synthetic_data.py`` as a fresh module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic_data.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_real_layouts_on_disk(bench):
    root, roots = bench
    assert set(roots) == {"gtav", "cityscapes", "bdd100k", "mapillary", "synthia"}
    assert (root / "gtav/images/train/01/00001.png").is_file() and (root / "gtav/labels/valid/01/00005.png").is_file()
    assert Image.open(root / "gtav/labels/train/01/00001.png").mode == "P"
    assert sorted(p.name for p in (root / "cityscapes/gtFine_trainvaltest/gtFine/val/frankfurt").iterdir()) == [
        "frankfurt_000000_000000_gtFine_labelIds.png", "frankfurt_000000_000001_gtFine_labelIds.png"]  # fmt: skip
    assert len(list((root / "bdd100k/labels/train").glob("*_train_id.png"))) == 4
    assert len(json.loads((root / "mapillary/config.json").read_text())["labels"]) == 66
    import cv2

    label = cv2.imread(str(next((root / "synthia/GT/LABELS/train").glob("*.png"))), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint16 and label.shape[2] == 3 and label[..., 1].max() > 255


@pytest.mark.parametrize("name", ["gtav", "cityscapes", "bdd100k", "mapillary", "synthia"])
def test_every_dataset_decodes_to_its_scene(bench, name):
    _, roots = bench
    for split_id, split in enumerate(("train", "val")):
        ds = load_benchmark(name, roots[name], split)
        assert len(ds) == SMALL[f"num_{split}"]
        offset = 0 if split == "train" else SMALL["num_train"]
        for row in range(len(ds)):
            ex = ds[row]
            # files sort by name; Cityscapes names (city_seq_frame) are ordered by city first
            i = int(ex["name"].rsplit("_", 1)[-1]) if name == "cityscapes" else row
            w, h = S.domain_size(name, SMALL["size"], offset + i)
            rng = np.random.default_rng([SMALL["seed"], S._DOMAIN_KEY[name], split_id, i])
            kinds = S.draw_scene(w, h, rng)
            assert ex["image"].size == (w, h)
            np.testing.assert_array_equal(np.asarray(ex["label"]), S.train_ids_of_kinds(name)[kinds])


def test_all_classes_and_dataset_specific_label_rules(bench):
    _, roots = bench
    seen = set()
    for i in range(SMALL["num_train"]):
        seen |= set(np.unique(np.asarray(load_benchmark("cityscapes", roots["cityscapes"], "train")[i]["label"])).tolist())
    assert set(range(19)) <= seen and 255 in seen
    # lane markings: road in Mapillary/Cityscapes/GTAV/BDD, ignore in Synthia
    assert S.train_ids_of_kinds("mapillary")[S.LANE_MARKING] == 0
    assert S.train_ids_of_kinds("synthia")[S.LANE_MARKING] == 255
    # every kind that is one of the 19 classes decodes to itself everywhere
    for name in S.DOMAINS:
        np.testing.assert_array_equal(S.train_ids_of_kinds(name)[:19], np.arange(19))
    # mapillary has portrait images (every fifth)
    assert S.domain_size("mapillary", (96, 54), 4)[0] < S.domain_size("mapillary", (96, 54), 4)[1]


def test_deterministic_and_idempotent(bench, tmp_path):
    root, _ = bench
    first = digest(root)
    S.make_synthetic_benchmark(tmp_path / "again", **SMALL)
    assert digest(tmp_path / "again") == first
    marker = root / S.MARKER
    mtime = marker.stat().st_mtime_ns
    label = root / "gtav/labels/train/01/00001.png"
    label_mtime = label.stat().st_mtime_ns
    S.make_synthetic_benchmark(root, **SMALL)  # complete and matching: nothing rewritten
    assert marker.stat().st_mtime_ns == mtime and label.stat().st_mtime_ns == label_mtime
    other = dict(SMALL, seed=4)
    S.make_synthetic_benchmark(tmp_path / "again", **other)  # other arguments: regenerated
    assert digest(tmp_path / "again") != first
    assert json.loads((tmp_path / "again" / S.MARKER).read_text())["seed"] == 4


def test_interrupted_generation_is_redone_and_foreign_folders_are_kept(tmp_path):
    root = tmp_path / "bench"
    S.make_synthetic_benchmark(root, num_train=1, num_val=1, size=(64, 36))
    (root / S.MARKER).unlink()  # as if killed before the marker was written
    (root / S.PARTIAL).write_text("{}")
    (root / "gtav/images/train/01/00001.png").write_bytes(b"half written")
    S.make_synthetic_benchmark(root, num_train=1, num_val=1, size=(64, 36))
    assert Image.open(root / "gtav/images/train/01/00001.png").size == (64, 36)
    assert not (root / S.PARTIAL).exists()

    foreign = tmp_path / "mine"
    (foreign / "cityscapes").mkdir(parents=True)
    (foreign / "cityscapes/keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        S.make_synthetic_benchmark(foreign, num_train=1, num_val=1, size=(64, 36))
    assert (foreign / "cityscapes/keep.txt").read_text() == "user data"


def test_targets_shift_each_class_differently(bench):
    """The regional shift: per-class mean colour moves between source and target by different
    amounts and directions for different classes."""
    _, roots = bench

    def class_means(name):
        sums, counts = np.zeros((19, 3)), np.zeros(19)
        ds = load_benchmark(name, roots[name], "train")
        for i in range(len(ds)):
            image = np.asarray(ds[i]["image"], dtype=np.float64).reshape(-1, 3)
            label = np.asarray(ds[i]["label"]).ravel()
            keep = label < 19
            sums += np.stack([np.bincount(label[keep], image[keep, c], minlength=19) for c in range(3)], 1)
            counts += np.bincount(label[keep], minlength=19)
        return sums / counts[:, None]

    source = class_means("gtav")
    for target in ("cityscapes", "bdd100k", "mapillary"):
        shift = class_means(target) - source
        big = [0, 1, 2, 8, 9, 10]  # classes with enough pixels for stable means
        magnitude = np.linalg.norm(shift[big], axis=1)
        assert magnitude.max() > 20
        # not one global offset: the per-class shifts differ from their mean by a lot
        assert np.linalg.norm(shift[big] - shift[big].mean(0), axis=1).max() > 15


def test_make_synthetic_data_script(tmp_path, capsys):
    module = make_synthetic_data_script()
    assert module.main([str(tmp_path), "--num-train", "1", "--num-val", "1", "--size", "64", "36"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["roots"]["gtav"] == str(tmp_path / "gtav") and out["eval_transform_kwargs"]["gtav_size"] == [64, 36]
    assert len(load_benchmark("mapillary", tmp_path / "mapillary", "val")) == 1


def test_random_look_draws_other_scenes_with_a_look_of_their_own_per_image():
    """A generic corpus (random_look): other scenes than the benchmark's, each image painted afresh, so that a
    kind's colour varies from image to image far more than the benchmark's +-8 % brightness; deterministic."""
    kinds, colours = [], {False: [], True: []}
    for random_look in (False, True):
        for index in range(6):
            kind, image = S.render_sample("gtav", "train", index, 192, 108, random_look=random_look)
            kinds.append(kind)
            colours[random_look].append([np.median(image[kind == k], axis=0) for k in (0, 10)])  # road, sky
    for index in range(6):
        assert not np.array_equal(kinds[index], kinds[6 + index])  # another scene
    spread = {look: np.asarray(c, np.float64).std(axis=0).max() for look, c in colours.items()}
    assert spread[False] < 12 and spread[True] > 35, spread
    again = S.render_sample("gtav", "train", 3, 192, 108, random_look=True)
    np.testing.assert_array_equal(again[1], S.render_sample("gtav", "train", 3, 192, 108, random_look=True)[1])
    with pytest.raises(ValueError, match="asks for a generic corpus but the appearance"):
        S.render_sample("bdd100k", "val", 0, 96, 54, random_look=True, appearance=S.SHIPPED)
    with pytest.raises(ValueError, match="unknown domain 'kitti'"):
        S.domain_appearance("kitti", 5)


def test_random_look_on_disk(bench, tmp_path):
    """The corpus is written in the same real formats, its marker says random_look, the benchmark's own files
    are other images; synthetic_random_look is no longer a training-config key, and says where it went."""
    from pathlib import Path

    from srha_hf.training import load_config
    from srha_hf.training.config import ConfigError

    root, _ = bench
    corpus = tmp_path / "generic"
    S.make_synthetic_benchmark(corpus, **SMALL, random_look=True)
    assert json.loads((corpus / S.MARKER).read_text()) == {**json.loads((root / S.MARKER).read_text()), "random_look": True}
    for name in S.DOMAINS:
        a, b = load_benchmark(name, root / name, "train"), load_benchmark(name, corpus / name, "train")
        assert len(a) == len(b) and not np.array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    moved = r"synthetic_random_look \(--synthetic_random_look\) is no longer a training-config key: .*pretrain_data: generic"
    with pytest.raises(ConfigError, match=moved):
        load_config(demo, {"synthetic_random_look": True})


def test_make_synthetic_data_script_writes_a_generic_corpus(tmp_path, capsys):
    module = make_synthetic_data_script()
    assert module.main([str(tmp_path / "corpus"), "--num-train", "1", "--num-val", "1", "--size", "64", "36", "--random-look"]) == 0
    assert json.loads((tmp_path / "corpus" / S.MARKER).read_text())["random_look"] is True
    capsys.readouterr()


@pytest.mark.parametrize("flag", ["--shift-scale", "--texture-shift=0", "--class-colour-spread", "--class-pattern"])
def test_make_synthetic_data_script_names_where_the_trial_flags_went(tmp_path, capsys, flag):
    module = make_synthetic_data_script()
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "out"), flag, "2"] if "=" not in flag else [str(tmp_path / "out"), flag])
    assert exit_info.value.code == 2
    assert f"{flag.split('=')[0]} writes a trial benchmark: it moved to python -m experiments.make_trial_data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["synthetic_class_pattern", "synthetic_class_colour_spread"])
def test_a_recipe_with_a_trial_key_fails_naming_where_it_went(tmp_path, key):
    from srha_hf.training import load_config
    from srha_hf.training.config import ConfigError

    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"synthetic_data: true\n{key}: 25\n")
    moved = rf"{key} in {recipe} is no longer a training-config key: the feature moved to experiments/trial_benchmark.py"
    with pytest.raises(ConfigError, match=moved):
        load_config(recipe)


