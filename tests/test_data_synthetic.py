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


def assert_only_target_images_changed(root, other, min_mean_abs_diff=0.0):
    """``other`` has ``root``'s source files and every label, and other target images."""
    assert digest(other / "gtav") == digest(root / "gtav")
    for name in ("cityscapes", "bdd100k", "mapillary", "synthia"):
        a, b = load_benchmark(name, root / name, "val"), load_benchmark(name, other / name, "val")
        np.testing.assert_array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
        diff = np.abs(np.asarray(a[0]["image"], np.int16) - np.asarray(b[0]["image"], np.int16))
        assert diff.max() > 0 and diff.mean() > min_mean_abs_diff, name


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


def test_shift_scale_grows_only_the_per_class_colour_shift():
    """shift_scale multiplies each class's colour offset from the source palette (before clipping) and
    changes nothing else: same directions, textures and tone; the source is never shifted."""
    from srha_hf.data import synthetic_scene as scene

    base = scene._BASE_COLORS
    for domain in ("cityscapes", "bdd100k", "mapillary", "synthia"):
        one = scene.domain_appearance(domain, 5)
        for s in (0.0, 1.0, 1.8):
            look = scene.domain_appearance(domain, 5, shift_scale=s)
            # kinds whose shifted colour was not clipped at 0 or 255 at either scale
            inside = ((look.colors > 0) & (look.colors < 255) & (one.colors > 0) & (one.colors < 255)).all(axis=1)
            assert inside.sum() >= 10
            np.testing.assert_allclose(look.colors[inside] - base[inside], s * (one.colors[inside] - base[inside]), atol=1e-3)
            np.testing.assert_array_equal(look.texture, one.texture)
            assert (look.gain, look.offset, look.sat) == (one.gain, one.offset, one.sat)
    np.testing.assert_array_equal(scene.domain_appearance("gtav", 5, 2.0).colors, base)
    for bad in (-0.5, float("nan"), float("inf"), "big"):
        with pytest.raises(ValueError, match="shift_scale must be"):
            scene.domain_appearance("cityscapes", 5, shift_scale=bad)
    with pytest.raises(ValueError, match="unknown domain 'kitti'"):
        scene.domain_appearance("kitti", 5)


def test_shift_scale_on_disk(bench, tmp_path):
    """Scale 1 writes the benchmark as shipped (same files, same marker); another scale changes the
    target images only, keeps every label and the source, records the scale and regenerates."""
    root, _ = bench
    ones = tmp_path / "x1"
    S.make_synthetic_benchmark(ones, **SMALL, shift_scale=1.0)
    assert digest(ones) == digest(root)
    assert json.loads((ones / S.MARKER).read_text()) == json.loads((root / S.MARKER).read_text())
    assert "shift_scale" not in json.loads((root / S.MARKER).read_text())

    strong = tmp_path / "x2"
    S.make_synthetic_benchmark(strong, **SMALL, shift_scale=2.0)
    assert json.loads((strong / S.MARKER).read_text())["shift_scale"] == 2.0
    assert_only_target_images_changed(root, strong, min_mean_abs_diff=5)
    S.make_synthetic_benchmark(strong, **SMALL)  # back to scale 1: regenerated, as with any other argument
    assert digest(strong) == digest(root)
    with pytest.raises(ValueError, match="shift_scale must be a finite number >= 0, got -1"):
        S.make_synthetic_benchmark(tmp_path / "bad", **SMALL, shift_scale=-1)
    assert not (tmp_path / "bad").exists()


def test_make_synthetic_data_script_refuses_a_bad_shift_scale(tmp_path, capsys):
    module = make_synthetic_data_script()
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "out"), "--shift-scale", "-2"])
    assert exit_info.value.code == 2
    assert "--shift-scale: shift_scale must be a finite number >= 0, got -2.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_texture_shift_scales_only_the_per_class_texture_change():
    """texture_shift multiplies the log of each class's texture rescaling (amplitudes and stripe
    frequencies) and changes nothing else; 0 gives every target the source's textures."""
    from srha_hf.data import synthetic_scene as scene

    source = scene.domain_appearance("gtav", 5).texture
    for domain in ("cityscapes", "bdd100k", "mapillary", "synthia"):
        one = scene.domain_appearance(domain, 5)
        assert np.abs(one.texture - source).max() > 1  # the shipped targets do rescale textures
        np.testing.assert_array_equal(scene.domain_appearance(domain, 5, texture_shift=1.0).texture, one.texture)
        none = scene.domain_appearance(domain, 5, texture_shift=0.0)
        np.testing.assert_array_equal(none.texture, source)
        half = scene.domain_appearance(domain, 5, texture_shift=0.5)
        moved = source != 0  # zero entries stay zero at every value
        expected = 0.5 * np.log(one.texture[moved] / source[moved])
        np.testing.assert_allclose(np.log(half.texture[moved] / source[moved]), expected, rtol=1e-4, atol=1e-5)
        strong_flat = scene.domain_appearance(domain, 5, 1.8, texture_shift=0.0)
        np.testing.assert_array_equal(strong_flat.texture, source)
        for scale, look in ((1.0, none), (1.0, half), (1.8, strong_flat)):  # the colours do not depend on texture_shift
            np.testing.assert_array_equal(look.colors, scene.domain_appearance(domain, 5, scale).colors)
            assert (look.gain, look.offset, look.sat) == (one.gain, one.offset, one.sat)
    for bad in (-1, float("nan"), "rough"):
        with pytest.raises(ValueError, match="texture_shift must be"):
            scene.domain_appearance("cityscapes", 5, texture_shift=bad)


def test_texture_shift_on_disk(bench, tmp_path):
    """The default writes the benchmark as shipped (files and marker); 0 changes the target images only,
    keeps every label and the source, and records the value."""
    root, _ = bench
    ones = tmp_path / "t1"
    S.make_synthetic_benchmark(ones, **SMALL, texture_shift=1.0)
    assert digest(ones) == digest(root)
    assert "texture_shift" not in json.loads((ones / S.MARKER).read_text())
    flat = tmp_path / "t0"
    S.make_synthetic_benchmark(flat, **SMALL, texture_shift=0.0)
    assert json.loads((flat / S.MARKER).read_text())["texture_shift"] == 0.0
    assert_only_target_images_changed(root, flat)
    with pytest.raises(ValueError, match="texture_shift must be a finite number >= 0, got -1"):
        S.make_synthetic_benchmark(tmp_path / "bad", **SMALL, texture_shift=-1)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--texture-shift", "inf", "--texture-shift: texture_shift must be a finite number >= 0, got inf"),
        ("--class-colour-spread", "-1", "--class-colour-spread: class_colour_spread must be a finite number >= 0, got -1.0"),
    ],
)
def test_make_synthetic_data_script_refuses_a_bad_texture_shift_or_spread(tmp_path, capsys, flag, value, message):
    module = make_synthetic_data_script()
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "out"), flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_class_colour_spread_moves_each_class_by_its_own_offset_per_image():
    """class_colour_spread adds one RGB offset per class and image (of length <= spread before the domain's
    tone), in every domain, the source included; the kind map and everything else are unchanged."""
    from srha_hf.data import synthetic_scene as scene

    for domain in ("gtav", "bdd100k"):
        look = scene.domain_appearance(domain, 0)
        offsets = []
        for index in (0, 1):
            kind, plain = S.render_sample(domain, "train", index, 192, 108)
            kind_spread, spread = S.render_sample(domain, "train", index, 192, 108, class_colour_spread=30.0)
            np.testing.assert_array_equal(kind, kind_spread)
            diff = spread.astype(np.float64) - plain.astype(np.float64)
            clipped = (plain == 0) | (plain == 255) | (spread == 0) | (spread == 255)
            per_kind = {}
            for k in np.unique(kind):  # test-side loop over kinds: one offset per kind (up to uint8 rounding)
                inside = (kind == k) & ~clipped.any(axis=2)
                if inside.sum() < 50:
                    continue
                d = diff[inside]
                assert np.abs(d - np.median(d, axis=0)).max() <= 1.0 + 1e-9, (domain, index, k)
                per_kind[int(k)] = np.median(d, axis=0)
            bound = 30.0 * look.gain * max(look.sat, 1.0) * np.sqrt(3) + 1.0
            assert len(per_kind) >= 8 and all(np.linalg.norm(v) <= bound for v in per_kind.values())
            assert np.mean([np.linalg.norm(v) > 2 for v in per_kind.values()]) > 0.7
            offsets.append(per_kind)
        common = set(offsets[0]) & set(offsets[1])
        assert any(np.linalg.norm(offsets[0][k] - offsets[1][k]) > 5 for k in common)  # another offset in another image
    with pytest.raises(ValueError, match="class_colour_spread must be a finite number >= 0, got -3"):
        S.make_synthetic_benchmark("unused", **SMALL, class_colour_spread=-3)


def written_from_the_training_config(folder, **keys) -> dict:
    """Resolve the data of the demo recipe with a small synthetic benchmark under ``folder`` and the training-config
    ``keys``, as a training run does (which writes the benchmark); return the benchmark's marker."""
    from pathlib import Path

    from accelerate import Accelerator

    from srha_hf.training import load_config
    from srha_hf.training.trainer import resolve_data

    small = {"synthetic_root": str(folder), "synthetic_num_train": 4, "synthetic_num_val": 2, "synthetic_size": [96, 54]}
    resolve_data(load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", {**small, **keys}), Accelerator(cpu=True))
    return json.loads((Path(folder) / S.MARKER).read_text())


def test_class_colour_spread_on_disk_and_from_the_training_config(bench, tmp_path):
    """The marker records the spread; the training config's synthetic_class_colour_spread reaches the files."""
    root, _ = bench
    spread = tmp_path / "spread"
    S.make_synthetic_benchmark(spread, **SMALL, class_colour_spread=25)
    assert json.loads((spread / S.MARKER).read_text())["class_colour_spread"] == 25.0
    for name in S.DOMAINS:
        a, b = load_benchmark(name, root / name, "val"), load_benchmark(name, spread / name, "val")
        np.testing.assert_array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
        assert not np.array_equal(np.asarray(a[0]["image"]), np.asarray(b[0]["image"]))
    marker = written_from_the_training_config(tmp_path / "from_config", synthetic_class_colour_spread=25)
    assert marker == {**json.loads((root / S.MARKER).read_text()), "seed": 0, "class_colour_spread": 25.0}


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
    with pytest.raises(ValueError, match="no domain shift: shift_scale and texture_shift must be 1, got 2.0"):
        S.render_sample("bdd100k", "val", 0, 96, 54, shift_scale=2.0, random_look=True)


def test_random_look_on_disk_and_from_the_training_config(bench, tmp_path):
    """The corpus is written in the same real formats, its marker says random_look, the benchmark's own files
    are other images; the training config's synthetic_random_look reaches the files."""
    root, _ = bench
    corpus = tmp_path / "generic"
    S.make_synthetic_benchmark(corpus, **SMALL, random_look=True)
    assert json.loads((corpus / S.MARKER).read_text()) == {**json.loads((root / S.MARKER).read_text()), "random_look": True}
    for name in S.DOMAINS:
        a, b = load_benchmark(name, root / name, "train"), load_benchmark(name, corpus / name, "train")
        assert len(a) == len(b) and not np.array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
    with pytest.raises(ValueError, match="random_look writes a generic corpus with no domain shift"):
        S.make_synthetic_benchmark(tmp_path / "bad", **SMALL, random_look=True, texture_shift=0)
    assert written_from_the_training_config(tmp_path / "from_config", synthetic_random_look=True)["random_look"] is True


def test_make_synthetic_data_script_writes_a_generic_corpus(tmp_path, capsys):
    module = make_synthetic_data_script()
    assert module.main([str(tmp_path / "corpus"), "--num-train", "1", "--num-val", "1", "--size", "64", "36", "--random-look"]) == 0
    assert json.loads((tmp_path / "corpus" / S.MARKER).read_text())["random_look"] is True
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "out"), "--random-look", "--shift-scale", "2"])
    assert exit_info.value.code == 2 and "--random-look: a generic corpus has no domain shift" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_class_patterns_against_a_plain_loop():
    """class_patterns: every pixel of train class k carries sin(2 pi (x cos a_k + y sin a_k) / (p_k W)) (bicycle:
    the sign of that times the sign of the crossed grating), every other kind 0; the angles and periods are
    the module's tables, each (angle, period) pair used by one class only."""
    from srha_hf.data import synthetic_scene as scene

    rng = np.random.default_rng(5)
    kind = rng.integers(0, scene.NUM_KINDS, size=(9, 61)).astype(np.uint8)
    kind[0, :3] = (18, 7, scene.LANE_MARKING)
    got = scene.class_patterns(kind)
    h, w = kind.shape
    for y in range(h):  # test-side loop over pixels, from the formula
        for x in range(w):
            k = int(kind[y, x])
            if k >= 19:
                assert got[y, x] == 0.0
                continue
            a, p = float(scene._PATTERN_ANGLE[k]), float(scene._PATTERN_PERIOD[k]) * w
            wave = np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / p)
            if k == 18:
                cross = np.sin(2 * np.pi * (y * np.cos(a) - x * np.sin(a)) / p)
                if min(abs(wave), abs(cross)) < 1e-3:  # on a zero crossing the sign is float32 rounding
                    continue
                wave = np.sign(wave) * np.sign(cross)
            assert abs(got[y, x] - wave) < 1e-4, (y, x, k)
    pairs = {(round(float(a), 4), round(float(p), 4)) for a, p in zip(scene._PATTERN_ANGLE[:18], scene._PATTERN_PERIOD[:18])}
    assert len(pairs) == 18


def test_class_pattern_adds_the_same_grating_in_every_domain():
    """class_pattern adds amplitude x class_patterns(kind) to the shading before the domain's tone, draws
    nothing (the kind map and every other pixel value stay), and is the same content in the source and the
    targets; 0 leaves the image byte for byte; a negative amplitude is refused by name."""
    from srha_hf.data import synthetic_scene as scene

    for domain in ("gtav", "mapillary"):
        look = scene.domain_appearance(domain, 0)
        kind, plain = S.render_sample(domain, "train", 1, 192, 108)
        kind_p, patterned = S.render_sample(domain, "train", 1, 192, 108, class_pattern=20.0)
        _, zero = S.render_sample(domain, "train", 1, 192, 108, class_pattern=0.0)
        np.testing.assert_array_equal(kind, kind_p)
        np.testing.assert_array_equal(plain, zero)
        diff = patterned.astype(np.float64) - plain.astype(np.float64)
        clipped = ((plain == 0) | (plain == 255) | (patterned == 0) | (patterned == 255)).any(axis=2)
        expected = 20.0 * look.gain * scene.class_patterns(kind)  # grey added to all channels: saturation keeps it
        inside = ~clipped
        assert np.abs(diff[inside] - expected[inside][:, None]).max() <= 1.0 + 1e-6, domain
        assert np.abs(expected[inside]).mean() > 5
    with pytest.raises(ValueError, match="class_pattern must be a finite number >= 0, got -2"):
        S.make_synthetic_benchmark("unused", **SMALL, class_pattern=-2)


def test_class_pattern_on_disk_and_from_the_training_config(bench, tmp_path):
    """The marker records the amplitude; the training config's synthetic_class_pattern reaches the files; the
    labels are those of the benchmark without patterns."""
    root, _ = bench
    marker = written_from_the_training_config(tmp_path / "pattern", synthetic_class_pattern=15)
    assert marker == {**json.loads((root / S.MARKER).read_text()), "seed": 0, "class_pattern": 15.0}
    plain = tmp_path / "plain"
    S.make_synthetic_benchmark(plain, **{**SMALL, "seed": 0})  # the same scenes (the benchmark's seed is 0 there)
    for name in S.DOMAINS:
        a, b = load_benchmark(name, plain / name, "val"), load_benchmark(name, tmp_path / "pattern" / name, "val")
        np.testing.assert_array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
        assert not np.array_equal(np.asarray(a[0]["image"]), np.asarray(b[0]["image"]))
