"""The summary a finished run leaves: ``all_results.json`` (JSON-safe results, the mean over the
target domains) and the results table printed at the end of training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict

from ..atomic import write_json_atomic


def plain_results(results: Dict[str, dict]) -> Dict[str, dict]:
    """Results without the bulky confusion matrices, NaN as null (valid JSON)."""

    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return {name: clean({k: v for k, v in res.items() if k != "confusion_matrix"}) for name, res in results.items()}


def target_mean(results: Dict[str, dict], source: str) -> float:
    """Mean mIoU (in %) over the target domains of ``results`` (the source's own val split excluded)."""
    targets = [r["mean_iou"] for name, r in results.items() if name != source]
    return float(sum(targets) / len(targets) * 100) if targets else float("nan")


def training_time_fields(this_process_s: float, steps_run: int, before_s: float, from_step: int) -> Dict[str, object]:
    """The timing fields of ``all_results.json``. ``training_time_s`` is this process's time plus
    ``before_s``, the earlier processes' time recorded in the checkpoint this run resumed from (0 for a
    fresh run); it counts from step ``training_time_from_step`` (``from_step``): 0, unless the run was
    resumed from a checkpoint written before the time was recorded. ``train_it_per_s`` is this process's
    speed (``steps_this_process`` in ``training_time_this_process_s``)."""
    return {
        "training_time_s": round(this_process_s + before_s, 1),
        "training_time_from_step": from_step,
        "training_time_this_process_s": round(this_process_s, 1),
        "steps_this_process": steps_run,
        "train_it_per_s": round(steps_run / max(this_process_s, 1e-9), 4),
    }


def write_all_results(path: Path, results: Dict[str, dict], *, source: str, step: int, timing: Dict[str, object]) -> None:
    """``all_results.json``: the step, the training time and speed (:func:`training_time_fields`), every
    result and the target mean."""
    mean = target_mean(results, source)
    write_json_atomic(
        path,
        {
            "step": step,
            **timing,
            "results": plain_results(results),
            "mean_target_miou": None if math.isnan(mean) else round(mean, 2),
        },
    )


def print_results_table(results: Dict[str, dict], source: str) -> None:
    """A Markdown table of mIoU per domain (the source's val split marked) and the target mean."""
    print("\n| domain | images | mIoU |\n|---|---|---|")
    for name, res in results.items():
        label = f"{name} (source val)" if name == source else name
        print(f"| {label} | {res.get('num_images', '?')} | {res['mean_iou'] * 100:.2f} |")
    if any(name != source for name in results):
        print(f"| **mean over targets** | | **{target_mean(results, source):.2f}** |")
    print(flush=True)
