"""Write a trial benchmark: the synthetic benchmark of ``scripts/make_synthetic_data.py`` repainted with the
trial amounts of experiments/trial_benchmark.py (all at their defaults: the benchmark as shipped).

    python -m experiments.make_trial_data outputs/synthetic_pat25 --class-pattern 25
    python -m experiments.make_trial_data outputs/shift_x1.8 --shift-scale 1.8 --texture-shift 0
    python -m experiments.make_trial_data outputs/generic_pat25 --random-look --class-pattern 25

Deterministic and idempotent, as the product's tool: rerunning with the same arguments reuses the files.
"""

from __future__ import annotations

import argparse
import sys
import time

from experiments.trial_benchmark import add_options, make_trial_benchmark, options_from_args
from srha_hf.cli.make_synthetic_data import add_benchmark_arguments, print_summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_benchmark_arguments(parser)
    add_options(parser)
    parser.add_argument("--random-look", action="store_true", help="a generic corpus (no domain shift) with the class spread / pattern")
    args = parser.parse_args(argv)
    amounts = options_from_args(parser, args)
    if args.random_look and (amounts["shift_scale"] != 1 or amounts["texture_shift"] != 1):
        parser.error("--random-look: a generic corpus has no domain shift; leave --shift-scale and --texture-shift at 1")
    start = time.perf_counter()
    paths = make_trial_benchmark(
        args.root, args.num_train, args.num_val, tuple(args.size), args.seed, gtav_layout=args.gtav_layout, progress=True,
        random_look=args.random_look, **amounts,
    )  # fmt: skip
    print_summary(paths, args.size, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
