"""experiments/dg_ablation.py's recipe variants: --set / --model-set reach the training command, need a
--variant name, and a run folder refuses results made with other overrides."""

import json

import pytest

from experiments import dg_ablation


@pytest.fixture(scope="module")
def dg():
    return dg_ablation


def options(cmd):
    return {cmd[i][2:]: json.loads(cmd[i + 1]) for i in range(5, len(cmd), 2)}  # [python, -m, experiments.train_trial, --config, recipe, ...]


def test_overrides_reach_the_command_and_the_default_is_unchanged(dg, tmp_path):
    imagenet = options(dg.row_command("full", 304, "imagenet", "demo", tmp_path))  # the demo recipe as it is
    assert imagenet["model_kwargs"] == {"srm": True, "pc_weight": 10.0}
    assert not {"backbone", "backbone_pretrained", "pretrain_steps", "max_iter"} & set(imagenet)
    plain = options(dg.row_command("full", 304, "pretrained", "demo", tmp_path))  # the earlier stand-in recipe
    assert plain["model_kwargs"] == {"pc_stop_gradient": True, "srm": True, "pc_weight": 10.0}
    assert (plain["backbone"], plain["backbone_pretrained"], plain["pretrain_steps"], plain["max_iter"]) == ("shufflenetv2", None, 300, 250)
    assert "pc_warmup_steps" not in plain
    extra = dg.parse_assignments(["pc_warmup_steps=300", "max_iter=600"], "--set", dg.train_keys())
    model = dg.parse_assignments(["pc_weight=1"], "--model-set", dg.model_keys())
    got = options(dg.row_command("full", 304, "pretrained", "gpu", tmp_path, extra, model))
    assert (got["pc_warmup_steps"], got["max_iter"], got["pretrain_steps"], got["num_workers"]) == (300, 600, 3000, 8)  # --set wins over the scale
    assert got["model_kwargs"] == {"pc_stop_gradient": True, "srm": True, "pc_weight": 1}
    faithful = dg.parse_assignments(["pc_stop_gradient=false"], "--model-set", dg.model_keys())
    assert options(dg.row_command("plain", 304, "pretrained", "demo", tmp_path, None, faithful))["model_kwargs"]["pc_stop_gradient"] is False
    assert got["seed"] == 304 and got["output_dir"] == str(tmp_path)


@pytest.mark.parametrize(
    "items, flag, message",
    [
        (["max_iter"], "--set", "--set 'max_iter': expected KEY=VALUE"),
        (["maxiter=3"], "--set", "unknown key 'maxiter'"),
        (["seed=1"], "--set", r"the sweep sets 'seed' itself \(use --seeds\)"),
        (["max_iter=[1"], "--set", "the value is not valid YAML"),
        (["pcweight=1"], "--model-set", "unknown key 'pcweight'"),
    ],
)
def test_bad_assignments_are_named(dg, items, flag, message):
    keys = dg.train_keys() if flag == "--set" else dg.model_keys()
    with pytest.raises(ValueError, match=message):
        dg.parse_assignments(items, flag, keys)


def test_main_needs_a_variant_name_for_overrides(dg, capsys):
    with pytest.raises(SystemExit):
        dg.main(["--set", "max_iter=600"])
    assert "name the variant with --variant NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dg.main(["--set", "max_iter=600", "--variant", "a/b"])
    assert "--variant 'a/b': use letters" in capsys.readouterr().err


def test_a_run_folder_refuses_other_overrides(dg, tmp_path):
    record = {"row": "full", "seed": 304, "set": {"pc_warmup_steps": 150}}
    dg.check_record(tmp_path, record)
    assert json.loads((tmp_path / dg.RUN_RECORD).read_text()) == record
    dg.check_record(tmp_path, record)  # the same overrides: fine
    with pytest.raises(SystemExit, match="use another --variant or --out"):
        dg.check_record(tmp_path, {**record, "set": {"pc_warmup_steps": 300}})
    old = tmp_path / "old"
    old.mkdir()
    (old / "all_results.json").write_text("{}")  # a finished run of a sweep from before the record
    dg.check_record(old, record)
    assert not (old / dg.RUN_RECORD).exists()


def test_paired_differences_and_per_class_picture(dg):
    def run(targets, source, road):
        miou = dict(zip(dg.TARGETS, targets), gtav=source)
        per_class = {t: {"road": road, "wall": None} for t in dg.TARGETS}
        return {"miou": miou, "target_mean": sum(targets) / 4, "per_class_iou": per_class}

    runs = {
        "plain": {304: run([40, 30, 20, 10], 50, 80.0), 305: run([42, 32, 22, 12], 52, 70.0)},
        "full": {304: run([41, 30, 22, 10], 48, 90.0), 305: run([44, 32, 22, 12], 50, 60.0)},
    }
    paired = dg.paired_differences(runs)
    assert list(paired) == ["full"]
    mean, std, n = paired["full"]["mean"]
    assert (round(mean, 6), n) == (round((0.75 + 0.5) / 2, 6), 2) and abs(std - ((0.125**2 * 2) ** 0.5)) < 1e-9
    assert paired["full"]["cityscapes"][:2] == (1.5, 0.7071067811865476) and paired["full"]["source"][0] == -2
    assert dg.per_class_targets(runs) == {"plain": {"road": 75.0}, "full": {"road": 75.0}}
    text = dg.paired_markdown(paired, dg.per_class_targets(runs))
    assert "| full SRHA (SRM + HAC + PC) | +1.5 ± 0.7 | +0.0 ± 0.0 | +1.0 ± 1.4 | +0.0 ± 0.0 | **+0.6 ± 0.2** | -2.0 ± 0.0 |" in text
