"""Training: recipes and config loading, optimiser groups and schedule, real runs on the synthetic
benchmark (one process and two processes), kill-and-resume, SIGTERM, the NaN stop, the model card."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.training import ConfigError, load_config, parameter_groups, parse_overrides, poly_factor

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"


def test_recipes_hold_the_spec_values():
    expect = {  # docs/method.md §5.2: backbone, batch per GPU, iterations, source, targets in order
        "r50_gtav": ("resnet50", 4, 60000, "gtav", ["cityscapes", "bdd100k", "mapillary"]),
        "r101_gtav": ("resnet101", 3, 60000, "gtav", ["cityscapes", "bdd100k", "mapillary"]),
        "mobilenetv2_gtav": ("mobilenetv2", 4, 60000, "gtav", ["cityscapes", "bdd100k", "mapillary"]),
        "shufflenetv2_gtav": ("shufflenetv2", 4, 60000, "gtav", ["cityscapes", "bdd100k", "mapillary"]),
        "r50_cityscapes": ("resnet50", 4, 120000, "cityscapes", ["bdd100k", "synthia", "gtav"]),
    }
    for name, (backbone, batch, iters, source, targets) in expect.items():
        c = load_config(ROOT / "configs" / f"{name}.yaml")
        assert (c.backbone, c.batch_size, c.max_iter, c.source_dataset, c.val_datasets) == (backbone, batch, iters, source, targets)
        assert (c.lr, c.decoder_lr, c.momentum, c.weight_decay, c.poly_power, c.seed) == (0.005, 0.01, 0.9, 5e-4, 0.9, 304)
        assert (c.crop_size, c.scale_min, c.scale_max, c.class_uniform_pct, c.class_uniform_tile) == (768, 0.5, 2.0, 0.5, 1024)
        assert c.backbone_pretrained == "torchvision" and c.teacher_mode == "faithful" and c.eval_steps == -1
        mc = c.model_config()
        assert mc.srm and mc.pc_weight == 10 and mc.ga_weights == [0.4, 0.6, 0.8, 1.0] and mc.freeze_layer0


@pytest.mark.slow  # a subprocess / torchrun test
def test_unknown_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: resnet50\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate' in .*bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown option --bogus"):
        load_config(ROOT / "configs" / "demo.yaml", parse_overrides(["--bogus", "1"]))
    with pytest.raises(ConfigError, match="max_iter expects an integer"):
        load_config(None, parse_overrides(["--max_iter", "many"]))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--config", "configs/demo.yaml", "--bogus_key", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2 and "unknown option --bogus_key" in out.stderr


@pytest.mark.slow  # a subprocess / torchrun test
def test_overrides_and_missing_roots(tmp_path):
    c = load_config(ROOT / "configs" / "r50_gtav.yaml", parse_overrides(["--max_iter", "10", "--val_datasets", "bdd100k", "--lr=0.1"]))
    assert (c.max_iter, c.val_datasets, c.lr) == (10, ["bdd100k"], 0.1)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--config", "configs/r50_gtav.yaml", "--output_dir", str(tmp_path / "o"), "--report_to", "none"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2
    assert "gtav_root is not set" in out.stderr and "--gtav_root" in out.stderr


def test_parameter_groups_and_poly_schedule():
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2"))
    enc, dec = parameter_groups(model, 0.005, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].split(".")[0] in ("layer1", "layer2", "layer3", "layer4") for p in enc["params"])
    assert all(names[id(p)].split(".")[0] in ("aspp", "bot_fine", "bot_aspp", "final1", "final2", "dsn") for p in dec["params"])
    trainable = sum(p.requires_grad for p in model.parameters())
    assert len(enc["params"]) + len(dec["params"]) == trainable
    assert not any(names[id(p)].startswith("layer0") for p in enc["params"] + dec["params"])
    # docs/method.md Appendix B: iteration 30 000 of 60 000
    assert abs(0.005 * poly_factor(30000, 60000) - 0.002679) < 1e-6
    assert abs(0.01 * poly_factor(30000, 60000) - 0.005359) < 1e-6
    assert poly_factor(0, 60000) == 1.0


# ------------------------------------------------------------------------------------------------
# Real runs on the synthetic benchmark


def run_args(synthetic_root, output_dir, *extra):
    return [
        "--synthetic_data", "true", "--synthetic_root", str(synthetic_root), "--synthetic_num_train", "8",
        "--synthetic_num_val", "3", "--synthetic_size", "[160, 88]", "--backbone", "shufflenetv2",
        "--backbone_pretrained", "null", "--crop_size", "64", "--batch_size", "2", "--class_uniform_tile", "64",
        "--val_datasets", "cityscapes,mapillary", "--eval_steps", "0", "--eval_max_images", "2",
        "--num_workers", "0", "--logging_steps", "1", "--report_to", "none", "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


def launch(args, nproc=1, timeout=600, check=True, **popen):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(SCRIPT), *args]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}", str(SCRIPT), *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"rc={out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


@pytest.mark.slow  # a subprocess / torchrun test
def test_training_run_publishes_model_and_card(synthetic_root, tmp_path):
    out_dir = tmp_path / "run"
    out = launch(run_args(synthetic_root, out_dir, "--max_iter", "3", "--checkpointing_steps", "2", "--report_to", "tensorboard"))
    model_dir = out_dir / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert sorted(p.name for p in out_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    state = json.loads((out_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["step"] == 3
    results = json.loads((out_dir / "all_results.json").read_text())
    assert set(results["results"]) == {"cityscapes", "mapillary"} and results["step"] == 3
    assert "| cityscapes |" in out.stdout  # the results table
    # the model loads back and its card parses, with one mean_iou per target
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSemanticSegmentation

    model = AutoModelForSemanticSegmentation.from_pretrained(model_dir)
    assert model.config.backbone == "shufflenetv2"
    card = ModelCard.load(model_dir / "README.md")
    assert "DeepLabV3+ on **shufflenetv2**" in card.text
    evals = card.data.eval_results
    assert sorted(e.dataset_type for e in evals) == ["cityscapes", "mapillary"]
    assert all(e.metric_type == "mean_iou" for e in evals)
    for e in evals:
        assert abs(e.metric_value - results["results"][e.dataset_type]["mean_iou"]) < 1e-6
    # TensorBoard got every loss term
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((out_dir / "logs").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for term in ("loss", "ce", "aux", "ga", "ra", "la", "pc", "lr_encoder", "lr_decoder", "images_per_s"):
        assert f"train/{term}" in tags, term
    assert "cityscapes/mean_iou" in tags


def kill_when(args, path: Path, timeout: float = 300):
    """Run scripts/train.py with ``args`` and SIGKILL it from outside as soon as ``path`` exists (a
    checkpoint folder appears complete or not at all: it is renamed into place)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.time() + timeout
        while not path.exists():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                proc.wait()
                log.seek(0)
                raise AssertionError(f"{path} never appeared (rc={proc.returncode})\n{log.read()[-4000:]}")
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    return proc


@pytest.mark.slow  # a subprocess / torchrun test
def test_kill_and_resume_gives_the_same_weights(synthetic_root, tmp_path):
    full = tmp_path / "full"
    launch(run_args(synthetic_root, full, "--max_iter", "6", "--checkpointing_steps", "3", "--val_datasets", "cityscapes"))
    broken = tmp_path / "broken"
    killed = kill_when(
        run_args(synthetic_root, broken, "--max_iter", "6", "--checkpointing_steps", "3", "--val_datasets", "cityscapes"),
        broken / "checkpoint-3" / "trainer_state.json",
    )
    assert killed.returncode == -signal.SIGKILL
    assert (broken / "checkpoint-3").is_dir() and not (broken / "model").exists()
    state = json.loads((broken / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["training_time_s"] > 0 and state["training_time_from_step"] == 0
    resumed = launch(
        run_args(synthetic_root, broken, "--max_iter", "6", "--checkpointing_steps", "3", "--val_datasets", "cityscapes",
                 "--resume_from_checkpoint", "latest")  # fmt: skip
    )
    assert "resumed from" in resumed.stdout and "at step 3" in resumed.stdout
    # the training time covers all six steps: the killed process's (from its checkpoint) and this one's
    timing = json.loads((broken / "all_results.json").read_text())
    assert timing["steps_this_process"] == 3 and timing["training_time_from_step"] == 0
    assert timing["training_time_s"] == pytest.approx(state["training_time_s"] + timing["training_time_this_process_s"], abs=0.11)
    assert "over all 6 steps, with the earlier processes'" in resumed.stdout
    fresh = json.loads((full / "all_results.json").read_text())
    assert fresh["steps_this_process"] == 6 and fresh["training_time_s"] == fresh["training_time_this_process_s"]
    a = load_file(full / "model" / "model.safetensors")
    b = load_file(broken / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow  # a subprocess / torchrun test
def test_resume_latest_without_checkpoint_starts_fresh(synthetic_root, tmp_path):
    out = launch(
        run_args(synthetic_root, tmp_path / "fresh", "--max_iter", "1", "--checkpointing_steps", "0", "--val_datasets", "cityscapes",
                 "--resume_from_checkpoint", "latest")  # fmt: skip
    )
    assert "no checkpoint" in out.stdout and "starting fresh" in out.stdout
    assert (tmp_path / "fresh" / "model" / "model.safetensors").is_file()


@pytest.mark.slow  # a subprocess / torchrun test
def test_sigterm_saves_a_checkpoint_and_exits_zero(synthetic_root, tmp_path):
    out_dir = tmp_path / "term"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *run_args(synthetic_root, out_dir, "--max_iter", "100000", "--checkpointing_steps", "2")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.time() + 300
    while not (out_dir / "checkpoint-2").is_dir():
        assert proc.poll() is None and time.time() < deadline, "training did not reach step 2"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "SIGTERM: checkpoint saved at step" in stdout
    steps = sorted(int(p.name.split("-")[1]) for p in out_dir.glob("checkpoint-*"))
    last = json.loads((out_dir / f"checkpoint-{steps[-1]}" / "trainer_state.json").read_text())
    assert last["step"] == steps[-1] >= 2 and last["step"] < 100000
    assert not (out_dir / "model").exists()


@pytest.mark.slow  # a subprocess / torchrun test
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synthetic_root, tmp_path):
    out_dir = tmp_path / "nan"
    out = launch(
        run_args(synthetic_root, out_dir, "--max_iter", "50", "--checkpointing_steps", "1", "--lr", "1e30", "--decoder_lr", "1e30"), check=False
    )
    assert out.returncode == 1
    assert "non-finite loss" in out.stderr
    import re

    step = int(re.search(r"at step (\d+)", out.stderr).group(1))
    good = step - 1
    assert f"Last good checkpoint: {out_dir / f'checkpoint-{good}'}" in out.stderr or good == 0
    saved = sorted(int(p.name.split("-")[1]) for p in out_dir.glob("checkpoint-*"))
    assert saved and saved[-1] == good
    assert not (out_dir / "model").exists()


@pytest.mark.slow  # a subprocess / torchrun test
def test_two_process_cpu_training(synthetic_root, tmp_path):
    out_dir = tmp_path / "ddp"
    out = launch(run_args(synthetic_root, out_dir, "--max_iter", "2", "--checkpointing_steps", "2", "--val_datasets", "cityscapes"), nproc=2)
    ckpt = out_dir / "checkpoint-2"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert (out_dir / "model" / "model.safetensors").is_file()
    assert out.stdout.count("trained 2 steps") == 1  # logged once, by the main process
    assert "CPU process(es)" in (out_dir / "model" / "README.md").read_text() and "× 2 process(es)" in (out_dir / "model" / "README.md").read_text()


@pytest.mark.slow  # a subprocess test
def test_the_published_model_reevaluated_gives_the_runs_own_numbers(synthetic_root, tmp_path):
    """What a user takes away is what was trained: ``srha-evaluate`` on the run's ``model/`` folder (a Lite0
    model from ImageNet, whose input conversion is not in the state dict) prints the training run's final
    evaluation to the last digit, source val and targets."""
    from srha_hf.cli.evaluate import main as evaluate_main

    out_dir = tmp_path / "run"
    launch(run_args(synthetic_root, out_dir, "--max_iter", "2", "--backbone", "efficientnet_lite0", "--backbone_pretrained", "imagenet",
                    "--eval_source", "true", "--eval_max_images", "3"))  # fmt: skip
    trained = json.loads((out_dir / "all_results.json").read_text())["results"]
    assert set(trained) == {"gtav", "cityscapes", "mapillary"}
    json_path = tmp_path / "eval" / "results.json"
    rc = evaluate_main(["--model", str(out_dir / "model"), "--dataset", "gtav", "cityscapes", "mapillary", "--data_root", str(synthetic_root),
                        "--synthetic_size", "160", "88", "--max_images", "3", "--output_json", str(json_path), "--num_overlays", "0",
                        "--no_progress", "--cpu"])  # fmt: skip
    assert rc == 0
    reloaded = json.loads(json_path.read_text())["results"]
    for name, result in trained.items():
        assert reloaded[name]["mean_iou"] == result["mean_iou"], name
        assert reloaded[name]["per_category_iou"] == result["per_category_iou"], name
