"""The cost of the common corruptions (Cityscapes-C protocol, `srha_hf.corruptions`) per image, and what a
full evaluation under them costs in CPU time.

    python -m benchmarks.bench_corruptions [--severities 1 3 5] [--reps 1] [--glass-reps N] [--full]

Each of the 19 corruptions of imagecorruptions-imaug is timed through `srha_hf.corruptions.corrupt_image`
(what `EvalDataset.__getitem__` runs in the DataLoader workers), with seeds from `corruption_seed` (one image
key per repetition), on a photo at Cityscapes' resolution, 2048x1024 RGB uint8 (scikit-image's astronaut and
coffee, each Lanczos-upscaled to 1024x1024, side by side), and on the same photo resized to 384x212, the
synthetic benchmark's size. OpenCV runs on one thread (`--cv2-threads`), so a timing is one core's work; the
process CPU time is recorded alongside the wall time as a check. Every corruption is called once per size
before the timing (warm-up); glass blur's numba kernel is compiled on its first call per type signature
(severities 1, 2, 4, 5 share one, severity 3 has its own), which is timed on a 64x64 image in this process and
in fresh processes (what each DataLoader worker pays per glass-blur cell: the evaluation's parent process never
compiles it). The repetitions run round-robin over corruptions and severities; the median is reported.

Default (`make bench`, about a minute on 2 idle cores): severities 1 3 5, one repetition. `--full` (the
README's numbers): severities 1-5, three repetitions.

From the per-image costs it estimates (nothing of the model is measured: no GPU is lent to this script):
* a full Cityscapes-C evaluation: 500 val images x the 16 published corruptions (and x all 19) x severities
  1-5 at 2048x1024: the corruption CPU time, and the wall time spread over W = 8 and 16 DataLoader workers
  (one GPU's worth), assuming the workers' corruption, not the GPU forward, bounds the evaluation and that
  the W workers scale perfectly (PNG decoding, worker start-up and the forward are not included);
* the synthetic sweep of experiments/corruption_sweep.py: 2 datasets x 20 images x severities 1, 3, 5 at
  384x212, with its 18 corruptions (all but glass blur) and with all 19.
Unmeasured severities (with `--severities` short of 1-5) take the mean of the measured ones. Prints one JSON
object, one line per corruption.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import machine

BIG = (2048, 1024)  # (width, height): Cityscapes
SMALL = (384, 212)  # the synthetic benchmark (configs/demo.yaml)
CITYSCAPES_VAL = 500
WORKERS = (8, 16)
SWEEP = {"datasets": 2, "images": 20, "severities": (1, 3, 5), "left_out": ("glass_blur",)}
SWEEP_RUNS = 15 + 6 + 2  # experiments/corruption_sweep.py: ablation (5 rows x 3 seeds), steps800 (2 x 3), steps1600 (2 x 1)

COMPILE_PROBE = """
import json, sys, time
import numpy as np
from srha_hf.corruptions import corrupt_image, require_imagecorruptions
require_imagecorruptions()  # what evaluate_corruptions imports in the parent before the workers fork
image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
severity = int(sys.argv[1])
t0 = time.perf_counter(); corrupt_image(image, "glass_blur", severity, 1); first = time.perf_counter() - t0
t0 = time.perf_counter(); corrupt_image(image, "glass_blur", severity, 2); second = time.perf_counter() - t0
print(json.dumps({"first_s": first, "second_s": second}))
"""


def test_image(size=BIG) -> np.ndarray:
    """A 2048x1024 photo (astronaut | coffee, each Lanczos-upscaled to 1024x1024), resized to ``size``."""
    from PIL import Image
    from skimage import data

    halves = [np.asarray(Image.fromarray(d).resize((BIG[1], BIG[1]), Image.LANCZOS)) for d in (data.astronaut(), data.coffee())]
    image = Image.fromarray(np.ascontiguousarray(np.concatenate(halves, axis=1)))
    if size != BIG:
        image = image.resize(size, Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def glass_compile(severities=(1, 3)) -> dict:
    """Seconds of glass blur's first call on a 64x64 image, in this process (in order: severity 1 then 3, the
    two signatures) and each in a fresh process (what one DataLoader worker pays per glass-blur cell)."""
    from srha_hf.corruptions import corrupt_image

    tiny = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    here = {}
    for severity in severities:
        t0 = time.perf_counter()
        corrupt_image(tiny, "glass_blur", severity, 1)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        corrupt_image(tiny, "glass_blur", severity, 2)
        here[str(severity)] = round(first - (time.perf_counter() - t0), 3)
    fresh = {}
    for severity in severities:
        out = subprocess.run([sys.executable, "-c", COMPILE_PROBE, str(severity)], capture_output=True, text=True, check=True)
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        fresh[str(severity)] = round(probe["first_s"] - probe["second_s"], 3)
    return {"this_process_s": here, "fresh_process_s": fresh}


def time_all(images: dict, names, severities, reps: int, glass_reps: int) -> tuple[dict, float]:
    """``({size: {name: {severity: median ms}}}, cpu/wall ratio)``, the repetitions round-robin."""
    from srha_hf.corruptions import corrupt_image, corruption_seed

    samples = {size: {n: {s: [] for s in severities} for n in names} for size in images}
    wall_total = cpu_total = 0.0
    for rep in range(max(reps, glass_reps)):
        key = f"bench_{rep:03d}_leftImg8bit.png"  # one image key (one seed per cell) per repetition
        for size, image in images.items():
            for name in names:
                if rep >= (glass_reps if name == "glass_blur" else reps):
                    continue
                for severity in severities:
                    seed = corruption_seed(key, name, severity)
                    w0, c0 = time.perf_counter(), time.process_time()
                    corrupt_image(image, name, severity, seed)
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                    samples[size][name][severity].append(wall)
                    wall_total, cpu_total = wall_total + wall, cpu_total + cpu
            print(f"repetition {rep + 1} at {size}: done", file=sys.stderr, flush=True)
    medians = {size: {n: {s: 1000 * statistics.median(v) for s, v in by.items()} for n, by in per.items()} for size, per in samples.items()}
    return medians, cpu_total / wall_total


def per_image_ms(by_severity: dict, severities) -> list:
    """ms at each of ``severities``: measured, or the mean of the measured severities."""
    mean = statistics.fmean(by_severity.values())
    return [by_severity.get(s, mean) for s in severities]


def estimates(medians: dict, compile_s: float, process_compile_s: float) -> dict:
    """``compile_s``: glass blur's compile in a fresh worker (per cell); ``process_compile_s``: both signatures
    compiled in one process (the synthetic sweep, once per run)."""
    from srha_hf.corruptions import ALL_CORRUPTIONS, CITYSCAPES_C

    big, small = medians[f"{BIG[0]}x{BIG[1]}"], medians[f"{SMALL[0]}x{SMALL[1]}"]
    out = {}
    for label, names in (("cityscapes_c_16", CITYSCAPES_C), ("all_19", ALL_CORRUPTIONS)):
        cpu_s = CITYSCAPES_VAL * sum(sum(per_image_ms(big[n], range(1, 6))) for n in names) / 1000
        glass_cells = 5 if "glass_blur" in names else 0  # each worker compiles the kernel once per glass-blur cell
        glass_s = CITYSCAPES_VAL * sum(per_image_ms(big["glass_blur"], range(1, 6))) / 1000 if glass_cells else 0.0
        out[label] = {
            "images_corrupted": CITYSCAPES_VAL * len(names) * 5,
            "corruption_cpu_hours": round(cpu_s / 3600, 2),
            "wall_hours": {f"{w}_workers": round((cpu_s + w * glass_cells * compile_s) / w / 3600, 2) for w in WORKERS},
            "glass_blur_share": round(glass_s / cpu_s, 3),
        }
    images = SWEEP["datasets"] * SWEEP["images"]
    per_run = {n: images * sum(per_image_ms(small[n], SWEEP["severities"])) / 1000 for n in small}
    kept = [n for n in small if n not in SWEEP["left_out"]]
    sweep = {"per_run_s_18": round(sum(per_run[n] for n in kept), 1), "per_run_s_19": round(sum(per_run.values()) + process_compile_s, 1),
             "glass_blur_per_run_s": round(per_run["glass_blur"], 2), "glass_blur_compile_s": round(process_compile_s, 2),
             "runs": SWEEP_RUNS}  # fmt: skip
    sweep["all_runs_min_18"] = round(SWEEP_RUNS * sweep["per_run_s_18"] / 60, 1)
    sweep["all_runs_min_19"] = round(SWEEP_RUNS * sweep["per_run_s_19"] / 60, 1)
    others = statistics.fmean(per_run[n] for n in kept)
    sweep["glass_blur_over_mean_of_others"] = round(per_run["glass_blur"] / others, 2)  # per image, severities 1 3 5
    out["synthetic_sweep"] = sweep
    return out


def dump(obj: dict) -> str:
    """JSON with one line per top-level key and one line per corruption."""
    lines = []
    for key, value in obj.items():
        if key == "corruptions":
            rows = [f'  "{n}": {json.dumps(v)}' for n, v in value.items()]
            lines.append(f' "{key}": {{\n' + ",\n".join(rows) + "\n }")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 3, 5], choices=range(1, 6))
    parser.add_argument("--reps", type=int, default=1, help="timed calls per corruption x severity x size (median)")
    parser.add_argument("--glass-reps", type=int, default=None, help="timed calls for glass blur (default: --reps)")
    parser.add_argument("--corruptions", default="all", help="names, a family, cityscapes-c or all (estimates need all)")
    parser.add_argument("--cv2-threads", type=int, default=1, help="OpenCV threads (default 1: one core's work per image)")
    parser.add_argument("--full", action="store_true", help="severities 1-5 and 3 repetitions (the README's numbers)")
    args = parser.parse_args(argv)
    if args.full:
        args.severities, args.reps = [1, 2, 3, 4, 5], max(args.reps, 3)
    glass_reps = args.reps if args.glass_reps is None else args.glass_reps
    severities = sorted(set(args.severities))

    import cv2

    from srha_hf.corruptions import ALL_CORRUPTIONS, corrupt_image, family_of, package_version, resolve_corruptions

    cv2.setNumThreads(args.cv2_threads)
    names = resolve_corruptions(args.corruptions)
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    compile_times = glass_compile() if "glass_blur" in names else None
    images = {f"{w}x{h}": test_image((w, h)) for w, h in (BIG, SMALL)}
    warm = {}
    for size, image in images.items():  # warm-up: one call per corruption and size (lazy imports, first-use caches)
        for name in names:
            t0 = time.perf_counter()
            corrupt_image(image, name, severities[0], 0)
            warm.setdefault(name, {})[size] = round(1000 * (time.perf_counter() - t0), 1)
    if "glass_blur" in names:
        for severity in severities:  # both numba signatures compiled before the timing
            corrupt_image(images[f"{SMALL[0]}x{SMALL[1]}"], "glass_blur", severity, 0)
    medians, cpu_over_wall = time_all(images, names, severities, args.reps, glass_reps)

    big, small = f"{BIG[0]}x{BIG[1]}", f"{SMALL[0]}x{SMALL[1]}"
    rows = {}
    for name in names:
        row = {"family": family_of(name)}
        for size in (big, small):
            row[f"ms_{size}"] = {str(s): round(medians[size][name][s], 1) for s in severities}
            row[f"mean_ms_{size}"] = round(statistics.fmean(medians[size][name].values()), 1)
        row["warmup_ms"] = warm[name]
        rows[name] = row
    result = {
        "benchmark": "corruptions",
        "package": package_version(),
        "numba": __import__("numba").__version__,
        "opencv_threads": cv2.getNumThreads(),
        "image": "skimage astronaut | coffee, each Lanczos-upscaled to 1024x1024 (2048x1024 RGB uint8); bicubic to 384x212",
        "sizes": [big, small],
        "severities": severities,
        "reps": args.reps,
        "glass_reps": glass_reps,
        "statistic": "median wall ms per image of corrupt_image, one thread, after a warm-up call",
        "cpu_over_wall": round(cpu_over_wall, 3),
        "glass_blur_compile": compile_times,
        "corruptions": rows,
        "mean_ms": {size: round(statistics.fmean(rows[n][f"mean_ms_{size}"] for n in names), 1) for size in (big, small)},
    }
    if set(names) == set(ALL_CORRUPTIONS):
        fresh, here = compile_times["fresh_process_s"].values(), compile_times["this_process_s"].values()
        result["estimates"] = estimates(medians, max(fresh), sum(here))
        result["estimates"]["assumptions"] = (
            "model forward NOT measured (no GPU lent): the corruption in W DataLoader workers on W free cores is taken as "
            "the bottleneck, scaling perfectly; PNG decoding, worker start-up and the forward excluded; each worker "
            "compiles glass blur once per glass-blur cell (fresh-process compile time); the synthetic sweep evaluates "
            "with num_workers=0 in one process, so its glass blur compiles once per run"
            + ("" if severities == [1, 2, 3, 4, 5] else "; unmeasured severities take the mean of the measured ones")
        )
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["load_average_before_after"] = [load_before, [round(x, 2) for x in os.getloadavg()]]
    result["machine"] = machine()
    print(dump(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
