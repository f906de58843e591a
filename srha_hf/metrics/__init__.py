"""Segmentation metrics: the streaming `evaluate` mean-IoU module and the docs/method.md §8.2 confusion matrix.

* `load_metric(**kwargs)`: the `evaluate` module of `mean_iou.py` (same as
  `evaluate.load("srha_hf/metrics/mean_iou.py")`), inputs and outputs of evaluate's `mean_iou`.
* `confusion_matrix(predictions, references, num_labels, ignore_index)`: docs/method.md §8.2's `hist[gt, pred]`
  of one batch as int64 (torch tensors stay on their device), for summing across batches/processes.
* `scores_from_confusion_matrix(matrix)`: evaluate's `mean_iou` outputs from such a matrix.
* `frequency_weighted_iou(matrix)`: docs/method.md §8.2's fwIoU.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .mean_iou import JointCounts, MeanIoU, areas_from_counts, counting_threads, dense_counts, scores_from_areas, scores_from_confusion_matrix

METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mean_iou.py")

__all__ = [
    "METRIC_PATH",
    "JointCounts",
    "MeanIoU",
    "areas_from_counts",
    "confusion_matrix",
    "frequency_weighted_iou",
    "load_metric",
    "scores_from_areas",
    "scores_from_confusion_matrix",
]


def load_metric(num_labels: int | None = None, ignore_index: int | None = None, **kwargs) -> MeanIoU:
    """The streaming mean-IoU `evaluate.Metric` (see `srha_hf/metrics/mean_iou.py`).

    `num_labels` / `ignore_index` set defaults for `compute()`; other keyword arguments are those of
    `evaluate.load` (`num_process`, `process_id`, `experiment_id`, `cache_dir`, ...). Equivalent to
    `evaluate.load(srha_hf.metrics.METRIC_PATH, ...)` without copying the file into evaluate's
    module cache."""
    for key in ("path", "module_type", "download_config", "download_mode", "revision"):
        kwargs.pop(key, None)
    return MeanIoU(num_labels=num_labels, ignore_index=ignore_index, **kwargs)


def confusion_matrix(predictions, references, num_labels: int, ignore_index: int | None = 255, *, validate: bool = True):
    """docs/method.md §8.2 `hist[gt, pred]`: (num_labels, num_labels) int64 counts over every pixel whose
    reference lies in `0..num_labels-1` and is not `ignore_index`; predictions are never masked.

    `predictions` and `references` are integer arrays or tensors of the same shape (any number of
    leading batch dimensions). Torch tensors are counted on their device and a tensor is returned;
    numpy inputs give a numpy array. The counting is the metric's own kernel (`mean_iou.dense_counts`, one
    `bincount` of `num_labels * gt + pred`): references outside the valid range are first mapped to the
    extra row `num_labels`, which is dropped.
    `validate=True` checks that every prediction lies in `0..num_labels-1` (argmax outputs always do;
    pass False to skip the extra pass)."""
    n = int(num_labels)
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(predictions, torch.Tensor):
        with counting_threads(predictions):
            return _torch_confusion_matrix(predictions, references, n, ignore_index, validate)
    pred = np.asarray(predictions)
    gt = np.asarray(references)
    if pred.shape != gt.shape:
        raise ValueError(f"predictions have shape {pred.shape} but references have shape {gt.shape}")
    if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(gt.dtype, np.integer)):
        raise TypeError("predictions and references must be integer class maps (take the argmax of the logits first)")
    if validate and pred.size and (pred.min() < 0 or pred.max() >= n):
        raise ValueError(f"predictions must lie in 0..{n - 1}, found values in [{pred.min()}, {pred.max()}]")
    gt = gt.astype(np.int64)
    bad = (gt < 0) | (gt >= n)
    if ignore_index is not None:
        bad |= gt == ignore_index
    return dense_counts(np.where(bad, n, gt), pred, n + 1, n)[:n].astype(np.int64)


def _torch_confusion_matrix(predictions, references, n: int, ignore_index, validate: bool):
    """:func:`confusion_matrix` of torch tensors, counted on their device."""
    import torch

    pred = predictions.detach()
    gt = references.detach() if isinstance(references, torch.Tensor) else torch.as_tensor(np.asarray(references))
    gt = gt.to(pred.device)
    if pred.shape != gt.shape:
        raise ValueError(f"predictions have shape {tuple(pred.shape)} but references have shape {tuple(gt.shape)}")
    if pred.is_floating_point() or gt.is_floating_point():
        raise TypeError("predictions and references must be integer class maps (take the argmax of the logits first)")
    if validate and pred.numel():
        lo, hi = torch.aminmax(pred.reshape(-1).to(torch.int64) if pred.dtype == torch.uint8 else pred.reshape(-1))
        if int(lo) < 0 or int(hi) >= n:
            raise ValueError(f"predictions must lie in 0..{n - 1}, found values in [{int(lo)}, {int(hi)}]")
    if gt.dtype == torch.uint8 and n < 255 and (ignore_index is None or not 0 <= ignore_index < n):
        row = gt.clamp(max=n)  # 255 and any value >= n -> the dropped row n (still uint8)
    else:
        gt = gt.to(torch.int64)
        bad = (gt < 0) | (gt >= n)
        if ignore_index is not None:
            bad |= gt == ignore_index
        row = torch.where(bad, torch.full_like(gt, n), gt)
    return dense_counts(row, pred, n + 1, n, keep_device=True)[:n]


def frequency_weighted_iou(matrix) -> float:
    """docs/method.md §8.2: sum over classes with freq > 0 of freq_c * IoU_c, freq = row sum / total."""
    m = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = m.sum(axis=1)
        freq = rows / m.sum()
        iou = np.diag(m) / (rows + m.sum(axis=0) - np.diag(m))
        keep = freq > 0
        return float((freq[keep] * iou[keep]).sum())
