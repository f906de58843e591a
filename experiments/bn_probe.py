"""Is SRM's in-domain cost a batch-norm artefact? Every SRM row trains its BN layers on the doubled batch
``[original; rearranged]``, so its running statistics, which evaluation uses, are those of a mixture, while
evaluation only ever sees original images. This probe re-estimates the running statistics of every BN layer
after ``layer0`` (frozen, never updated) from original-only training crops of the source, with no SRM and no
gradient (a cumulative average over ``--batches`` batches of the recipe's size), and evaluates each row's
model before and after, on the source's val split and the four targets, as the training script does.

If SRM's cost came from the mixed statistics, the SRM rows would recover and plain training would not move.

Usage: python -m experiments.bn_probe outputs/dg_ablation/demo-pretrained [--seed 304] [--rows plain,srm,full] [--batches 50]
Prints JSON (mIoU in % per dataset, and the targets' mean, per row: as trained and re-estimated).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from experiments.common import SOURCE, TARGETS, evaluate_as_trained, machine
from experiments.train_trial import read_run_config
from srha_hf import SRHAForSemanticSegmentation
from srha_hf.data import SRHATrainDataset, build_train_transform, load_benchmark


def evaluate(model, datasets, config) -> dict:
    results = evaluate_as_trained(model, datasets, config)
    miou = {name: round(results[name]["mean_iou"] * 100, 2) for name in datasets}
    miou["targets_mean"] = round(statistics.fmean(miou[t] for t in TARGETS), 2)
    return miou


def reestimate_bn(model, batches) -> int:
    """Reset and re-estimate the running statistics of every BN layer outside layer0 from ``batches`` of
    original images (cumulative average, no SRM: no labels are passed); returns how many layers."""
    layers = [m for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not name.startswith("layer0")]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()  # layer0 stays in eval mode (the model's train() keeps it frozen)
    with torch.no_grad():
        for pixel_values in batches:
            model(pixel_values)
    model.eval()
    return len(layers)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="a dg_ablation.py sweep folder")
    parser.add_argument("--seed", type=int, default=304)
    parser.add_argument("--rows", default="plain,srm,full", help="comma-separated rows of the sweep")
    parser.add_argument("--batches", type=int, default=50, help="batches of original source crops for the re-estimate")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    folders = {row: sweep / row / f"seed{args.seed}" for row in rows}
    missing = [str(f) for f in folders.values() if not (f / "model" / "model.safetensors").is_file() or not (f / "train_config.yaml").is_file()]
    if missing:
        raise SystemExit(f"run the sweep first (python -m experiments.dg_ablation): no finished run in {', '.join(missing)}")
    config, _ = read_run_config(folders[rows[0]] / "train_config.yaml")  # a trial run's look is already in its files
    if not config.synthetic_data:
        raise SystemExit(f"{folders[rows[0]]}: the probe reads the synthetic benchmark (synthetic_data: false there)")
    root = Path(config.synthetic_root)
    datasets = {name: load_benchmark(name, root / name, "val") for name in (SOURCE, *TARGETS)}
    source = load_benchmark(SOURCE, root / SOURCE, config.train_split)
    transform = build_train_transform(crop_size=config.crop_size, scale_range=(config.scale_min, config.scale_max))
    dataset = SRHATrainDataset(source, transform, seed=args.seed)
    size = config.batch_size
    batches = [torch.stack([dataset[(0, (size * b + i) % len(source))]["pixel_values"] for i in range(size)]) for b in range(args.batches)]
    result = {"benchmark": "bn_probe", "machine": machine(), "sweep": str(sweep), "seed": args.seed, "batches": args.batches, "rows": {}}
    for row, folder in folders.items():
        model = SRHAForSemanticSegmentation.from_pretrained(str(folder / "model"))
        before = evaluate(model, datasets, config)
        layers = reestimate_bn(model, batches)
        result["rows"][row] = {"as_trained": before, "bn_reestimated": evaluate(model, datasets, config), "bn_layers": layers}
        print(f"[bn_probe] {row}: targets {before['targets_mean']} -> {result['rows'][row]['bn_reestimated']['targets_mean']}", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
