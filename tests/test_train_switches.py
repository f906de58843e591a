"""Recipe keys for the docs/method.md §9 switches reach the code they steer, and the EMA teacher is updated in the
reference's order (before each step's forward)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import launch, run_args

import srha_hf.data
import srha_hf.evaluation
from srha_hf.training import ConfigError, load_config, parse_overrides, trainer
from srha_hf.training.trainer import train, train_transform_kwargs

ROOT = Path(__file__).resolve().parents[1]


def test_switch_defaults_are_faithful_and_validated():
    c = load_config(ROOT / "configs" / "r50_gtav.yaml")
    assert (c.blur_p, c.blur_rounding, c.shift_centroid_by_padding) == (1.0, "truncate", False)
    assert c.class_uniform_whole_tiles_only and c.eval_drop_remainder and c.deterministic
    t = srha_hf.data.build_train_transform(**train_transform_kwargs(c))
    assert (t.blur_p, t.blur_rounding, t.shift_centroid_by_padding) == (1.0, "truncate", False)
    with pytest.raises(ConfigError, match="blur_rounding must be 'truncate' or 'round'"):
        load_config(None, {"blur_rounding": "ceil"})
    with pytest.raises(ConfigError, match=r"blur_p must be a probability in \[0, 1\], got 1.5"):
        load_config(None, {"blur_p": 1.5})


@pytest.mark.integration
def test_recipe_switches_reach_the_transform_the_dataset_and_the_evaluation(synthetic_root, tmp_path, monkeypatch):
    seen = {}

    real_transform, real_dataset, real_eval = srha_hf.data.build_train_transform, srha_hf.data.SRHATrainDataset, srha_hf.evaluation.evaluate_model

    def transform(**kwargs):
        seen["transform"] = kwargs
        return real_transform(**kwargs)

    class Dataset(real_dataset):
        def __init__(self, *args, **kwargs):
            seen["dataset"] = kwargs
            super().__init__(*args, **kwargs)

    def evaluate(*args, **kwargs):
        seen["evaluate"] = kwargs
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(trainer, "build_train_transform", transform)  # the names the trainer imported
    monkeypatch.setattr(trainer, "SRHATrainDataset", Dataset)
    monkeypatch.setattr(trainer, "evaluate_model", evaluate)
    args = run_args(synthetic_root, tmp_path / "run", "--max_iter", "1", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    args += ["--blur_p", "0.25", "--blur_rounding", "round", "--shift_centroid_by_padding", "true"]
    args += ["--class_uniform_whole_tiles_only", "false", "--eval_drop_remainder", "false", "--centroid_num_proc", "2"]
    config = load_config(None, parse_overrides(args))
    assert train(config)["status"] == "completed"
    assert (seen["transform"]["blur_p"], seen["transform"]["blur_rounding"], seen["transform"]["shift_centroid_by_padding"]) == (0.25, "round", True)
    assert seen["dataset"]["whole_tiles_only"] is False
    assert seen["dataset"]["centroid_num_proc"] == 2
    assert seen["evaluate"]["drop_remainder"] is False
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark  # the faithful default


def test_deterministic_key_sets_cudnn(monkeypatch):
    from srha_hf.training.trainer import set_cudnn_determinism

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    set_cudnn_determinism(load_config(None, {"deterministic": False}).deterministic)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    set_cudnn_determinism(load_config(ROOT / "configs" / "r50_gtav.yaml").deterministic)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


@pytest.mark.slow  # a subprocess / torchrun test
def test_ema_teacher_is_updated_before_each_forward(synthetic_root, tmp_path):
    out_dir = tmp_path / "ema"
    launch(
        run_args(
            synthetic_root, out_dir, "--max_iter", "2", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2",
            "--val_datasets", "cityscapes", "--model_kwargs", "{teacher_ema_alpha: 0.5}",
        )
    )  # fmt: skip

    def teacher(step):
        state = torch.load(out_dir / f"checkpoint-{step}" / "custom_checkpoint_0.pkl", weights_only=True)
        return {k.removeprefix("model."): v for k, v in state.items()}

    def student(step):
        return load_file(out_dir / f"checkpoint-{step}" / "model.safetensors")

    t1, t2, s1, s2 = teacher(1), teacher(2), student(1), student(2)
    params = [k for k in s1 if k.startswith("layer2") and k.endswith("weight") and "bn" not in k and s1[k].dim() > 1]
    assert params
    for key in params:
        # step 0 copied the *initial* student (before its update): the teacher now lags the student
        assert not torch.equal(t1[key], s1[key]), key
        # step 1 blended the student after one update with a = min(1 - 1/2, 0.5) = 0.5
        torch.testing.assert_close(t2[key], 0.5 * t1[key] + 0.5 * s1[key], rtol=0, atol=1e-6)
        assert not torch.equal(t2[key], s2[key])


@pytest.mark.integration
def test_split_file_and_size_mismatch_keys_reach_the_loader(synthetic_root, tmp_path, monkeypatch, capsys):
    calls = {}
    real_load = srha_hf.data.load_benchmark

    def load(name, root, split, **kwargs):
        calls[(name, split)] = kwargs
        return real_load(name, root, split, **kwargs)

    monkeypatch.setattr(trainer, "load_benchmark", load)
    train_dir = Path(synthetic_root) / "gtav" / "images" / "train"
    listed = sorted(p.stem for p in train_dir.rglob("*.png"))[:5]
    listing = tmp_path / "gtav_split_train.txt"
    listing.write_text("".join(f"{n}.png\n" for n in listed))
    args = run_args(synthetic_root, tmp_path / "run", "--max_iter", "1", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    args += ["--gtav_split_file", str(listing), "--size_mismatch", "drop"]
    assert train(load_config(None, parse_overrides(args)))["status"] == "completed"
    assert calls[("gtav", "train")] == {"split_file": str(listing), "size_mismatch": "drop"}
    assert calls[("cityscapes", "val")] == {"split_file": None, "size_mismatch": "drop"}
    out = capsys.readouterr().out
    assert f"source: gtav train: 5 pairs (gtav pre-split images/train, split from {listing} (5)); split list: 5 names, 5 found" in out
    assert "precision: fp32 (no from the recipe's mixed_precision key" in out


def test_pc_warmup_steps_key_defaults_to_off_and_is_validated():
    for recipe in ("r50_gtav.yaml", "demo.yaml"):
        assert load_config(ROOT / "configs" / recipe).pc_warmup_steps == 0  # PC at full weight from step 0
    assert load_config(None, {"pc_warmup_steps": 150}).pc_warmup_steps == 150
    with pytest.raises(ConfigError, match=r"pc_warmup_steps must be >= 0 \(0 = PC at full weight from step 0\), got -3"):
        load_config(None, {"pc_warmup_steps": -3})
    with pytest.raises(ConfigError, match="pc_warmup_steps expects an integer, got 1.5"):
        load_config(None, {"pc_warmup_steps": 1.5})


@pytest.mark.integration
def test_pc_warmup_follows_the_global_step_across_a_resume(synthetic_root, tmp_path, monkeypatch):
    """``pc_warmup_steps: 4`` over 4 steps: factors 0, 1/4, 2/4, 3/4 reach compute_srha_loss, also when the
    run is stopped (SIGTERM) after step 2 and resumed; TensorBoard logs the effective weight 10 x factor."""
    import os
    import signal

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen, real = [], srha_hf.compute_srha_loss
    stop_after = {"calls": 2}

    def loss(*args, pc_scale=1.0, **kwargs):
        seen.append(pc_scale)
        if len(seen) == stop_after["calls"]:
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler: checkpoint after this step, then stop
        return real(*args, pc_scale=pc_scale, **kwargs)

    monkeypatch.setattr(trainer, "compute_srha_loss", loss)  # the name the trainer imported
    out_dir = tmp_path / "warmup"
    args = run_args(synthetic_root, out_dir, "--max_iter", "4", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    args += ["--pc_warmup_steps", "4", "--report_to", "tensorboard", "--resume_from_checkpoint", "latest"]
    config = load_config(None, parse_overrides(args))
    assert train(config)["status"] == "interrupted"
    assert seen == [0.0, 0.25]
    stop_after["calls"] = -1
    assert train(config)["status"] == "completed"
    assert seen == [0.0, 0.25, 0.5, 0.75]
    logged = {}
    for events in sorted((out_dir / "logs").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "train/pc_weight" in acc.Tags()["scalars"]:  # (the hyperparameter files hold no scalars)
            logged.update({e.step: e.value for e in acc.Scalars("train/pc_weight")})
    assert logged == pytest.approx({1: 0.0, 2: 2.5, 3: 5.0, 4: 7.5})


@pytest.mark.integration
def test_logged_pc_weight_is_the_one_the_step_used(synthetic_root, tmp_path, monkeypatch):
    """train/pc_weight is the weight training_step passed to the loss (its StepResult), not a recomputation:
    a warm-up factor that changes at every call is asked once per step and logged as used."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    factors = iter([0.3, 0.7, 0.1, 0.9])
    calls = []

    def factor(step, warmup_steps):
        calls.append((step, warmup_steps))
        return next(factors)

    monkeypatch.setattr(trainer, "pc_warmup_factor", factor)  # the name the trainer imported
    out_dir = tmp_path / "run"
    args = run_args(synthetic_root, out_dir, "--max_iter", "2", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    config = load_config(None, parse_overrides(args + ["--pc_warmup_steps", "5", "--report_to", "tensorboard"]))
    assert train(config)["status"] == "completed"
    assert calls == [(0, 5), (1, 5)]
    logged = {}
    for events in sorted((out_dir / "logs").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "train/pc_weight" in acc.Tags()["scalars"]:
            logged.update({e.step: e.value for e in acc.Scalars("train/pc_weight")})
    assert logged == pytest.approx({1: 3.0, 2: 7.0})
    card = (out_dir / "model" / "README.md").read_text()
    assert "| PC warm-up | `pc_warmup_steps` 5: PC weight × min(1, step / 5) |" in card


def test_pc_warmup_steps_is_in_the_model_card(tmp_path):
    from srha_hf import SRHAConfig
    from srha_hf.hub import render_model_card, training_card_fields

    rows = {}
    for steps in (0, 150):
        config = load_config(None, {"pc_warmup_steps": steps, "backbone": "shufflenetv2"})
        fields = training_card_fields(config, SRHAConfig(backbone="shufflenetv2"), num_processes=1, hardware="CPU", training_time=12.0)
        assert fields["pc_warmup_steps"] == steps
        results = {"cityscapes": {"mean_iou": 0.25, "num_images": 3, "per_category_iou": {"road": 0.5}}}
        card = render_model_card(results, model_name="m", backbone="shufflenetv2",
                                 source_dataset="gtav", recipe="demo", training=fields)  # fmt: skip
        card.save(str(tmp_path / f"README-{steps}.md"))
        text = (tmp_path / f"README-{steps}.md").read_text()
        rows[steps] = [line for line in text.splitlines() if line.startswith("| PC warm-up |")]
    assert rows == {
        0: ["| PC warm-up | `pc_warmup_steps` 0 (PC at full weight from step 0) |"],
        150: ["| PC warm-up | `pc_warmup_steps` 150: PC weight × min(1, step / 150) |"],
    }
