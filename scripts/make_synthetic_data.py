#!/usr/bin/env python
"""Write the embedded synthetic benchmark (GTAV-like source; Cityscapes, BDD-100K, Mapillary and
Synthia-like targets, each in its real on-disk layout and label encoding).

    python scripts/make_synthetic_data.py data/synthetic [--num-train 100] [--num-val 20] [--size 384 212] [--seed 0] \
        [--shift-scale 1] [--texture-shift 1] [--class-colour-spread 0]

Deterministic and idempotent: rerunning with the same arguments reuses the existing files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for _bootstrap, which removes it again
import _bootstrap  # noqa: E402 - sys.path set-up, see scripts/_bootstrap.py

_bootstrap.set_up()

from srha_hf.data.synthetic import check_shift_scale, make_synthetic_benchmark, synthetic_eval_sizes  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output folder (gets gtav/, cityscapes/, bdd100k/, mapillary/, synthia/)")
    parser.add_argument("--num-train", type=int, default=100, help="training images per dataset")
    parser.add_argument("--num-val", type=int, default=20, help="validation images per dataset")
    parser.add_argument("--size", type=int, nargs=2, default=(384, 212), metavar=("W", "H"), help="GTAV image size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gtav-layout", choices=("presplit", "flat"), default="presplit")
    parser.add_argument(
        "--shift-scale", type=float, default=1.0,
        help="multiplies the targets' per-class colour shifts (the regional domain shift); 1 = the benchmark as shipped",
    )  # fmt: skip
    parser.add_argument(
        "--texture-shift", type=float, default=1.0,
        help="multiplies the spread of the targets' per-class texture changes; 1 = the benchmark as shipped, 0 = the source's textures",
    )  # fmt: skip
    parser.add_argument(
        "--class-colour-spread", type=float, default=0.0,
        help="moves each class's colour by its own random offset of up to this length (RGB) in every image; 0 = the benchmark as shipped",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for flag, name in (("--shift-scale", "shift_scale"), ("--texture-shift", "texture_shift"), ("--class-colour-spread", "class_colour_spread")):
        try:
            check_shift_scale(getattr(args, name), name)
        except ValueError as err:
            parser.error(f"{flag}: {err}")
    start = time.perf_counter()
    paths = make_synthetic_benchmark(
        args.root, args.num_train, args.num_val, tuple(args.size), args.seed, gtav_layout=args.gtav_layout, progress=True,
        shift_scale=args.shift_scale, texture_shift=args.texture_shift, class_colour_spread=args.class_colour_spread,
    )
    print(json.dumps({
        "roots": {k: str(v) for k, v in paths.items()},
        "eval_transform_kwargs": synthetic_eval_sizes(tuple(args.size)),
        "seconds": round(time.perf_counter() - start, 2),
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
