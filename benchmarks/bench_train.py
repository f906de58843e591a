"""Training speed on this machine: the demo's training it/s, and one SRHA training step per recipe
backbone at crop 256.

* ``demo``: ``scripts/train.py --config configs/demo.yaml`` for ``--demo_steps`` iterations (no periodic
  evaluation, one evaluation image), read back from the run's ``all_results.json`` (``train_it_per_s``).
* ``recipes``: for each recipe of ``configs/`` (its backbone and per-process batch), the median time of
  a full step (``compute_srha_loss`` + backward + SGD) at crop 256 on random data, ImageNet init off.

Usage: python -m benchmarks.bench_train [--demo_steps 30] [--repeats 3] [--skip_demo]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import emit, street_labels, time_call
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss
from srha_hf.training import build_optimizer, load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("r50_gtav", "r101_gtav", "mobilenetv2_gtav", "shufflenetv2_gtav", "r50_cityscapes")


def demo_speed(steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"),
            "--max_iter", str(steps), "--eval_steps", "0", "--checkpointing_steps", "0", "--eval_max_images", "1",
            "--val_datasets", "cityscapes", "--report_to", "none", "--output_dir", tmp,
            "--synthetic_root", str(ROOT / "outputs" / "synthetic"),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        results = json.loads((Path(tmp) / "all_results.json").read_text())
    return {"steps": steps, "train_it_per_s": results["train_it_per_s"]}


def step_time(backbone: str, batch: int, crop: int, repeats: int) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    config = SRHAConfig(backbone=backbone)
    student = SRHAForSemanticSegmentation(config).train()
    teacher = build_teacher(config)
    optimizer = build_optimizer(student, 0.005, 0.01)
    x = torch.randn(batch, 3, crop, crop, generator=gen)
    labels = street_labels(batch, crop, gen, block=32)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _ = compute_srha_loss(student, teacher, x, labels)
        loss.backward()
        optimizer.step()

    return time_call(step, repeats, warmup=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo_steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--skip_demo", action="store_true")
    args = parser.parse_args()
    out = {}
    if not args.skip_demo:
        out["demo"] = demo_speed(args.demo_steps)
    recipes, measured = {}, {}
    for name in RECIPES:
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        key = (cfg.backbone, cfg.batch_size)
        if key not in measured:  # r50_cityscapes trains the same network as r50_gtav
            measured[key] = step_time(cfg.backbone, cfg.batch_size, args.crop, args.repeats)
        recipes[name] = {"backbone": cfg.backbone, "batch": cfg.batch_size, "crop": args.crop, "step_s": round(measured[key], 3)}
    out["recipes"] = recipes
    emit("training", out)


if __name__ == "__main__":
    main()
