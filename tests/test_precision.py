"""The recipe's mixed_precision key: it wins over the user's accelerate config, and only --mixed_precision
on the accelerate launch line wins over it; the run logs which precision ran and why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import ROOT, SCRIPT, run_args

from srha_hf.training import ConfigError, load_config
from srha_hf.training import precision as P

LAUNCH = ["/venv/bin/python", "/venv/bin/accelerate", "launch"]


def test_the_launch_flag_is_read_from_the_launcher_options_only():
    assert P.launch_flag([*LAUNCH, "--cpu", "--mixed_precision", "bf16", "scripts/train.py", "--config", "c.yaml"]) == (True, "bf16")
    assert P.launch_flag([*LAUNCH, "--mixed-precision=FP16", "train.py"]) == (True, "fp16")
    assert P.launch_flag(["python", "-m", "accelerate.commands.launch", "--mixed_precision", "no", "t.py"]) == (True, "no")
    # the script's own --mixed_precision is the recipe key, not the launcher's flag
    assert P.launch_flag([*LAUNCH, "--num_processes", "2", "scripts/train.py", "--mixed_precision", "bf16"]) == (True, None)
    assert P.launch_flag(["python", "scripts/train.py", "--mixed_precision", "bf16"]) == (False, None)
    assert P.launch_flag(["python", "-m", "torch.distributed.run", "--nproc_per_node=2", "train.py"]) == (False, None)


def test_resolution_order():
    accel_cfg = {"ACCELERATE_MIXED_PRECISION": "bf16"}  # what accelerate launch exports from a bf16 config
    without_flag = [["python", "-m", "torch.distributed.run", "t.py"], [*LAUNCH, "--multi_gpu", "scripts/train.py"]]
    with_flag = [[*LAUNCH, "--mixed_precision", "bf16", "scripts/train.py"]]

    value, why = P.resolve_mixed_precision("no", accel_cfg, without_flag)
    assert value == "no" and why.startswith("no from the recipe's mixed_precision key; accelerate's setting 'bf16' is overridden")
    assert P.resolve_mixed_precision("no", accel_cfg, with_flag) == (None, "bf16 from --mixed_precision on the accelerate launch line")
    assert P.resolve_mixed_precision("bf16", {}, []) == ("bf16", "bf16 from the recipe's mixed_precision key")
    assert P.resolve_mixed_precision(None, accel_cfg, without_flag) == (None, "bf16 from accelerate's setting (the recipe's mixed_precision is null)")
    assert P.resolve_mixed_precision(None, {}, []) == (None, "no from the default (the recipe's mixed_precision is null)")
    assert P.describe("no") == "fp32" and P.describe("bf16") == "bf16"


def test_without_proc_a_value_other_than_the_config_files_counts_as_a_flag(monkeypatch):
    monkeypatch.setattr(P, "_ancestor_command_lines", lambda: None)
    monkeypatch.setattr(P, "_accelerate_config_value", lambda: "bf16")
    assert P.resolve_mixed_precision("no", {"ACCELERATE_MIXED_PRECISION": "bf16"})[0] == "no"  # the config's value
    assert P.resolve_mixed_precision("no", {"ACCELERATE_MIXED_PRECISION": "fp16"})[0] is None  # a flag: accelerate's


def test_ancestor_command_lines_from_a_proc_tree(tmp_path):
    def process(pid, ppid, argv):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (py thon) S {ppid} 1 1 0 -1\n")  # a name with a space

    process(300, 200, ["python", "-m", "torch.distributed.run", "t.py"])
    process(200, 100, [*LAUNCH, "--mixed_precision", "fp16", "t.py"])
    process(100, 1, ["bash"])
    lines = P._ancestor_command_lines(tmp_path, pid=300)
    assert lines == [["python", "-m", "torch.distributed.run", "t.py"], [*LAUNCH, "--mixed_precision", "fp16", "t.py"], ["bash"]]
    assert P.resolve_mixed_precision("no", {"ACCELERATE_MIXED_PRECISION": "fp16"}, lines)[0] is None
    if Path("/proc/self/stat").is_file():  # the real tree: this test's own ancestors (pytest's parents)
        assert P._ancestor_command_lines() is not None


def test_recipes_fix_fp32_and_the_key_is_validated():
    for recipe in ("r50_gtav", "r101_gtav", "mobilenetv2_gtav", "shufflenetv2_gtav", "r50_cityscapes", "r50_m2f_gtav"):
        assert load_config(ROOT / "configs" / f"{recipe}.yaml").mixed_precision == "no", recipe
    assert load_config(None, {"mixed_precision": None}).mixed_precision is None
    with pytest.raises(ConfigError, match="mixed_precision must be 'no', 'bf16', 'fp16', 'fp8' or null, got 'fp64'"):
        load_config(None, {"mixed_precision": "fp64"})


def accelerate_launch(launch_options, args, tmp_path):
    config_file = tmp_path / "accelerate_bf16.yaml"  # a user whose accelerate default is bf16
    config_file.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: bf16\n"
                           "num_machines: 1\nnum_processes: 1\nuse_cpu: true\n")  # fmt: skip
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "--cpu",
           "--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no", *launch_options, str(SCRIPT), *args]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow  # a subprocess / torchrun test
@pytest.mark.parametrize("flag", [False, True])
def test_accelerate_launch_runs_the_recipes_precision_unless_the_launch_line_names_one(flag, synthetic_root, tmp_path):
    args = run_args(synthetic_root, tmp_path / "run", "--max_iter", "1", "--checkpointing_steps", "0",
                    "--val_datasets", "cityscapes", "--eval_max_images", "1")  # fmt: skip
    stdout = accelerate_launch(["--mixed_precision", "bf16"] if flag else [], args, tmp_path)
    if flag:
        assert "precision: bf16 (bf16 from --mixed_precision on the accelerate launch line)" in stdout
    else:
        assert "precision: fp32 (no from the recipe's mixed_precision key; accelerate's setting 'bf16' is overridden" in stdout
