#!/usr/bin/env python
"""Examples/s of the training data pipeline (decode + docs/method.md §5.3 transforms + SRMCollator) on
GTAV-format 1914x1052 samples with 768 crops: in a single process, per stage, and (``--workers``)
through a torch DataLoader with N workers.

    python -m benchmarks.bench_data_pipeline [--images 6] [--examples 48] [--batch-size 4]
        [--workers 0 1 2] [--loader-examples 64] [--exact-resize] [--pil-only]

Prints one JSON object: examples/s overall and the mean milliseconds of each stage, with the share of
decoding in the expected per-example time. With ``--workers`` it adds, per worker count, the
examples/s of a DataLoader built as the trainer builds it (``SRHATrainDataset`` with class-uniform
sampling and ``TrainConfig``'s transform, ``EpochSampler`` keys, ``SRMCollator``), timed after each
worker's first batch (start-up excluded), and the workers one GPU needs at ``--gpu-examples-per-s``
(43: batch 4 at 93 ms per step on an H200, bf16) if the rate grows linearly with the workers.
``--pil-only`` decodes every PNG with PIL (libspng off), for the comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAGES = ("decode_image", "decode_label", "scale_crop", "flip", "color_jitter_when_applied", "gaussian_blur", "to_tensors",
          "collate_per_example")  # fmt: skip


def single_process(train, collate, n: int, batch_size: int, crop: int) -> float:
    """Seconds for `n` examples read and collated in this process, batch by batch."""
    collate([train[0]])  # warm-up (lookup tables, imports)
    start = time.perf_counter()
    for b in range(0, n, batch_size):
        items = [train[(0, (b + k) % len(train))] for k in range(batch_size)]
        batch = collate(items)
    total = time.perf_counter() - start
    assert batch["pixel_values"].shape == (batch_size, 3, crop, crop)
    return total


def stage_breakdown(ds, transform, collate, n: int) -> dict:
    """Mean ms of each stage over `n` examples, every stage applied (flip and jitter included)."""
    from srha_hf.data.benchmarks import decode_gtav_label, read_image
    from srha_hf.data.seeding import sample_rng
    from srha_hf.data.transforms import color_jitter, gaussian_blur

    plain = ds.with_format(None)
    stages = {k: [] for k in STAGES}

    def timed(name, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        stages[name].append(time.perf_counter() - t)
        return out

    for i in range(n):
        row = i % len(plain)
        rng = sample_rng(304, 0, i)
        image = timed("decode_image", read_image, plain[row]["image_path"])
        label = timed("decode_label", decode_gtav_label, plain[row]["label_path"])
        img, lab = timed("scale_crop", transform.scale_crop, image, label, rng)
        img, lab = timed("flip", lambda a, b: (np.ascontiguousarray(a[:, ::-1]), np.ascontiguousarray(b[:, ::-1])), img, lab)
        img = timed("color_jitter_when_applied", color_jitter, img, rng)
        img = timed("gaussian_blur", gaussian_blur, img, 0.15 + 1.15 * rng.random())
        item = timed("to_tensors", transform.to_tensors, img, lab)
        timed("collate_per_example", collate, [{"pixel_values": item[0], "labels": item[1], "epoch": 0, "index": i}])
    return {k: 1000 * float(np.mean(v)) for k, v in stages.items()}


def expected_ms(stage_ms: dict, flip_p: float, jitter_p: float) -> float:
    """The mean per-example time when flip and jitter run with their probabilities."""
    scale = {"flip": flip_p, "color_jitter_when_applied": jitter_p}
    return sum(ms * scale.get(k, 1.0) for k, ms in stage_ms.items())


def loader_keys(train, batch_size: int, n_batches: int) -> list:
    """The trainer's batches (`EpochSampler` keys, epoch after epoch) until `n_batches` are full."""
    from srha_hf.data import EpochSampler

    sampler = EpochSampler(train, num_replicas=1, rank=0, seed=0, pad=True, yield_epoch=True)
    keys, epoch = [], 0
    while len(keys) < n_batches * batch_size:
        sampler.set_epoch(epoch)
        keys += list(sampler)
        epoch += 1
    return [keys[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


def loader_rate(train, collate, workers: int, batch_size: int, timed_batches: int) -> dict:
    """Examples/s through a DataLoader with `workers` workers, timed from the arrival of the first
    batch of every worker (their start-up and first item excluded) to the last batch."""
    import torch

    warmup = max(1, workers)
    batches = loader_keys(train, batch_size, warmup + timed_batches)
    loader = torch.utils.data.DataLoader(train, batch_sampler=batches, collate_fn=collate, num_workers=workers)
    start = time.perf_counter()
    first = None
    for b, batch in enumerate(loader):
        assert batch["pixel_values"].shape[0] == batch_size
        if b == warmup - 1:
            first = time.perf_counter()
    end = time.perf_counter()
    examples = timed_batches * batch_size
    return {
        "workers": workers,
        "examples": examples,
        "examples_per_s": round(examples / (end - first), 2),
        "startup_and_first_batches_s": round(first - start, 2),
    }


def workers_needed(rates: list, target: float) -> dict:
    """Workers for `target` examples/s from the 1-worker rate, assuming linear scaling."""
    by_n = {r["workers"]: r["examples_per_s"] for r in rates}
    out = {"target_examples_per_s": target}
    if 1 in by_n:
        out["per_worker_examples_per_s"] = by_n[1]
        out["workers_needed_if_linear"] = math.ceil(target / by_n[1])
    for n, rate in by_n.items():
        if n > 1 and 1 in by_n:
            out[f"scaling_efficiency_{n}_workers"] = round(rate / (n * by_n[1]), 2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="distinct GTAV-format files to cycle through")
    parser.add_argument("--examples", type=int, default=48, help="examples to time")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=768)
    parser.add_argument("--exact-resize", action="store_true", help="resize whole images (bit-identical path)")
    parser.add_argument("--workers", type=int, nargs="*", default=None, help="DataLoader worker counts to time")
    parser.add_argument("--loader-examples", type=int, default=64, help="examples timed per worker count")
    parser.add_argument("--gpu-examples-per-s", type=float, default=43.0, help="what one GPU consumes")
    parser.add_argument("--pil-only", action="store_true", help="decode every PNG with PIL (libspng off)")
    args = parser.parse_args(argv)

    import torch

    from srha_hf.data import SRHATrainDataset, SRMCollator, decoding, load_benchmark
    from srha_hf.data.synthetic import make_synthetic_benchmark
    from srha_hf.data.transforms import build_train_transform
    from srha_hf.training.config import TrainConfig
    from srha_hf.training.trainer import train_transform_kwargs

    if args.pil_only:
        decoding._spng = None  # DataLoader workers fork and inherit it
    torch.set_num_threads(1)
    config = TrainConfig(crop_size=args.crop, exact_resize=args.exact_resize, batch_size=args.batch_size)
    n = args.examples - args.examples % args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        roots = make_synthetic_benchmark(tmp, num_train=args.images, num_val=1, size=(1914, 1052))
        gen_s = time.perf_counter() - t0
        ds = load_benchmark("gtav", roots["gtav"], "train")
        transform = build_train_transform(**train_transform_kwargs(config))
        train = SRHATrainDataset(ds, transform, seed=config.seed, progress=False)
        collate = SRMCollator(seed=config.seed)
        total = single_process(train, collate, n, args.batch_size, args.crop)
        stage_ms = stage_breakdown(ds, transform, collate, min(n, 24))
        loader = []
        if args.workers:
            uniform = SRHATrainDataset(ds, transform, seed=config.seed, class_uniform=config.class_uniform, pct=config.class_uniform_pct,
                                       tile=config.class_uniform_tile, cache_dir=Path(tmp) / "centroids", progress=False)  # fmt: skip
            timed_batches = max(1, args.loader_examples // args.batch_size)
            loader = [loader_rate(uniform, collate, w, args.batch_size, timed_batches) for w in args.workers]

    per_example = expected_ms(stage_ms, transform.flip_p, transform.jitter_p)
    result = {
        "benchmark": "data_pipeline",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU used",
        "image_size": [1914, 1052],
        "crop": args.crop,
        "batch_size": args.batch_size,
        "exact_resize": args.exact_resize,
        "examples": n,
        "examples_per_s": round(n / total, 2),
        "ms_per_example": round(1000 * total / n, 1),
        "stage_ms_mean": {k: round(v, 1) for k, v in stage_ms.items()},
        "fixture_generation_s": round(gen_s, 1),
        "png_decoder": decoding.png_decoder(),
        "stage_expected_ms_per_example": round(per_example, 1),
        "decode_share": round((stage_ms["decode_image"] + stage_ms["decode_label"]) / per_example, 3),
    }
    if loader:
        result["dataloader"] = loader
        result["gpu_feed"] = workers_needed(loader, args.gpu_examples_per_s)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
