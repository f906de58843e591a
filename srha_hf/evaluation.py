"""Evaluation on the target domains (docs/method.md §6, §8): the routine shared by training and `scripts/evaluate.py`.

`evaluate_model(model, {"cityscapes": ds, ...})` runs inference under an evaluation protocol (whole-image
single-scale by default, the reference's; sliding window or multi-scale + flip: `srha_hf.protocols`,
docs/method.md §8.6) with each benchmark's evaluation resizing (full-resolution Cityscapes / BDD-100K / Synthia, GTAV resized to 1914x1052,
Mapillary height 1536 + centre crop/pad with the D3 switch), accumulates docs/method.md §8.2's 19x19 confusion
matrix on the model's device and derives mIoU etc. with evaluate's `mean_iou` rules.

Across processes (an `accelerate.Accelerator`, or any initialised `torch.distributed` group) every
process evaluates the disjoint shard `indices[rank::world]` and the int64 confusion matrices are
summed: no padding, no duplicated and no dropped image, so any split size gives the single-process
result. The reference's validation sampler dropped `len % world` images after a seed-0 permutation
(docs/method.md §9 T3); `drop_remainder=True` reproduces that.

`save_predictions=DIR` also writes every evaluated image's prediction (train IDs, or Cityscapes label IDs
with `prediction_format="cityscapes"` for the official evaluation; see `srha_hf.prediction_files`) under
`DIR/<dataset>/`, keeping the image's folders below the benchmark root.

What a person looks at (per-class charts, confusion matrices, overlays, the JSON report) is written by
`srha_hf.evaluation_report.write_evaluation_report`; `format_iou_table` and `write_evaluation_report` are
importable from there.
"""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .data.benchmarks import benchmark_info, example_conditions, get_spec
from .data.class_subsets import SYNTHIA_SUBSETS, subset_results
from .data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, to_tensors
from .metrics import confusion_matrix, frequency_weighted_iou, scores_from_confusion_matrix
from .prediction_files import check_prediction_format, write_prediction
from .protocols import WHOLE, EvalProtocol, protocol_logits

# accelerate's "fp8" is a training setting: evaluation autocasts to bf16 then
MIXED_PRECISION = {None: None, "no": None, "fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}

__all__ = [
    "benchmark_of",
    "evaluate_corruptions",
    "evaluate_model",
    "predict",
    "shard_indices",
]


# --------------------------------------------------------------------------------------------------
# Datasets, shards, batches
# --------------------------------------------------------------------------------------------------


def benchmark_of(key: str, dataset=None) -> str:
    """The benchmark kind of a `datasets` mapping key: "cityscapes" or "cityscapes:night" ->
    "cityscapes"; a key that names no benchmark falls back to the dataset's `load_benchmark` info."""
    try:
        return get_spec(key.split(":", 1)[0]).name
    except ValueError:
        if dataset is not None:
            try:
                return get_spec(benchmark_info(dataset)["benchmark"]).name
            except ValueError:
                pass
        raise ValueError(
            f"cannot tell the benchmark of dataset key {key!r}: use a benchmark name (gtav, cityscapes, bdd100k, "
            "mapillary, synthia, acdc), optionally as 'name:label', or a dataset made by srha_hf.load_benchmark"
        ) from None


def dataset_slug(name: str) -> str:
    """A dataset key as a file-name part: "cityscapes:night" -> "cityscapes_night"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def shard_indices(length: int, rank: int, world: int, *, drop_remainder: bool = False) -> list:
    """The indices one process evaluates. Default: `range(length)[rank::world]` (disjoint shards
    covering everything). `drop_remainder=True` (docs/method.md §9 T3, the reference's validation sampler):
    a seed-0 permutation truncated to a multiple of `world`, then `[rank::world]`."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    if not drop_remainder:
        return list(range(rank, length, world))
    order = torch.randperm(length, generator=torch.Generator().manual_seed(0)).tolist()
    order = order[: length - length % world]
    return order[rank::world]


class EvalDataset(torch.utils.data.Dataset):
    """`load_benchmark` examples -> evaluation resizing -> (normalised pixels, uint8 label, index, image path)."""

    def __init__(self, dataset, indices: Sequence[int], transform, name: str, mean=IMAGENET_MEAN, std=IMAGENET_STD, corruption=None):
        self.dataset = dataset
        self.indices = list(indices)
        self.transform = transform
        self.name = name
        self.mean, self.std = tuple(mean), tuple(std)
        self.corruption = corruption  # a srha_hf.corruptions.Corruption: applied after the evaluation resizing

    def __len__(self):
        return len(self.indices)

    def load(self, i: int, with_path: bool = False):
        """(PIL image, uint8 label array[, image path]) after the evaluation resizing."""
        index = self.indices[i]
        example = self.dataset[int(index)]
        if example.get("label") is None:
            raise ValueError(f"{self.name}: example {index} ({example.get('image_path')}) has no label; evaluate a labelled split")
        image, label = self.transform(example["image"], example["label"])
        label = np.array(label, dtype=np.uint8)  # a writable copy
        return (image, label, example.get("image_path")) if with_path else (image, label)

    def __getitem__(self, i: int):
        image, label, path = self.load(i, with_path=True)
        array = np.asarray(image)
        if self.corruption is not None:  # in the DataLoader's worker when there are workers; seeded per image
            array = self.corruption(array, path, self.indices[i])
        pixels = to_tensors(array, mean=self.mean, std=self.std)
        return pixels, torch.from_numpy(np.ascontiguousarray(label)), self.indices[i], path


def _collate(items):
    return items


def _same_size_batches(items):
    """Stack consecutive items of equal size (a DataLoader batch may mix sizes, e.g. raw Mapillary)."""
    group = []
    for item in items:
        if group and item[0].shape != group[0][0].shape:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


# --------------------------------------------------------------------------------------------------
# Model helpers
# --------------------------------------------------------------------------------------------------


def unwrap_model(model, accelerator=None):
    """The bare model inside an Accelerate / DDP / DataParallel wrapper."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def model_device_dtype(model):
    """(device, floating dtype) of the model's first parameter; (cpu, float32) without parameters."""
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.float32


def _logits(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, Mapping):
        return output["logits"]
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def _autocast(device: torch.device, mixed_precision):
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of 'no', 'fp16', 'bf16' (or None), got {mixed_precision!r}")
    dtype = MIXED_PRECISION[mixed_precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict(model, pixels: torch.Tensor, size=None, mixed_precision=None, protocol: EvalProtocol = WHOLE) -> torch.Tensor:
    """argmax class map (B, H, W) of an eval-mode model on normalised pixels (already on its device)
    under `protocol` (default: one whole-image forward); logits of another size are resized bilinearly
    to `size` (default: the input size)."""
    device, dtype = model_device_dtype(model)
    size = tuple(size or pixels.shape[-2:])

    def forward(x):
        return _logits(model(pixel_values=x.to(device=device, dtype=dtype, non_blocking=True)))

    with _autocast(device, mixed_precision):
        logits = protocol_logits(forward, pixels, size, protocol)
    return logits.argmax(dim=1)


def _distributed(accelerator):
    """(rank, world, reduce) for the accelerator or initialised process group, else (0, 1, None)."""
    dist = torch.distributed
    if accelerator is not None:
        rank, world = accelerator.process_index, accelerator.num_processes
    elif dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        return 0, 1, None
    if world == 1:
        return rank, world, None
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"{world} processes but no initialised torch.distributed process group to sum confusion matrices")

    def reduce(tensor: torch.Tensor) -> torch.Tensor:
        backend = str(dist.get_backend()).lower()
        device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        buffer = tensor.to(device=device, dtype=torch.int64).contiguous()
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        return buffer.cpu()

    return rank, world, reduce


def _class_names(model, num_labels: int) -> list:
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    if len(id2label) == num_labels:
        names = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(num_labels)]
        if not all(re.fullmatch(r"LABEL_\d+", n) for n in names):
            return names
    if num_labels == NUM_CLASSES:
        return list(CLASS_NAMES)
    return [str(i) for i in range(num_labels)]


def eval_transform(kind: str, mapillary_crop: str, eval_sizes: Optional[Mapping]):
    """The evaluation resizing of benchmark `kind` (`build_eval_transform` with the D3 switch and sizes)."""
    return build_eval_transform(kind, mapillary_crop=mapillary_crop, **dict(eval_sizes or {}))


# --------------------------------------------------------------------------------------------------
# The routine
# --------------------------------------------------------------------------------------------------


def _results_from_matrix(matrix: np.ndarray, names: list, num_images: int, subsets=()) -> dict:
    scores = scores_from_confusion_matrix(matrix)
    extra = {"class_subsets": subset_results(matrix, names, subsets)} if subsets else {}
    return {
        **extra,
        "mean_iou": float(scores["mean_iou"]),
        "mean_accuracy": float(scores["mean_accuracy"]),
        "overall_accuracy": float(scores["overall_accuracy"]),
        "frequency_weighted_iou": frequency_weighted_iou(matrix),
        "per_category_iou": {n: float(v) for n, v in zip(names, scores["per_category_iou"])},
        "per_category_accuracy": {n: float(v) for n, v in zip(names, scores["per_category_accuracy"])},
        "confusion_matrix": matrix.astype(np.int64).tolist(),
        "num_images": int(num_images),
    }


class PredictionSaver:
    """Writes each evaluated image's prediction under ``folder/<dataset key>/``, keeping the image's path
    below the benchmark root (e.g. ``leftImg8bit/val/<city>/<city>_<seq>_<frame>_labelIds.png``), in a
    small thread pool so the forwards do not wait for PNG encoding. Predictions are stored at the size the
    evaluation compares: the original size for Cityscapes, BDD-100K and Synthia, the evaluation resize /
    crop for GTAV and Mapillary."""

    def __init__(self, folder, key: str, dataset, fmt: str, workers: int = 2):
        self.folder = Path(folder) / dataset_slug(key)
        try:
            self.root: Optional[Path] = Path(benchmark_info(dataset)["root"]).resolve()
        except ValueError:
            self.root = None
        self.fmt = fmt
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="srha-save")
        self.futures: List = []

    def base(self, image_path: str) -> Path:
        """The output path (without suffix) for an image file."""
        path = Path(image_path).resolve()
        try:
            relative = path.relative_to(self.root) if self.root is not None else Path(path.name)
        except ValueError:
            relative = Path(path.name)
        return self.folder / relative.parent / relative.stem

    def save(self, image_paths: Sequence[str], predictions: torch.Tensor) -> None:
        masks = predictions.to("cpu", torch.uint8).numpy()
        for path, mask in zip(image_paths, masks):
            self.futures.append(self.pool.submit(write_prediction, self.base(path), mask, self.fmt))

    def close(self) -> List[str]:
        """Wait for every write (re-raising the first failure); returns the written paths."""
        try:
            return [future.result() for future in self.futures]
        finally:
            self.pool.shutdown(wait=True)


def _confusion_over(net, loader, *, device, num_labels, ignore_index, mixed_precision, protocol, bar, saver=None, groups=None):
    """The ``(G, num_labels, num_labels)`` confusion matrices and ``(G,)`` image counts over ``loader``'s
    items, one per group (``groups[dataset index]`` in ``0..G-1``, e.g. ACDC's conditions; G = 1 without)."""
    n_groups = 1 if groups is None else int(max(groups)) + 1
    hist = torch.zeros((n_groups, num_labels, num_labels), dtype=torch.int64, device=device)
    count = torch.zeros(n_groups, dtype=torch.int64)
    with torch.inference_mode():
        for items in loader:
            for group in _same_size_batches(items):
                pixels = torch.stack([g[0] for g in group]).to(device, non_blocking=True)
                labels = torch.stack([g[1] for g in group]).to(device, non_blocking=True)
                preds = predict(net, pixels, labels.shape[-2:], mixed_precision, protocol)
                ids = [0 if groups is None else int(groups[g[2]]) for g in group]
                if len(set(ids)) == 1:
                    hist[ids[0]] += confusion_matrix(preds, labels, num_labels, ignore_index, validate=False)
                else:
                    for k, gid in enumerate(ids):
                        hist[gid] += confusion_matrix(preds[k], labels[k], num_labels, ignore_index, validate=False)
                for gid in ids:
                    count[gid] += 1
                if saver is not None:
                    saver.save([g[3] for g in group], preds)
                bar.update(len(group))
    return hist, count


def _dataset_items(datasets) -> list:
    if isinstance(datasets, Mapping):
        items = list(datasets.items())
    elif hasattr(datasets, "info") and hasattr(datasets, "__getitem__"):
        items = [(benchmark_info(datasets)["benchmark"], datasets)]
    else:
        raise TypeError("datasets must map names to datasets.Dataset objects made by srha_hf.load_benchmark")
    if not items:
        raise ValueError("no dataset to evaluate")
    return items


def evaluate_model(
    model,
    datasets,
    *,
    accelerator=None,
    batch_size: int = 1,
    mixed_precision: Optional[str] = None,
    num_workers: int = 0,
    mapillary_crop: str = "faithful",
    eval_sizes: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    max_images: Optional[int] = None,
    drop_remainder: bool = False,
    num_labels: Optional[int] = None,
    ignore_index: int = IGNORE_INDEX,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    save_predictions=None,
    prediction_format: str = "trainid",
    protocol: Optional[EvalProtocol] = None,
    class_subsets: Sequence = (),
    corruption=None,
) -> Dict[str, dict]:
    """Evaluate `model` on each target dataset; returns `{name: result}` in the order given.

    `model`: eval-mode output with `.logits` (or the logits tensor) of shape (B, num_labels, h, w), resized
    bilinearly to the label size where needed; may be wrapped in DDP / prepared by Accelerate; put in eval
    mode, and every submodule's mode restored afterwards. `datasets`: `{name: load_benchmark dataset}`, name
    a benchmark (gtav, cityscapes, bdd100k, mapillary, synthia, acdc) or "benchmark:label"; one dataset alone is
    accepted too. `accelerator`: its device, process index/count and (when `mixed_precision` is None) its
    precision are used; without one, an initialised torch.distributed group if there is one.
    `batch_size`, `num_workers`: per process. `mixed_precision`: "no" / "fp16" / "bf16" autocast.
    `mapillary_crop`: docs/method.md §9 D3, "faithful" or "corrected". `eval_sizes`: `build_eval_transform`
    keywords (`gtav_size`, `mapillary_size`), e.g. `synthetic_eval_sizes(size)`. `max_images`: the first N
    images of each dataset (before sharding). `drop_remainder`: §9 T3. `num_labels`: default
    `model.config.num_labels`, else 19. `save_predictions`: a folder where every process also writes its
    images' predictions (:class:`PredictionSaver`) in `prediction_format` ("trainid" or "cityscapes").
    `protocol`: an :class:`~srha_hf.protocols.EvalProtocol` (`make_protocol`), default whole-image single
    scale. `class_subsets`: names (`synthia16`, `synthia13`) or class-name lists whose mIoU every dataset
    also reports, from the same confusion matrix; a Synthia dataset always reports both Synthia subsets.
    `corruption`: a :class:`~srha_hf.corruptions.Corruption` applied to every image after the evaluation
    resizing (in the DataLoader workers, seeded per image; docs/method.md §8.8); :func:`evaluate_corruptions`
    runs a whole suite.

    Per dataset: `mean_iou`, `mean_accuracy`, `overall_accuracy`, `frequency_weighted_iou`,
    `per_category_iou` / `per_category_accuracy` (class name -> value, NaN for a class absent from both
    ground truth and predictions), `confusion_matrix` (rows = ground truth), `num_images` (all processes),
    `benchmark`, `class_names`, `per_condition` (ACDC: the same fields per condition), `protocol` (its
    `describe()`), `label_set`, `class_subsets` (name -> `mean_iou`, `classes`) where asked, `seconds`, and
    with `save_predictions` the `prediction_files` this process wrote. Every process returns the same results.
    """
    items, kinds, transforms = _checked_datasets(datasets, batch_size, max_images, mapillary_crop, eval_sizes)
    net = unwrap_model(model, accelerator)
    num_labels = int(num_labels or getattr(getattr(net, "config", None), "num_labels", None) or NUM_CLASSES)
    if save_predictions is not None:
        check_prediction_format(prediction_format, num_labels)
    names, mixed_precision = _class_names(net, num_labels), _precision_of(mixed_precision, accelerator)
    (rank, world, reduce), (device, _), protocol = _distributed(accelerator), model_device_dtype(net), protocol or WHOLE
    counting = dict(device=device, num_labels=num_labels, ignore_index=ignore_index, mixed_precision=mixed_precision, protocol=protocol)
    loading = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    modes = {module: module.training for module in net.modules()}
    net.eval()
    results: Dict[str, dict] = {}
    try:
        for (key, dataset), kind, transform in zip(items, kinds, transforms):
            start = time.perf_counter()
            length = len(dataset) if max_images is None else min(len(dataset), max_images)
            shard = shard_indices(length, rank, world, drop_remainder=drop_remainder)
            loader = torch.utils.data.DataLoader(EvalDataset(dataset, shard, transform, key, image_mean, image_std, corruption),
                                                 shuffle=False, collate_fn=_collate, **loading)  # fmt: skip
            saver = None if save_predictions is None else PredictionSaver(save_predictions, key, dataset, prediction_format)
            with _progress(len(shard), _description(key, corruption, world), progress and rank == 0) as bar:
                hist, count, group_names, written = _count_dataset(net, loader, dataset, saver, bar, counting)
            subsets = _subsets_for(kind, class_subsets, num_labels)
            results[key] = _gathered_result(hist, count, reduce, names, kind, start, written, subsets, group_names)
            results[key].update(protocol=protocol.describe(), label_set=_label_set(names), **_corruption_record(corruption))
    finally:
        for module, training in modes.items():
            module.training = training
    return results


def evaluate_corruptions(
    model,
    datasets,
    corruptions="all",
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    seed: int = 0,
    done: Optional[Mapping] = None,
    on_cell=None,
    **kwargs,
) -> Dict[str, dict]:
    """Evaluate `model` on each dataset clean and under every corruption × severity (docs/method.md §8.8).

    `corruptions`: ``"all"`` (the 19 of imagecorruptions), ``"cityscapes-c"`` (the published 16), a family or
    names (:func:`srha_hf.corruptions.resolve_corruptions`); `severities`: integers 1-5; `seed`: the base of
    the per-image seeds (:func:`srha_hf.corruptions.corruption_seed`). Every other keyword goes to
    :func:`evaluate_model`, which runs once clean and once per cell, each image corrupted after the
    evaluation resizing in the DataLoader workers; across processes each cell is the single-process result.
    `done`: ``{"clean": {key: result}, "cells": {name: {severity: {key: result}}}}`` already evaluated (a
    resumed run), not evaluated again; `on_cell(name, severity, {key: result})`: called after each cell (and
    with ``name=None`` after the clean pass), e.g. to save progress. Needs the ``robustness`` extra
    (:class:`~srha_hf.corruptions.MissingExtraError` before any work otherwise).

    Returns ``{key: {"clean": result, "corrupted": {name: {"1": result, ...}}, "summary":
    summarise_corruptions(...), "corruptions": [...], "severities": [...], "seed": seed, "package": ...}}``."""
    from .corruptions import Corruption, package_version, require_imagecorruptions, resolve_corruptions, resolve_severities, summarise_corruptions

    require_imagecorruptions()
    names, levels = resolve_corruptions(corruptions), resolve_severities(severities)
    cells = [Corruption(name, level, int(seed)) for name in names for level in levels]  # checked before any work
    done = done or {}
    clean = done.get("clean") or evaluate_model(model, datasets, **kwargs)
    if on_cell is not None and not done.get("clean"):
        on_cell(None, None, clean)
    table: Dict[str, Dict[str, Dict[str, dict]]] = {key: {} for key in clean}
    finished = done.get("cells") or {}
    for cell in cells:
        results = (finished.get(cell.name) or {}).get(str(cell.severity))
        if results is None:
            results = evaluate_model(model, datasets, corruption=cell, **kwargs)
            if on_cell is not None:
                on_cell(cell.name, cell.severity, results)
        for key, result in results.items():
            table[key].setdefault(cell.name, {})[str(cell.severity)] = result
    package = package_version()
    out = {}
    for key, by_name in table.items():
        mious = {name: {level: r["mean_iou"] for level, r in by_level.items()} for name, by_level in by_name.items()}
        out[key] = {
            "clean": clean[key],
            "corrupted": by_name,
            "summary": summarise_corruptions(clean[key]["mean_iou"], mious),
            "corruptions": names,
            "severities": levels,
            "seed": int(seed),
            "package": package,
        }
    return out


def _precision_of(mixed_precision, accelerator):
    """``mixed_precision``, or the accelerator's when it is None and there is one."""
    if mixed_precision is None and accelerator is not None:
        return getattr(accelerator, "mixed_precision", None)
    return mixed_precision


def _description(key: str, corruption, world: int) -> str:
    """The progress bar's label: the dataset, the corruption and severity, the process count."""
    return f"eval {key}" + (f" [{corruption.label()}]" if corruption is not None else "") + (f" (rank 0 of {world})" if world > 1 else "")


def _corruption_record(corruption) -> dict:
    """``{"corruption": {name, severity, seed}}`` for a corrupted pass, ``{}`` for a clean one."""
    if corruption is None:
        return {}
    return {"corruption": {"name": corruption.name, "severity": corruption.severity, "seed": corruption.seed}}


def _checked_datasets(datasets, batch_size: int, max_images, mapillary_crop: str, eval_sizes):
    """``(items, benchmark kinds, evaluation transforms)``, every argument checked before any work."""
    items = _dataset_items(datasets)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    kinds = [benchmark_of(key, ds) for key, ds in items]
    return items, kinds, [eval_transform(kind, mapillary_crop, eval_sizes) for kind in kinds]


def _count_dataset(net, loader, dataset, saver, bar, counting: dict):
    """``(confusion matrices, counts, condition names, written files)`` of one dataset's shard; the saver
    is closed (its writes waited for) even when counting fails."""
    group_names, groups = _condition_groups(dataset)
    try:
        hist, count = _confusion_over(net, loader, bar=bar, saver=saver, groups=groups, **counting)
    finally:
        written = saver.close() if saver is not None else None
    return hist, count, group_names, written


def _subsets_for(kind: str, class_subsets: Sequence, num_labels: int) -> list:
    """The class subsets a dataset reports: those asked for, and Synthia's two for a Synthia dataset."""
    subsets = list(class_subsets or ())
    if kind == "synthia" and num_labels == NUM_CLASSES:
        subsets += [s for s in SYNTHIA_SUBSETS if s not in subsets]
    return subsets


def _label_set(names: list) -> dict:
    standard = len(names) == NUM_CLASSES and list(names) == list(CLASS_NAMES)
    return {"name": "cityscapes19" if standard else f"{len(names)} classes", "num_labels": len(names)}


def _condition_groups(dataset):
    """``(condition names, condition index of every example)`` of a dataset with a ``condition`` column
    (ACDC, docs/method.md §6.7), or ``(None, None)``."""
    if "condition" not in getattr(dataset, "column_names", ()):
        return None, None
    column = example_conditions(dataset)
    order = sorted(set(column))
    index = {c: i for i, c in enumerate(order)}
    return order, np.asarray([index[c] for c in column])


def _gathered_result(hist: torch.Tensor, count: torch.Tensor, reduce, names: list, kind: str, start: float, written, subsets=(),
                     group_names=None) -> dict:  # fmt: skip
    """One dataset's result from this process's confusion matrices and image counts (one per group), summed
    over processes; with ``group_names`` (ACDC's conditions) also ``per_condition`` results, the overall
    result being that of the summed matrix."""
    totals = torch.cat([hist.reshape(-1).cpu(), count.cpu()])
    if reduce is not None:
        totals = reduce(totals)
    n_groups, num_labels = hist.shape[0], hist.shape[1]
    matrices = totals[:-n_groups].reshape(n_groups, num_labels, num_labels).numpy()
    counts = totals[-n_groups:].tolist()
    result = _results_from_matrix(matrices.sum(axis=0), names, int(sum(counts)), subsets)
    if group_names is not None:
        result["per_condition"] = {
            group: _results_from_matrix(matrices[i], names, int(counts[i]), subsets) for i, group in enumerate(group_names) if counts[i]
        }
    result.update(benchmark=kind, class_names=list(names), seconds=time.perf_counter() - start)
    if written is not None:
        result["prediction_files"] = written
    return result


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)
