"""RA: vectorized regional_alignment_loss against the plain per-image, per-region loop.

Setting of issue 2: student layer1 features 256x192x192 for 2B=4 rows (B=2), teacher targets for B=2.
Usage: python -m benchmarks.bench_ra [--device cpu|cuda] [--repeats N]
"""

import argparse

import torch

from benchmarks.common import emit, street_labels, time_call
from srha_hf import regional_alignment_loss
from tests.reference_loops import ra_loop  # the tests' oracle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(4, 256, 192, 192, generator=gen).to(device)
    t = torch.randn(2, 256, 192, 192, generator=gen).to(device)
    labels = street_labels(2, 768, gen).to(device)
    doubled = torch.cat([labels, labels])
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.no_grad():
        # one label map per student row (the general call) and one per original image, shared by both
        # halves (what compute_srha_loss passes: the teacher's region sums are computed once)
        per_row = time_call(lambda: regional_alignment_loss(s, t, doubled), args.repeats, sync=sync)
        shared = time_call(lambda: regional_alignment_loss(s, t, labels), args.repeats, sync=sync)
        loop = time_call(lambda: ra_loop(s, t, doubled), max(2, args.repeats // 2), sync=sync)
        a = regional_alignment_loss(s, t, labels).item()
        b = ra_loop(s, t, doubled).item()
    emit(
        "ra",
        {
            "student_shape": [4, 256, 192, 192],
            "device": str(device),
            "vectorized_per_row_labels_ms": round(per_row * 1e3, 2),
            "vectorized_shared_labels_ms": round(shared * 1e3, 2),
            "loop_ms": round(loop * 1e3, 2),
            "speedup_per_row_labels": round(loop / per_row, 1),
            "speedup_shared_labels": round(loop / shared, 1),
            "relative_diff": abs(a - b) / abs(b),
        },
    )


if __name__ == "__main__":
    main()
