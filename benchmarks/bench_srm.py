"""SRM: vectorized semantic_rearrangement against the plain per-image, per-region loop.

Setting of issue 2: B=2, layer0 features 64x192x192 (R50 at 768 crops), labels at 768x768.
Usage: python -m benchmarks.bench_srm [--device cpu|cuda] [--repeats N]
"""

import argparse

import torch

from benchmarks.common import emit, street_labels, time_call
from srha_hf import sample_mixing_weights, semantic_rearrangement
from tests.reference_loops import srm_loop  # the tests' oracle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 192, 192, generator=gen).to(device)
    labels = street_labels(2, 768, gen).to(device)
    weights = sample_mixing_weights(2, 20, generator=gen).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.no_grad():
        vec = time_call(lambda: semantic_rearrangement(x, labels, weights), args.repeats, sync=sync)
        loop = time_call(lambda: srm_loop(x, labels, weights), max(2, args.repeats // 2), sync=sync)
        err = (semantic_rearrangement(x, labels, weights) - srm_loop(x, labels, weights)).abs().max().item()
    regions = [len(torch.unique(labels[b, ::4, ::4])) for b in range(2)]
    emit(
        "srm",
        {
            "shape": [2, 64, 192, 192],
            "regions_per_image": regions,
            "device": str(device),
            "vectorized_ms": round(vec * 1e3, 2),
            "loop_ms": round(loop * 1e3, 2),
            "speedup": round(loop / vec, 1),
            "max_abs_diff": err,
        },
    )


if __name__ == "__main__":
    main()
