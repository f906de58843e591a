"""The trial benchmarks (experiments/trial_benchmark.py): each amount changes what it says and nothing else,
is refused by name when bad, is recorded in the marker, and reaches the files from a training command."""

import json

import numpy as np
import pytest

from experiments import make_trial_data
from experiments import trial_benchmark as trial
from experiments.trial_benchmark import TrialAppearance, make_trial_benchmark
from srha_hf.data import load_benchmark
from srha_hf.data import synthetic as S
from tests.test_data_synthetic import SMALL, digest


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return root, S.make_synthetic_benchmark(root, **SMALL)


def trial_look(domain, seed, **amounts):
    """The look of ``domain`` in a trial benchmark with ``amounts`` (its ``look`` uses no random draw there)."""
    return TrialAppearance(**amounts).look(domain, seed, None)


def assert_only_target_images_changed(root, other, min_mean_abs_diff=0.0):
    """``other`` has ``root``'s source files and every label, and other target images."""
    assert digest(other / "gtav") == digest(root / "gtav")
    for name in ("cityscapes", "bdd100k", "mapillary", "synthia"):
        a, b = load_benchmark(name, root / name, "val"), load_benchmark(name, other / name, "val")
        np.testing.assert_array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
        diff = np.abs(np.asarray(a[0]["image"], np.int16) - np.asarray(b[0]["image"], np.int16))
        assert diff.max() > 0 and diff.mean() > min_mean_abs_diff, name


def test_shift_scale_grows_only_the_per_class_colour_shift():
    """shift_scale multiplies each class's colour offset from the source palette (before clipping) and
    changes nothing else: same directions, textures and tone; the source is never shifted."""
    base = S.domain_appearance("gtav", 5).colors
    for domain in ("cityscapes", "bdd100k", "mapillary", "synthia"):
        one = S.domain_appearance(domain, 5)
        for s in (0.0, 1.0, 1.8):
            look = trial_look(domain, 5, shift_scale=s)
            # kinds whose shifted colour was not clipped at 0 or 255 at either scale
            inside = ((look.colors > 0) & (look.colors < 255) & (one.colors > 0) & (one.colors < 255)).all(axis=1)
            assert inside.sum() >= 10
            np.testing.assert_allclose(look.colors[inside] - base[inside], s * (one.colors[inside] - base[inside]), atol=1e-3)
            np.testing.assert_array_equal(look.texture, one.texture)
            assert (look.gain, look.offset, look.sat) == (one.gain, one.offset, one.sat)
    np.testing.assert_array_equal(trial_look("gtav", 5, shift_scale=2.0).colors, base)
    for bad in (-0.5, float("nan"), float("inf"), "big"):
        with pytest.raises(ValueError, match="shift_scale must be"):
            trial_look("cityscapes", 5, shift_scale=bad)
    with pytest.raises(ValueError, match="unknown domain 'kitti'"):
        S.domain_appearance("kitti", 5)


def test_shift_scale_on_disk(bench, tmp_path):
    """Scale 1 writes the benchmark as shipped (same files, same marker); another scale changes the
    target images only, keeps every label and the source, records the scale and regenerates."""
    root, _ = bench
    ones = tmp_path / "x1"
    make_trial_benchmark(ones, **SMALL, shift_scale=1.0)
    assert digest(ones) == digest(root)
    assert json.loads((ones / S.MARKER).read_text()) == json.loads((root / S.MARKER).read_text())
    assert "shift_scale" not in json.loads((root / S.MARKER).read_text())

    strong = tmp_path / "x2"
    make_trial_benchmark(strong, **SMALL, shift_scale=2.0)
    assert json.loads((strong / S.MARKER).read_text())["shift_scale"] == 2.0
    assert_only_target_images_changed(root, strong, min_mean_abs_diff=5)
    make_trial_benchmark(strong, **SMALL)  # back to scale 1: regenerated, as with any other argument
    assert digest(strong) == digest(root)
    with pytest.raises(ValueError, match="shift_scale must be a finite number >= 0, got -1"):
        make_trial_benchmark(tmp_path / "bad", **SMALL, shift_scale=-1)
    assert not (tmp_path / "bad").exists()


def test_make_synthetic_data_script_refuses_a_bad_shift_scale(tmp_path, capsys):
    module = make_trial_data
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "out"), "--shift-scale", "-2"])
    assert exit_info.value.code == 2
    assert "--shift-scale: shift_scale must be a finite number >= 0, got -2.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_texture_shift_scales_only_the_per_class_texture_change():
    """texture_shift multiplies the log of each class's texture rescaling (amplitudes and stripe
    frequencies) and changes nothing else; 0 gives every target the source's textures."""
    source = S.domain_appearance("gtav", 5).texture
    for domain in ("cityscapes", "bdd100k", "mapillary", "synthia"):
        one = S.domain_appearance(domain, 5)
        assert np.abs(one.texture - source).max() > 1  # the shipped targets do rescale textures
        np.testing.assert_array_equal(trial_look(domain, 5, texture_shift=1.0).texture, one.texture)
        none = trial_look(domain, 5, texture_shift=0.0)
        np.testing.assert_array_equal(none.texture, source)
        half = trial_look(domain, 5, texture_shift=0.5)
        moved = source != 0  # zero entries stay zero at every value
        expected = 0.5 * np.log(one.texture[moved] / source[moved])
        np.testing.assert_allclose(np.log(half.texture[moved] / source[moved]), expected, rtol=1e-4, atol=1e-5)
        strong_flat = trial_look(domain, 5, shift_scale=1.8, texture_shift=0.0)
        np.testing.assert_array_equal(strong_flat.texture, source)
        for scale, look in ((1.0, none), (1.0, half), (1.8, strong_flat)):  # the colours do not depend on texture_shift
            np.testing.assert_array_equal(look.colors, trial_look(domain, 5, shift_scale=scale).colors)
            assert (look.gain, look.offset, look.sat) == (one.gain, one.offset, one.sat)
    for bad in (-1, float("nan"), "rough"):
        with pytest.raises(ValueError, match="texture_shift must be"):
            trial_look("cityscapes", 5, texture_shift=bad)


def test_texture_shift_on_disk(bench, tmp_path):
    """The default writes the benchmark as shipped (files and marker); 0 changes the target images only,
    keeps every label and the source, and records the value."""
    root, _ = bench
    ones = tmp_path / "t1"
    make_trial_benchmark(ones, **SMALL, texture_shift=1.0)
    assert digest(ones) == digest(root)
    assert "texture_shift" not in json.loads((ones / S.MARKER).read_text())
    flat = tmp_path / "t0"
    make_trial_benchmark(flat, **SMALL, texture_shift=0.0)
    assert json.loads((flat / S.MARKER).read_text())["texture_shift"] == 0.0
    assert_only_target_images_changed(root, flat)
    with pytest.raises(ValueError, match="texture_shift must be a finite number >= 0, got -1"):
        make_trial_benchmark(tmp_path / "bad", **SMALL, texture_shift=-1)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--texture-shift", "inf", "--texture-shift: texture_shift must be a finite number >= 0, got inf"),
        ("--class-colour-spread", "-1", "--class-colour-spread: class_colour_spread must be a finite number >= 0, got -1.0"),
    ],
)
def test_make_synthetic_data_script_refuses_a_bad_texture_shift_or_spread(tmp_path, capsys, flag, value, message):
    module = make_trial_data
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "out"), flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_class_colour_spread_moves_each_class_by_its_own_offset_per_image():
    """class_colour_spread adds one RGB offset per class and image (of length <= spread before the domain's
    tone), in every domain, the source included; the kind map and everything else are unchanged."""
    for domain in ("gtav", "bdd100k"):
        look = S.domain_appearance(domain, 0)
        offsets = []
        for index in (0, 1):
            kind, plain = S.render_sample(domain, "train", index, 192, 108)
            kind_spread, spread = S.render_sample(domain, "train", index, 192, 108, appearance=TrialAppearance(class_colour_spread=30.0))
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
        make_trial_benchmark("unused", **SMALL, class_colour_spread=-3)


def written_from_the_training_config(folder, **keys) -> dict:
    """Resolve the data of the demo recipe with a small synthetic benchmark under ``folder`` and the training-config
    ``keys``, as a training run does (which writes the benchmark); return the benchmark's marker."""
    from pathlib import Path

    from accelerate import Accelerator

    from experiments.train_trial import trial_config
    from srha_hf.training.trainer import resolve_data

    small = {"synthetic_root": str(folder), "synthetic_num_train": 4, "synthetic_num_val": 2, "synthetic_size": [96, 54]}
    config, look = trial_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml", {**small, **keys})
    resolve_data(config, Accelerator(cpu=True), look)
    return json.loads((Path(folder) / S.MARKER).read_text())


def test_class_colour_spread_on_disk_and_from_the_training_config(bench, tmp_path):
    """The marker records the spread; experiments.train_trial's synthetic_class_colour_spread reaches the files."""
    root, _ = bench
    spread = tmp_path / "spread"
    make_trial_benchmark(spread, **SMALL, class_colour_spread=25)
    assert json.loads((spread / S.MARKER).read_text())["class_colour_spread"] == 25.0
    for name in S.DOMAINS:
        a, b = load_benchmark(name, root / name, "val"), load_benchmark(name, spread / name, "val")
        np.testing.assert_array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
        assert not np.array_equal(np.asarray(a[0]["image"]), np.asarray(b[0]["image"]))
    marker = written_from_the_training_config(tmp_path / "from_config", synthetic_class_colour_spread=25)
    assert marker == {**json.loads((root / S.MARKER).read_text()), "seed": 0, "class_colour_spread": 25.0}



def test_class_patterns_against_a_plain_loop():
    """class_patterns: every pixel of train class k carries sin(2 pi (x cos a_k + y sin a_k) / (p_k W)) (bicycle:
    the sign of that times the sign of the crossed grating), every other kind 0; the angles and periods are
    the module's tables, each (angle, period) pair used by one class only."""
    rng = np.random.default_rng(5)
    kind = rng.integers(0, S.NUM_KINDS, size=(9, 61)).astype(np.uint8)
    kind[0, :3] = (18, 7, S.LANE_MARKING)
    got = trial.class_patterns(kind)
    h, w = kind.shape
    for y in range(h):  # test-side loop over pixels, from the formula
        for x in range(w):
            k = int(kind[y, x])
            if k >= 19:
                assert got[y, x] == 0.0
                continue
            a, p = float(trial.PATTERN_ANGLE[k]), float(trial.PATTERN_PERIOD[k]) * w
            wave = np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / p)
            if k == 18:
                cross = np.sin(2 * np.pi * (y * np.cos(a) - x * np.sin(a)) / p)
                if min(abs(wave), abs(cross)) < 1e-3:  # on a zero crossing the sign is float32 rounding
                    continue
                wave = np.sign(wave) * np.sign(cross)
            assert abs(got[y, x] - wave) < 1e-4, (y, x, k)
    pairs = {(round(float(a), 4), round(float(p), 4)) for a, p in zip(trial.PATTERN_ANGLE[:18], trial.PATTERN_PERIOD[:18])}
    assert len(pairs) == 18


def test_class_pattern_adds_the_same_grating_in_every_domain():
    """class_pattern adds amplitude x class_patterns(kind) to the shading before the domain's tone, draws
    nothing (the kind map and every other pixel value stay), and is the same content in the source and the
    targets; 0 leaves the image byte for byte; a negative amplitude is refused by name."""
    for domain in ("gtav", "mapillary"):
        look = S.domain_appearance(domain, 0)
        kind, plain = S.render_sample(domain, "train", 1, 192, 108)
        kind_p, patterned = S.render_sample(domain, "train", 1, 192, 108, appearance=TrialAppearance(class_pattern=20.0))
        _, zero = S.render_sample(domain, "train", 1, 192, 108, appearance=TrialAppearance(class_pattern=0.0))
        np.testing.assert_array_equal(kind, kind_p)
        np.testing.assert_array_equal(plain, zero)
        diff = patterned.astype(np.float64) - plain.astype(np.float64)
        clipped = ((plain == 0) | (plain == 255) | (patterned == 0) | (patterned == 255)).any(axis=2)
        expected = 20.0 * look.gain * trial.class_patterns(kind)  # grey added to all channels: saturation keeps it
        inside = ~clipped
        assert np.abs(diff[inside] - expected[inside][:, None]).max() <= 1.0 + 1e-6, domain
        assert np.abs(expected[inside]).mean() > 5
    with pytest.raises(ValueError, match="class_pattern must be a finite number >= 0, got -2"):
        make_trial_benchmark("unused", **SMALL, class_pattern=-2)


def test_class_pattern_on_disk_and_from_the_training_config(bench, tmp_path):
    """The marker records the amplitude; experiments.train_trial's synthetic_class_pattern reaches the files; the
    labels are those of the benchmark without patterns."""
    root, _ = bench
    marker = written_from_the_training_config(tmp_path / "pattern", synthetic_class_pattern=15)
    assert marker == {**json.loads((root / S.MARKER).read_text()), "seed": 0, "class_pattern": 15.0}
    plain = tmp_path / "plain"
    make_trial_benchmark(plain, **{**SMALL, "seed": 0})  # the same scenes (the benchmark's seed is 0 there)
    for name in S.DOMAINS:
        a, b = load_benchmark(name, plain / name, "val"), load_benchmark(name, tmp_path / "pattern" / name, "val")
        np.testing.assert_array_equal(np.asarray(a[0]["label"]), np.asarray(b[0]["label"]))
        assert not np.array_equal(np.asarray(a[0]["image"]), np.asarray(b[0]["image"]))
