"""experiments/dg_shift_strength.py on a tiny fake sweep: every run evaluated at every scale, the paired
differences to plain, the cache, the texture-shift variant and its folders, bad arguments named."""

import json
import statistics

import pytest
import torch

from experiments import dg_shift_strength
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation

TINY_DATA = {"synthetic_num_train": 1, "synthetic_num_val": 1, "synthetic_size": [64, 36]}
TARGETS = ("cityscapes", "bdd100k", "mapillary", "synthia")


@pytest.fixture(scope="module")
def shift():
    return dg_shift_strength


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, shift):
    """Two rows x two seeds, each a differently initialised ShuffleNetV2 model, trained on nothing; every
    run's recorded sweep mIoU is 50 on every target."""
    root = tmp_path_factory.mktemp("sweep")
    for i, row in enumerate(("plain", "full")):
        for seed in (1, 2):
            folder = root / row / f"seed{seed}"
            torch.manual_seed(10 * i + seed)
            SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2")).save_pretrained(folder / "model")
            record = {"row": row, "seed": seed, "init": "pretrained", "scale": "demo", "set": TINY_DATA}
            (folder / shift.RUN_RECORD).write_text(json.dumps(record))
            results = {t: {"mean_iou": 0.5, "per_category_iou": {}} for t in (*TARGETS, "gtav")}
            (folder / "all_results.json").write_text(json.dumps({"results": results, "training_time_s": 1.0}))
    (root / "srm" / "seed1").mkdir(parents=True)  # an unfinished run: skipped
    return root


def test_every_run_at_every_scale_with_paired_differences_and_a_cache(shift, sweep, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert shift.main([str(sweep), "--scales", "1", "2", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())
    assert printed["runs"] == ["plain/seed1", "plain/seed2", "full/seed1", "full/seed2"]
    assert sorted(saved["per_run"]) == sorted(f"{tag}/{run}" for tag in ("x1", "x2") for run in printed["runs"])
    assert printed["texture_shift"] == 1.0 and printed["largest_class_shift"]["x2"]["bdd100k"] == 110
    per_run = saved["per_run"]
    # scale 1 against the sweep's own (recorded) 50 on every target
    expected_diff = max(abs(per_run[f"x1/{run}"][t] - 50) for run in printed["runs"] for t in TARGETS)
    assert printed["scale1_max_abs_diff_to_sweep"] == pytest.approx(round(expected_diff, 4))
    for tag in ("x1", "x2"):
        mean = {run: statistics.fmean(per_run[f"{tag}/{run}"][t] for t in TARGETS) for run in printed["runs"]}
        paired = [mean[f"full/seed{s}"] - mean[f"plain/seed{s}"] for s in (1, 2)]
        entry = printed["summary"][tag]["full"]
        assert entry["minus_plain"] == {"mean": round(statistics.fmean(paired), 2), "std": round(statistics.stdev(paired), 2), "n": 2}
        assert entry["targets_mean"]["mean"] == round(statistics.fmean([mean["full/seed1"], mean["full/seed2"]]), 2)
        assert "minus_plain" not in printed["summary"][tag]["plain"]
    # the scale-2 targets: same labels, other images; the marker records the scale
    assert json.loads((out / "data" / "x2" / ".srha_synthetic.json").read_text())["shift_scale"] == 2.0
    assert "| full SRHA" in (out / "table.md").read_text() and (out / "shift_strength.png").stat().st_size > 1000

    def no_evaluation(*args, **kwargs):
        raise AssertionError("a cached evaluation was redone")

    monkeypatch.setattr(shift, "evaluate_run", no_evaluation)
    assert shift.main([str(sweep), "--scales", "1", "2", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == printed["summary"]


def test_texture_shift_gets_its_own_folders(shift, sweep, capsys):
    assert shift.main([str(sweep), "--scales", "1", "--texture-shift", "0", "--rows", "plain", "--seeds", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    out = sweep / "shift_strength_t0"
    assert printed["table_md"] == str(out / "table.md") and printed["texture_shift"] == 0.0
    assert printed["scale1_max_abs_diff_to_sweep"] is None  # other targets than the sweep's: nothing to compare
    assert list(printed["summary"]) == ["x1_t0"] and (out / "evals" / "x1_t0" / "plain_seed1.json").is_file()
    marker = json.loads((out / "data" / "x1_t0" / ".srha_synthetic.json").read_text())
    assert marker["texture_shift"] == 0.0 and "shift_scale" not in marker
    assert "texture changes' spread multiplied by 0" in (out / "table.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--texture-shift", "-1"], "--texture-shift: texture_shift must be a finite number >= 0, got -1.0"),
        (["--scales", "1", "nan"], "--scales: shift_scale must be a finite number >= 0"),
        (["--scales", "1", "1.0"], "--scales: each scale once"),
        (["--rows", "plain,fancy"], "--rows: unknown rows ['fancy']"),
    ],
)
def test_bad_arguments_are_named(shift, sweep, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        shift.main([str(sweep), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_finished_runs_is_refused(shift, tmp_path):
    with pytest.raises(SystemExit, match="no finished run in"):
        shift.main([str(tmp_path)])
