"""Write the embedded synthetic benchmark (GTAV-like source; Cityscapes, BDD-100K, Mapillary and
Synthia-like targets, each in its real on-disk layout and label encoding).

    python scripts/make_synthetic_data.py data/synthetic [--num-train 100] [--num-val 20] [--size 384 212] [--seed 0] [--random-look]

`--random-look` writes a generic corpus instead (other scenes, a random look in every image, the same
formats): what the pretraining stage of `pretrain_data: generic` trains on. The trial benchmarks (stronger or
weaker regional shifts, classes that change colour, class gratings) are research: `python -m
experiments.make_trial_data` writes them.

Deterministic and idempotent: rerunning with the same arguments reuses the existing files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail
from srha_hf.data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes

# Flags of the trial benchmarks, which left this tool for experiments/make_trial_data.py.
MOVED_FLAGS = ("--shift-scale", "--texture-shift", "--class-colour-spread", "--class-pattern")


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every writer of the synthetic benchmark takes (this tool, experiments' trial data)."""
    parser.add_argument("root", help="output folder (gets gtav/, cityscapes/, bdd100k/, mapillary/, synthia/)")
    parser.add_argument("--num-train", type=int, default=100, help="training images per dataset")
    parser.add_argument("--num-val", type=int, default=20, help="validation images per dataset")
    parser.add_argument("--size", type=int, nargs=2, default=(384, 212), metavar=("W", "H"), help="GTAV image size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gtav-layout", choices=("presplit", "flat"), default="presplit")


def check_benchmark_arguments(args) -> None:
    """A UsageError naming the first argument of :func:`add_benchmark_arguments` the writer cannot use."""
    for flag in ("num_train", "num_val"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if min(args.size) < 1:
        raise UsageError(f"--size must be two positive numbers W H, got {' '.join(map(str, args.size))}")
    check_output(args.root, "root", folder=True)


def print_summary(paths, size, start: float) -> None:
    """The JSON line the writers print: the dataset roots, the evaluation sizes and the seconds taken."""
    print(json.dumps({
        "roots": {k: str(v) for k, v in paths.items()},
        "eval_transform_kwargs": synthetic_eval_sizes(tuple(size)),
        "seconds": round(time.perf_counter() - start, 2),
    }, indent=1))  # fmt: skip


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_benchmark_arguments(parser)
    parser.add_argument("--random-look", action="store_true", help="a generic corpus: other scenes, each image with a random look of its own")
    args, rest = parser.parse_known_args(argv)
    moved = [token for token in rest if token.split("=", 1)[0] in MOVED_FLAGS]
    if moved:
        parser.error(f"{moved[0].split('=', 1)[0]} writes a trial benchmark: it moved to python -m experiments.make_trial_data")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        check_benchmark_arguments(args)
    except UsageError as exc:
        return fail(exc)
    start = time.perf_counter()
    paths = make_synthetic_benchmark(
        args.root, args.num_train, args.num_val, tuple(args.size), args.seed, gtav_layout=args.gtav_layout, progress=True,
        random_look=args.random_look,
    )  # fmt: skip
    print_summary(paths, args.size, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
