"""Shared helpers for the benchmark scripts: timing and realistic label maps. Each script prints JSON.

The scripts run from the repository root as modules (``python -m benchmarks.bench_srm``), so that they import
``benchmarks.common`` and the tests' oracles (``tests.reference_loops``, the plain per-region loops they time
the vectorized code against) as packages, with no change to ``sys.path``."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import date

import torch


def machine() -> dict:
    return {
        "date": date.today().isoformat(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # the CPU kernels torch picked (e.g. AVX2, AVX512): CPU results can differ in the last digits between them
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
    }


def time_call(fn, repeats: int = 5, warmup: int = 1, sync=None) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def street_labels(batch: int, size: int, generator: torch.Generator, num_classes: int = 19, block: int = 48):
    """Blocky label maps with ~15 classes per image and an ignore band, like a street scene's region
    count (what matters for the per-region loops)."""
    grid = size // block + 1
    coarse = torch.randint(0, num_classes, (batch, grid, grid), generator=generator)
    labels = coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :size, :size].clone()
    labels[:, : size // 16] = 255
    return labels


def emit(name: str, results: dict) -> None:
    print(json.dumps({"benchmark": name, **results, "machine": machine()}, indent=2))
