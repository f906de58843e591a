#!/usr/bin/env python
"""Class-uniform centroid extraction (`extract_centroids`) on full-size GTAV-format labels, in 1 and N
processes, and what a 25k-label split would take.

    python -m benchmarks.bench_centroids [--labels 16] [--rounds 3] [--num-proc 1 2] [--format palette rgb]

The labels are synthetic street scenes (`srha_hf.data.synthetic.draw_scene`) at GTAV's 1914x1052, written
as GTAV palette PNGs (the release format: Cityscapes ids as indices, Cityscapes colours) and as RGB colour
PNGs, decoded by the GTAV reader, tile 1024 (one whole tile per image, docs/method.md §9 D6). The process
counts run interleaved round by round; the first round is a warm-up (page cache, lookup tables) and is not
counted; 1 process with 4 threads (the in-process path's default) runs too. Prints one JSON object:
seconds per label for each process count (pool start-up included), the
split of one label's time between decoding and counting, and the extrapolation to a 25 000-label split per
core count, assuming the one-process rate divided by the cores (files read from a local disk or the page
cache; the 2-process row shows how close this machine comes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (1914, 1052)
SPLIT = 25_000


def write_labels(folder: Path, n: int, fmt: str) -> list[str]:
    from srha_hf.data.synthetic import CITYSCAPES_ID_COLORS, NATIVE_IDS, draw_scene

    colours = np.asarray(CITYSCAPES_ID_COLORS, dtype=np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = colours
    paths = []
    for i in range(n):
        ids = np.asarray(NATIVE_IDS["gtav"], dtype=np.uint8)[draw_scene(*SIZE, np.random.default_rng([5, i]))]
        path = folder / f"{fmt}_{i:05d}.png"
        if fmt == "palette":
            image = Image.frombytes("P", SIZE, ids.tobytes())
            image.putpalette(palette.ravel().tolist())
        else:
            image = Image.fromarray(colours[ids])
        image.save(path)
        paths.append(str(path))
    return paths


def per_label_parts(paths: list[str]) -> dict:
    """Mean ms per label of decoding and of counting (one process, one thread)."""
    from srha_hf.data.decoding import decode_gtav_label
    from srha_hf.data.uniform import image_centroids

    decode, count = [], []
    for path in paths:
        t = time.perf_counter()
        label = decode_gtav_label(path)
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        image_centroids(label, 1024)
        count.append(time.perf_counter() - t)
    return {"decode_ms": round(1000 * float(np.mean(decode)), 1), "centroids_ms": round(1000 * float(np.mean(count)), 1)}


def time_extraction(paths: list[str], variants: list[tuple[int, int]], rounds: int) -> dict:
    """Median seconds of one `extract_centroids` call per (processes, threads) variant, interleaved in an
    order that alternates round by round; round 0 is a warm-up."""
    from srha_hf.data.decoding import decode_gtav_label
    from srha_hf.data.uniform import extract_centroids

    times = {v: [] for v in variants}
    results = {}
    for r in range(rounds + 1):
        for v in variants if r % 2 == 0 else variants[::-1]:
            start = time.perf_counter()
            results[v] = extract_centroids(paths, decode_gtav_label, 1024, num_threads=v[1], progress=False, num_proc=v[0])
            if r:
                times[v].append(time.perf_counter() - start)
    first = results[variants[0]]
    assert all(res == first for res in results.values()), "centroids differ between process counts"
    return {v: float(np.median(t)) for v, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=4, help="also time 1 process with this many threads (0: not)")
    parser.add_argument("--format", nargs="+", default=["palette", "rgb"], choices=["palette", "rgb"])
    args = parser.parse_args(argv)

    from srha_hf.data.decoding import png_decoder
    from srha_hf.data.uniform import usable_cores

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.format:
            paths = write_labels(Path(tmp), args.labels, fmt)
            variants = [(p, 1) for p in args.num_proc] + ([(1, args.threads)] if args.threads > 1 else [])
            seconds = time_extraction(paths, variants, args.rounds)
            names = {v: (f"{v[0]}" if v[1] == 1 else f"1_process_{v[1]}_threads") for v in variants}
            per_label = {v: s / len(paths) for v, s in seconds.items()}
            one = per_label.get((1, 1))
            out[fmt] = {
                "mean_file_kb": round(float(np.mean([os.path.getsize(p) for p in paths])) / 1e3, 1),
                "one_label_in_one_process": per_label_parts(paths),
                "s_per_call": {names[v]: round(s, 3) for v, s in seconds.items()},
                "ms_per_label": {names[v]: round(1000 * s, 1) for v, s in per_label.items()},
                "speedup_over_1": {names[v]: round(one / s, 2) for v, s in per_label.items()} if one else None,
                "split_25k_s_if_linear": {str(c): round(SPLIT * one / c, 1) for c in (1, 2, 4, 8, 16)} if one else None,
            }
    result = {
        "benchmark": "centroids",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({usable_cores()} usable), no GPU used",
        "label_size": list(SIZE),
        "tile": 1024,
        "labels": args.labels,
        "rounds": args.rounds,
        "png_decoder": png_decoder(),
        **out,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
