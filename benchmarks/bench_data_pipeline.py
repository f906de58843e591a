#!/usr/bin/env python
"""Examples/s of the training data pipeline (decode + SPEC §5.3 transforms + SRMCollator) on
GTAV-format 1914x1052 samples with 768 crops, in a single process (no DataLoader workers).

    python benchmarks/bench_data_pipeline.py [--images 6] [--examples 48] [--batch-size 4]

Prints one JSON object: examples/s overall and the mean milliseconds of each stage.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="distinct GTAV-format files to cycle through")
    parser.add_argument("--examples", type=int, default=48, help="examples to time")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=768)
    parser.add_argument("--exact-resize", action="store_true", help="resize whole images (bit-identical path)")
    args = parser.parse_args(argv)

    import torch

    from srha_hf.data import SRHATrainDataset, SRMCollator, TrainTransform, load_benchmark
    from srha_hf.data.benchmarks import decode_gtav_label, read_image
    from srha_hf.data.seeding import sample_rng
    from srha_hf.data.synthetic import make_synthetic_benchmark
    from srha_hf.data.transforms import color_jitter, gaussian_blur

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        roots = make_synthetic_benchmark(tmp, num_train=args.images, num_val=1, size=(1914, 1052))
        gen_s = time.perf_counter() - t0
        ds = load_benchmark("gtav", roots["gtav"], "train")
        transform = TrainTransform(crop_size=args.crop, exact_resize=args.exact_resize)
        train = SRHATrainDataset(ds, transform, seed=304, progress=False)
        collate = SRMCollator(seed=304)

        # warm-up (lookup tables, imports)
        collate([train[0]])

        # end to end, single process
        n = args.examples - args.examples % args.batch_size
        start = time.perf_counter()
        for b in range(0, n, args.batch_size):
            items = [train[(0, (b + k) % len(train))] for k in range(args.batch_size)]
            batch = collate(items)
        total = time.perf_counter() - start
        assert batch["pixel_values"].shape == (args.batch_size, 3, args.crop, args.crop)

        # per stage, on the same files and draws
        plain = ds.with_format(None)
        stages = {k: [] for k in ("decode_image", "decode_label", "scale_crop", "flip", "color_jitter_when_applied",
                                  "gaussian_blur", "to_tensors", "collate_per_example")}  # fmt: skip
        for i in range(min(n, 24)):
            row = i % len(train)
            rng = sample_rng(304, 0, i)
            t = time.perf_counter()
            image = read_image(plain[row]["image_path"])
            stages["decode_image"].append(time.perf_counter() - t)
            t = time.perf_counter()
            label = decode_gtav_label(plain[row]["label_path"])
            stages["decode_label"].append(time.perf_counter() - t)
            t = time.perf_counter()
            img, lab = transform.scale_crop(image, label, rng)
            stages["scale_crop"].append(time.perf_counter() - t)
            t = time.perf_counter()
            img, lab = np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(lab[:, ::-1])
            stages["flip"].append(time.perf_counter() - t)
            t = time.perf_counter()
            img = color_jitter(img, rng)
            stages["color_jitter_when_applied"].append(time.perf_counter() - t)
            t = time.perf_counter()
            img = gaussian_blur(img, 0.15 + 1.15 * rng.random())
            stages["gaussian_blur"].append(time.perf_counter() - t)
            t = time.perf_counter()
            item = transform.to_tensors(img, lab)
            stages["to_tensors"].append(time.perf_counter() - t)
            t = time.perf_counter()
            collate([{"pixel_values": item[0], "labels": item[1], "epoch": 0, "index": i}])
            stages["collate_per_example"].append(time.perf_counter() - t)

    result = {
        "benchmark": "data_pipeline",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, no GPU used",
        "image_size": [1914, 1052],
        "crop": args.crop,
        "batch_size": args.batch_size,
        "exact_resize": args.exact_resize,
        "examples": n,
        "examples_per_s": round(n / total, 2),
        "ms_per_example": round(1000 * total / n, 1),
        "stage_ms_mean": {k: round(1000 * float(np.mean(v)), 1) for k, v in stages.items()},
        "fixture_generation_s": round(gen_s, 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
