"""Mean IoU as an `evaluate` metric that keeps a confusion matrix instead of every segmentation map.

Same inputs, arguments and outputs as evaluate's `mean_iou` (`num_labels`, `ignore_index`,
`nan_to_num`, `label_map`, `reduce_labels` -> `mean_iou`, `mean_accuracy`, `overall_accuracy`,
`per_category_iou`, `per_category_accuracy`) and numerically identical results, but `add_batch`
reduces every (prediction, reference) pair at once to a table of joint counts
`counts[reference value, prediction value]` (one vectorized bincount), so memory does not grow with
the number of images and nothing is written to an Arrow cache.

Why a table of *raw* values: `num_labels`, `ignore_index`, `label_map` and `reduce_labels` are only
given to `compute()`, and each of them acts on one pixel's reference (or prediction) value alone. The
joint counts of raw values are therefore a sufficient statistic for every setting, and `compute()`
applies them to the (small) table instead of to every pixel.

Semantics (evaluate's, which equal docs/method.md §8.2 when references hold only `0..num_labels-1` and
`ignore_index` and predictions lie in `0..num_labels-1`):

* `label_map` (applied first, entry by entry in dict order, so chained entries chain), then
  `reduce_labels` (0 -> 255, others minus 1, 255 stays 255), then pixels whose reference equals
  `ignore_index` are dropped;
* a reference outside `0..num_labels-1` adds nothing to its class, but the pixel's prediction still
  counts towards the predicted class's area (hence its union); a prediction outside
  `0..num_labels-1` counts only towards the reference class's area;
* IoU_c = |pred=c and ref=c| / |pred=c or ref=c|, accuracy_c = |pred=c and ref=c| / |ref=c|,
  overall accuracy = sum of intersections / sum of reference areas; a class absent from both
  references and predictions has NaN IoU and is left out of `mean_iou` (nanmean).

Works with numpy arrays, torch tensors (counted on their own device, e.g. the GPU), PIL images and
nested lists. Counts from several processes combine either with `evaluate`'s own `num_process` /
`process_id` (files in the cache directory, as evaluate does) or by summing `joint_counts()` /
`confusion_matrix()` tables yourself (e.g. an all-reduce) and feeding them to `add_counts`.

Load it with `evaluate.load("srha_hf/metrics/mean_iou.py")` or `srha_hf.metrics.load_metric()`.
This file depends only on numpy, evaluate and datasets (torch is used when installed).
"""

import contextlib
import functools
import os
import time
import warnings
from typing import Dict, Optional

import datasets
import evaluate
import numpy as np

try:  # torch makes the per-pixel count ~2x faster and runs it on the tensors' device
    import torch
except ImportError:  # pragma: no cover - torch is a dependency of srha_hf
    torch = None

_DESCRIPTION = """
Mean Intersection-over-Union for semantic segmentation: the same inputs, arguments and outputs as
evaluate's `mean_iou`, computed from a streaming table of joint (reference, prediction) counts, so
memory is independent of the number of images.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`List[ndarray]`): predicted segmentation maps, each (height, width) of integer
        class ids; a (batch, height, width) array or tensor is also accepted.
    references (`List[ndarray]`): ground-truth maps of the same shapes.
    num_labels (`int`): number of classes.
    ignore_index (`int`): reference value to ignore (e.g. 255).
    nan_to_num (`int`, *optional*): replace NaN values by this number.
    label_map (`dict`, *optional*): old reference id -> new reference id, applied first.
    reduce_labels (`bool`, *optional*, defaults to `False`): 0 becomes 255 and every other
        reference value is reduced by 1 (255 stays 255).

    `num_labels` and `ignore_index` may also be given when the metric is created
    (`load_metric(num_labels=19, ignore_index=255)`); arguments of `compute` take precedence.

Returns:
    `mean_iou` (`float`), `mean_accuracy` (`float`), `overall_accuracy` (`float`),
    `per_category_iou` (`ndarray` of shape (num_labels,)), `per_category_accuracy` (`ndarray`).
    With `return_confusion_matrix=True` also `confusion_matrix`: (num_labels, num_labels) int64,
    rows = references, columns = predictions, both restricted to 0..num_labels-1.

Examples:
    >>> import numpy as np, evaluate
    >>> metric = evaluate.load("srha_hf/metrics/mean_iou.py")
    >>> metric.add_batch(predictions=[np.array([[0, 1], [1, 1]])], references=[np.array([[0, 1], [255, 0]])])
    >>> results = metric.compute(num_labels=2, ignore_index=255)
    >>> float(results["mean_iou"])
    0.5
"""

_CITATION = """
@software{srha_hf,
  title = {srha_hf: SRHA for domain-generalized semantic segmentation in the Hugging Face ecosystem},
}
"""

# Dense tables up to this many cells (8 MiB of int64); larger raw value ranges use a sparse table.
DENSE_TABLE_LIMIT = 1 << 20
# Pixels per chunk for maps wider than 2 bytes per value (4 MiB of int64: stays in the L3 cache).
CHUNK = 1 << 19


# --------------------------------------------------------------------------------------------------
# Scores from areas / confusion matrices (shared with srha_hf.metrics and the evaluation routine)
# --------------------------------------------------------------------------------------------------


def scores_from_areas(intersect, area_label, area_pred, nan_to_num=None) -> Dict[str, object]:
    """evaluate's `mean_iou` outputs from per-class pixel counts (int arrays of length num_labels)."""
    intersect = np.asarray(intersect, dtype=np.int64)
    area_label = np.asarray(area_label, dtype=np.int64)
    area_pred = np.asarray(area_pred, dtype=np.int64)
    total_intersect = intersect.astype(np.float64)
    total_label = area_label.astype(np.float64)
    total_union = (area_pred + area_label - intersect).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN nanmean, 0/0: NaN as evaluate
        overall = total_intersect.sum() / total_label.sum()
        iou = total_intersect / total_union
        acc = total_intersect / total_label
        metrics = {
            "mean_iou": np.nanmean(iou),
            "mean_accuracy": np.nanmean(acc),
            "overall_accuracy": overall,
            "per_category_iou": iou,
            "per_category_accuracy": acc,
        }
    if nan_to_num is not None:
        metrics = {k: np.nan_to_num(v, nan=nan_to_num) for k, v in metrics.items()}
    return metrics


def scores_from_confusion_matrix(matrix, nan_to_num=None) -> Dict[str, object]:
    """evaluate's `mean_iou` outputs from a (num_labels, num_labels) confusion matrix with rows =
    references and columns = predictions (docs/method.md §8.2: IoU_c = hist[c,c] / (row_c + col_c - hist[c,c]))."""
    matrix = _as_square_matrix(matrix)
    return scores_from_areas(np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0), nan_to_num)


def _as_square_matrix(matrix) -> np.ndarray:
    if torch is not None and isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix must be square (num_labels, num_labels), got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.integer):
        if not np.all(np.isfinite(matrix)) or np.any(matrix != np.round(matrix)):
            raise ValueError("a confusion matrix must hold integer pixel counts")
    return matrix.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Input conversion
# --------------------------------------------------------------------------------------------------


def _as_map(x, what: str):
    """One segmentation map (or a stack of them) as an integer torch tensor (or numpy array without
    torch), without copying when possible. Raises for non-integer or negative inputs."""
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"{what} must hold integer class ids, got a {t.dtype} tensor (take the argmax of the logits first)")
        return t
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.dtype == object or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{what} must hold integer class ids, got dtype {a.dtype} (take the argmax of the logits first)")
    if a.dtype in (np.uint16, np.uint32):
        a = a.astype(np.int64 if a.dtype == np.uint32 else np.int32)
    elif a.dtype == np.uint64:
        if a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{what} holds values above 2**63-1")
        a = a.astype(np.int64)
    if torch is None:
        return np.ascontiguousarray(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays: never written to
        return torch.from_numpy(np.ascontiguousarray(a))


def _split_maps(x, what: str) -> list:
    """A batch: a list/tuple of maps, or one array/tensor of shape (batch, H, W)."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if torch is not None and isinstance(x, torch.Tensor):
        if x.dim() != 3:
            raise ValueError(f"{what} as one tensor must have shape (batch, height, width), got {tuple(x.shape)}")
        return list(x.unbind(0))
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"{what} as one array must have shape (batch, height, width), got {a.shape}")
    return list(a)


def _itemsize(t) -> int:
    return t.element_size() if torch is not None and isinstance(t, torch.Tensor) else t.itemsize


def _is_cpu(t) -> bool:
    return not (torch is not None and isinstance(t, torch.Tensor) and t.device.type != "cpu")


def _numel(t) -> int:
    return int(t.numel()) if torch is not None and isinstance(t, torch.Tensor) else int(t.size)


_UNSIGNED = {np.dtype(np.int8): np.uint8, np.dtype(np.int16): np.uint16, np.dtype(np.int32): np.uint32, np.dtype(np.int64): np.uint64}


def _min_max(t):
    """(min, max) of a map. On the CPU one pass: the max of the unsigned view of a signed array is its
    true max unless some value is negative (then it exceeds the signed maximum)."""
    if torch is not None and isinstance(t, torch.Tensor):
        if t.device.type != "cpu" or not t.is_contiguous():
            if t.dtype == torch.uint8:
                return 0, int(t.max())
            lo, hi = torch.aminmax(t)
            return int(lo), int(hi)
        t = t.numpy()
    if t.dtype.kind == "u":
        return 0, int(t.max())
    unsigned = _UNSIGNED.get(t.dtype)
    if unsigned is None or not t.flags.c_contiguous:
        return int(t.min()), int(t.max())
    hi = int(t.view(unsigned).max())
    if hi <= np.iinfo(t.dtype).max:
        return 0, hi
    return int(t.min()), int(t.max())


# --------------------------------------------------------------------------------------------------
# The streaming table of joint counts
# --------------------------------------------------------------------------------------------------


class JointCounts:
    """counts[reference value, prediction value] over every pixel added: a dense int64 table for
    small value ranges (the usual case: references up to 255, predictions below num_labels) and a
    sparse dict for huge ones."""

    def __init__(self):
        self.table = np.zeros((0, 0), dtype=np.int64)
        self.sparse: Dict[tuple, int] = {}
        self.num_pixels = 0

    def _grow(self, rows: int, cols: int) -> None:
        r0, c0 = self.table.shape
        if rows <= r0 and cols <= c0:
            return
        table = np.zeros((max(rows, r0), max(cols, c0)), dtype=np.int64)
        table[:r0, :c0] = self.table
        self.table = table

    def add_pair(self, reference, prediction, index: int = 0) -> None:
        self.add_pairs([(reference, prediction)], index)

    def add_pairs(self, pairs, start_index: int = 0) -> None:
        """Count a list of (reference, prediction) maps. Counted into a local table first, so a bad
        pair (raising an error) leaves this table unchanged."""
        local = JointCounts()
        for offset, (reference, prediction) in enumerate(pairs):
            index = start_index + offset
            ref = _as_map(reference, f"references[{index}]")
            pred = _as_map(prediction, f"predictions[{index}]")
            if tuple(ref.shape) != tuple(pred.shape):
                raise ValueError(
                    f"predictions[{index}] has shape {tuple(pred.shape)} but references[{index}] has shape {tuple(ref.shape)}"
                )
            if torch is not None and isinstance(ref, torch.Tensor) and isinstance(pred, torch.Tensor) and ref.device != pred.device:
                pred = pred.to(ref.device)
            local._count(ref.reshape(-1), pred.reshape(-1), index)
        self.merge(local)

    def _count(self, ref, pred, index: int) -> None:
        """Count one flat map pair. Wide CPU maps (e.g. int64 argmax outputs) go in chunks that stay
        in cache between the range check, the narrowing and the bincount."""
        with counting_threads(ref):
            self._count_chunks(ref, pred, index)

    def _count_chunks(self, ref, pred, index: int) -> None:
        size = _numel(ref)
        wide = max(_itemsize(ref), _itemsize(pred)) > 2 and _is_cpu(ref)
        step = CHUNK if wide else max(size, 1)
        for start in range(0, size, step):
            r, p = ref[start : start + step], pred[start : start + step]
            rmin, rmax = _min_max(r)
            pmin, pmax = _min_max(p)
            if rmin < 0 or pmin < 0:
                which, low = ("references", rmin) if rmin < 0 else ("predictions", pmin)
                raise ValueError(
                    f"{which}[{index}] holds negative values (min {low}); class maps must be non-negative integers "
                    "(evaluate's mean_iou stores them as uint16)"
                )
            rows, cols = max(self.table.shape[0], rmax + 1), max(self.table.shape[1], pmax + 1)
            if rows * cols > DENSE_TABLE_LIMIT:
                self._add_sparse(r, p, pmax + 1)
                continue
            self._grow(rows, cols)
            rows, cols = self.table.shape
            self.table += dense_counts(r, p, rows, cols)
        self.num_pixels += size

    def _add_sparse(self, ref, pred, width: int) -> None:
        if torch is not None and isinstance(ref, torch.Tensor):
            code = ref.reshape(-1).to(torch.int64) * width + pred.reshape(-1).to(torch.int64)
            keys, counts = torch.unique(code, return_counts=True)
            keys, counts = keys.cpu().numpy(), counts.cpu().numpy()
        else:
            code = ref.reshape(-1).astype(np.int64) * width + pred.reshape(-1).astype(np.int64)
            keys, counts = np.unique(code, return_counts=True)
        for r, p, c in zip((keys // width).tolist(), (keys % width).tolist(), counts.tolist()):
            self.sparse[(r, p)] = self.sparse.get((r, p), 0) + c

    def add_table(self, table, count_pixels: bool = True) -> None:
        """Add a table of joint counts (rows = reference values from 0, columns = prediction values)."""
        if torch is not None and isinstance(table, torch.Tensor):
            table = table.detach().cpu().numpy()
        table = np.asarray(table)
        if table.ndim != 2:
            raise ValueError(f"a count table must be 2-D (reference values x prediction values), got shape {table.shape}")
        if table.size and (not np.issubdtype(table.dtype, np.integer) or table.min() < 0):
            raise ValueError("a count table must hold non-negative integer pixel counts")
        rows, cols = table.shape
        if max(rows, self.table.shape[0]) * max(cols, self.table.shape[1]) <= DENSE_TABLE_LIMIT:
            self._grow(rows, cols)
            self.table[:rows, :cols] += table.astype(np.int64)
        else:
            r, p = np.nonzero(table)
            for ri, pi, c in zip(r.tolist(), p.tolist(), table[r, p].tolist()):
                self.sparse[(ri, pi)] = self.sparse.get((ri, pi), 0) + int(c)
        if count_pixels:
            self.num_pixels += int(table.sum())

    def merge(self, other: "JointCounts") -> None:
        self.add_table(other.table, count_pixels=False)
        for key, c in other.sparse.items():
            self.sparse[key] = self.sparse.get(key, 0) + c
        self.num_pixels += other.num_pixels

    def entries(self):
        """Non-zero cells as int64 arrays (reference values, prediction values, counts)."""
        r, p = np.nonzero(self.table)
        c = self.table[r, p]
        if self.sparse:
            keys = np.array(list(self.sparse.keys()), dtype=np.int64).reshape(-1, 2)
            vals = np.array(list(self.sparse.values()), dtype=np.int64)
            r, p, c = np.concatenate([r, keys[:, 0]]), np.concatenate([p, keys[:, 1]]), np.concatenate([c, vals])
        return r.astype(np.int64), p.astype(np.int64), c.astype(np.int64)

    def state(self) -> dict:
        r, p, c = self.entries()
        return {"references": r, "predictions": p, "counts": c, "num_pixels": np.int64(self.num_pixels)}

    @classmethod
    def from_state(cls, state) -> "JointCounts":
        out = cls()
        r, p, c = (np.asarray(state[k], dtype=np.int64) for k in ("references", "predictions", "counts"))
        if r.size:
            rows, cols = int(r.max()) + 1, int(p.max()) + 1
            if rows * cols <= DENSE_TABLE_LIMIT:
                out.table = np.zeros((rows, cols), dtype=np.int64)
                np.add.at(out.table, (r, p), c)
            else:
                for key in zip(r.tolist(), p.tolist(), c.tolist()):
                    out.sparse[key[:2]] = out.sparse.get(key[:2], 0) + key[2]
        out.num_pixels = int(state["num_pixels"])
        return out


LANES = 4


@contextlib.contextmanager
def counting_threads(tensor):
    """Count a CPU tensor with one intra-op thread, restoring torch's thread count afterwards.

    The counting kernels are memory-bound and short. With torch's default two threads on a 2-core machine,
    a parallel region waits for a thread that another process (a DataLoader worker during evaluation)
    has descheduled: 10 Cityscapes-size maps then took 0.14-0.30 s against 0.045-0.07 s with one thread,
    which costs only a little when the machine is idle (benchmarks/bench_metric.py). GPU tensors and
    numpy arrays are left alone (numpy's bincount is single-threaded)."""
    if torch is None or not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=4)
def _lane_offsets(length: int, cells: int):
    """int16 (length,) = (i % LANES) * cells, cached for the last few shapes (read only)."""
    return (torch.arange(length, dtype=torch.int32) % LANES * cells).to(torch.int16)


def dense_counts(ref, pred, rows: int, cols: int, keep_device: bool = False):
    """(rows, cols) int64 joint counts of one map pair, `ref` in 0..rows-1 and `pred` in 0..cols-1: one
    bincount of `ref * cols + pred`. The one pixel-counting kernel of the package (the metric here and
    `srha_hf.metrics.confusion_matrix`). Torch inputs are counted on their device; the counts come back
    as a numpy array, or as a tensor on that device with `keep_device=True`."""
    cells = rows * cols
    if torch is not None and isinstance(ref, torch.Tensor):
        with counting_threads(ref):
            return _dense_counts_torch(ref, pred, rows, cols, keep_device)
    code = ref.reshape(-1).astype(np.int64)
    code *= cols
    code += pred.reshape(-1)
    return np.bincount(code, minlength=cells).reshape(rows, cols)


def _dense_counts_torch(ref, pred, rows: int, cols: int, keep_device: bool):
    cells = rows * cols
    # int16 when the code fits: the bincount then reads half the memory
    dtype = torch.int16 if cells <= 32767 else torch.int32
    code = pred.reshape(-1).to(dtype, copy=True)
    narrow = (torch.uint8, torch.int8, torch.int16) if dtype == torch.int16 else (torch.uint8, torch.int8, torch.int16, torch.int32)
    if ref.dtype not in narrow:
        ref = ref.to(dtype)  # values < rows, so the cast is exact
    code.add_(ref.reshape(-1), alpha=cols)
    if code.device.type == "cpu" and LANES * cells <= 32767 and dtype == torch.int16:
        # Neighbouring pixels usually share a (reference, prediction) pair, and back-to-back
        # increments of one counter wait on each other: spread them over LANES sub-tables.
        code.add_(_lane_offsets(code.numel(), cells))
        counts = torch.bincount(code, minlength=LANES * cells).view(LANES, cells).sum(0)
    else:
        counts = torch.bincount(code, minlength=cells)
    return counts.reshape(rows, cols) if keep_device else counts.cpu().numpy().reshape(rows, cols)


def areas_from_counts(
    counts: JointCounts,
    num_labels: int,
    ignore_index: Optional[int],
    label_map: Optional[dict] = None,
    reduce_labels: bool = False,
):
    """(intersect, area_label, area_pred, confusion (num_labels x num_labels)) under evaluate's rules."""
    n = int(num_labels)
    if n < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    ref, pred, c = counts.entries()
    ref = ref.copy()
    if label_map:
        for old_id, new_id in label_map.items():
            ref[ref == int(old_id)] = int(new_id)
    if reduce_labels:
        ref[ref == 0] = 255
        ref = ref - 1
        ref[ref == 254] = 255
    if ignore_index is not None:
        keep = ref != int(ignore_index)
        ref, pred, c = ref[keep], pred[keep], c[keep]
    ref_ok = (ref >= 0) & (ref < n)
    pred_ok = (pred >= 0) & (pred < n)
    area_label = np.zeros(n, dtype=np.int64)
    area_pred = np.zeros(n, dtype=np.int64)
    intersect = np.zeros(n, dtype=np.int64)
    np.add.at(area_label, ref[ref_ok], c[ref_ok])
    np.add.at(area_pred, pred[pred_ok], c[pred_ok])
    both = ref_ok & pred_ok
    hit = both & (ref == pred)
    np.add.at(intersect, ref[hit], c[hit])
    confusion = None
    if n * n <= DENSE_TABLE_LIMIT * 4:
        confusion = np.zeros((n, n), dtype=np.int64)
        np.add.at(confusion, (ref[both], pred[both]), c[both])
    return intersect, area_label, area_pred, confusion


# --------------------------------------------------------------------------------------------------
# The evaluate module
# --------------------------------------------------------------------------------------------------


class MeanIoU(evaluate.Metric):
    """evaluate's `mean_iou`, streaming: see the module docstring."""

    def __init__(self, *args, num_labels: Optional[int] = None, ignore_index: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_num_labels = num_labels
        self.default_ignore_index = ignore_index
        self._counts = JointCounts()
        self._num_examples = 0

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                }
            ),
            reference_urls=["https://github.com/huggingface/evaluate/tree/main/metrics/mean_iou"],
        )

    def __len__(self):
        return self._num_examples

    def __repr__(self):
        return f'EvaluationModule(name: "{self.name}", streaming confusion table, stored examples: {len(self)})'

    # ---- accumulation ----------------------------------------------------------------------------

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predicted and reference maps: only their joint counts are kept."""
        if kwargs:
            raise ValueError(f"Bad inputs for evaluation module: {list(kwargs)}. All required inputs are ['predictions', 'references']")
        if predictions is None or references is None:
            raise ValueError("add_batch needs both predictions and references")
        preds = _split_maps(predictions, "predictions")
        refs = _split_maps(references, "references")
        if len(preds) != len(refs):
            raise ValueError(f"Mismatch in the number of predictions ({len(preds)}) and references ({len(refs)})")
        self._counts.add_pairs(list(zip(refs, preds)), self._num_examples)
        self._num_examples += len(preds)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one predicted map and its reference map."""
        if kwargs:
            raise ValueError(f"Bad inputs for evaluation module: {list(kwargs)}. All required inputs are ['predictions', 'references']")
        if prediction is None or reference is None:
            raise ValueError("add needs both prediction and reference")
        self._counts.add_pair(reference, prediction, self._num_examples)
        self._num_examples += 1

    def add_counts(self, table, num_examples: int = 0):
        """Add a table of joint counts `table[reference value, prediction value]` (e.g. a confusion
        matrix summed over processes, or another instance's `joint_counts()`)."""
        self._counts.add_table(table)
        self._num_examples += int(num_examples)

    def joint_counts(self) -> np.ndarray:
        """The dense table of joint counts accumulated so far (reference value x prediction value)."""
        if self._counts.sparse:
            raise ValueError("values too large for a dense table; use confusion_matrix(num_labels, ...) instead")
        return self._counts.table.copy()

    def confusion_matrix(self, num_labels=None, ignore_index=None, label_map=None, reduce_labels=False) -> np.ndarray:
        """(num_labels, num_labels) int64 confusion matrix so far: rows = references, columns =
        predictions, pixels whose reference or prediction is outside 0..num_labels-1 left out."""
        n, ignore = self._resolve(num_labels, ignore_index)
        return areas_from_counts(self._counts, n, ignore, label_map, reduce_labels)[3]

    def reset(self):
        """Forget everything added so far."""
        self._counts = JointCounts()
        self._num_examples = 0

    # ---- results ---------------------------------------------------------------------------------

    def _resolve(self, num_labels, ignore_index):
        n = self.default_num_labels if num_labels is None else num_labels
        if n is None:
            raise ValueError("num_labels is required (pass it to compute() or to load_metric())")
        ignore = self.default_ignore_index if ignore_index is None else ignore_index
        if isinstance(ignore, bool):
            raise TypeError(f"ignore_index must be an integer class id, got {ignore!r}")
        return int(n), (None if ignore is None else int(ignore))

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Compute mean IoU over everything added (plus `predictions`/`references` if given) and reset.

        With `num_process > 1` (evaluate's distributed mode) every process writes its counts to the
        cache directory; process 0 waits for all of them, returns the results and the others None."""
        allowed = {"num_labels", "ignore_index", "nan_to_num", "label_map", "reduce_labels", "return_confusion_matrix"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(f"unexpected arguments to compute(): {unknown}; expected some of {sorted(allowed)}")
        if predictions is not None or references is not None:
            self.add_batch(predictions=predictions, references=references)
        counts = self._counts
        if self.num_process > 1:
            counts = self._gather_processes(counts)
        self.reset()
        if counts is None:
            return None
        return self._scores(counts, **kwargs)

    def _scores(self, counts, num_labels=None, ignore_index=None, nan_to_num=None, label_map=None,
                reduce_labels=False, return_confusion_matrix=False):  # fmt: skip
        n, ignore = self._resolve(num_labels, ignore_index)
        intersect, area_label, area_pred, confusion = areas_from_counts(counts, n, ignore, label_map, reduce_labels)
        results = scores_from_areas(intersect, area_label, area_pred, nan_to_num)
        if return_confusion_matrix:
            results["confusion_matrix"] = confusion
        return results

    def _compute(self, predictions, references, num_labels, ignore_index, nan_to_num=None, label_map=None, reduce_labels=False):
        counts = JointCounts()
        counts.add_pairs(list(zip(_split_maps(references, "references"), _split_maps(predictions, "predictions"))))
        return self._scores(counts, num_labels, ignore_index, nan_to_num, label_map, reduce_labels)

    def _gather_processes(self, counts: JointCounts) -> Optional[JointCounts]:
        """evaluate-style gathering through files: `{experiment_id}-{num_process}-{process_id}.npz`."""
        stem = os.path.join(self.data_dir, f"{self.experiment_id}-{self.num_process}")
        mine = f"{stem}-{self.process_id}.srha_counts.npz"
        tmp = f"{mine}.tmp{os.getpid()}.npz"
        np.savez(tmp, **counts.state())
        os.replace(tmp, mine)
        if self.process_id != 0:
            return None
        total = JointCounts()
        deadline = time.monotonic() + float(self.timeout)
        for process_id in range(self.num_process):
            path = f"{stem}-{process_id}.srha_counts.npz"
            while not os.path.exists(path):
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"process {process_id} of {self.num_process} did not write its counts ({path}) within "
                        f"{self.timeout} s; every process must call compute() with the same experiment_id"
                    )
                time.sleep(0.05)
            with np.load(path) as state:
                total.merge(JointCounts.from_state(state))
        for process_id in range(self.num_process):
            os.remove(f"{stem}-{process_id}.srha_counts.npz")
        return total
