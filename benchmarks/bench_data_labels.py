#!/usr/bin/env python
"""GTAV label decoding per 1914x1052 image: srha_hf's lookup tables vs a plain per-colour loop.

    python -m benchmarks.bench_data_labels [--images 4] [--repeats 3]

The loop is what a straightforward port does: read the label as RGB, start from 255, and for each of
the 19 colours set the pixels equal to it. Timed both from the file (PNG decode included; palette
and RGB label files) and on the in-memory RGB array (mapping only). Prints one JSON object.
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
from PIL import Image


def per_colour_loop(rgb: np.ndarray, palette) -> np.ndarray:
    out = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    for train_id, color in enumerate(palette):
        out[np.all(rgb == np.asarray(color, np.uint8), axis=-1)] = train_id
    return out


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from srha_hf.data.benchmarks import decode_gtav_label
    from srha_hf.data.labels import CITYSCAPES_PALETTE, gtav_rgb_lut, pack_rgb
    from srha_hf.data.synthetic import make_synthetic_benchmark

    gtav_rgb_lut()  # built once per process (16 MiB), not part of the per-image cost
    rows = {k: [] for k in ("file_palette_lut", "file_rgb_lut", "file_loop", "array_lut", "array_loop")}
    with tempfile.TemporaryDirectory() as tmp:
        roots = make_synthetic_benchmark(tmp, num_train=args.images, num_val=1, size=(1914, 1052))
        palette_files = sorted((roots["gtav"] / "labels" / "train").rglob("*.png"))
        for k, palette_file in enumerate(palette_files):
            rgb = np.asarray(Image.open(palette_file).convert("RGB"))
            rgb_file = Path(tmp) / f"rgb_{k}.png"
            Image.fromarray(rgb).save(rgb_file)
            expected = per_colour_loop(rgb, CITYSCAPES_PALETTE)
            assert np.array_equal(decode_gtav_label(str(palette_file)), expected)
            assert np.array_equal(decode_gtav_label(str(rgb_file)), expected)
            rows["file_palette_lut"].append(best_of(lambda: decode_gtav_label(str(palette_file)), args.repeats))
            rows["file_rgb_lut"].append(best_of(lambda: decode_gtav_label(str(rgb_file)), args.repeats))
            rows["file_loop"].append(best_of(
                lambda: per_colour_loop(np.asarray(Image.open(palette_file).convert("RGB")), CITYSCAPES_PALETTE),
                args.repeats))  # fmt: skip
            rows["array_lut"].append(best_of(lambda: gtav_rgb_lut()[pack_rgb(rgb)], args.repeats))
            rows["array_loop"].append(best_of(lambda: per_colour_loop(rgb, CITYSCAPES_PALETTE), args.repeats))
    ms = {k: round(1000 * float(np.mean(v)), 2) for k, v in rows.items()}
    result = {
        "benchmark": "gtav_label_decoding",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, no GPU used",
        "image_size": [1914, 1052],
        "images": args.images,
        "ms_per_image": ms,
        "speedup_file_palette_vs_loop": round(ms["file_loop"] / ms["file_palette_lut"], 1),
        "speedup_file_rgb_vs_loop": round(ms["file_loop"] / ms["file_rgb_lut"], 1),
        "speedup_mapping_only": round(ms["array_loop"] / ms["array_lut"], 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
