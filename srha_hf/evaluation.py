"""Evaluation on the target domains (docs/method.md §6, §8): the routine shared by training and `scripts/evaluate.py`.

`evaluate_model(model, {"cityscapes": ds, ...})` runs single-scale inference with each benchmark's
evaluation resizing (full-resolution Cityscapes / BDD-100K / Synthia, GTAV resized to 1914x1052,
Mapillary height 1536 + centre crop/pad with the D3 switch), accumulates docs/method.md §8.2's 19x19 confusion
matrix on the model's device and derives mIoU etc. with evaluate's `mean_iou` rules.

Across processes (an `accelerate.Accelerator`, or any initialised `torch.distributed` group) every
process evaluates the disjoint shard `indices[rank::world]` and the int64 confusion matrices are
summed: no padding, no duplicated and no dropped image, so any split size gives the single-process
result. The reference's validation sampler dropped `len % world` images after a seed-0 permutation
(docs/method.md §9 T3); `drop_remainder=True` reproduces that.

`write_evaluation_report(results, output_dir, ...)` renders what a person looks at: per-class IoU bar
chart, confusion-matrix heatmap, prediction overlays (PNG), the per-class table (Markdown) and a JSON
file, each written atomically.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_write, write_text_atomic
from .data.labels import CITYSCAPES_PALETTE, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, colorize
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .metrics import confusion_matrix, frequency_weighted_iou, scores_from_confusion_matrix

# accelerate's "fp8" is a training setting: evaluation autocasts to bf16 then
MIXED_PRECISION = {None: None, "no": None, "fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}

__all__ = [
    "benchmark_of",
    "evaluate_model",
    "format_iou_table",
    "shard_indices",
    "write_evaluation_report",
]


# --------------------------------------------------------------------------------------------------
# Datasets, shards, batches
# --------------------------------------------------------------------------------------------------


def benchmark_of(key: str, dataset=None) -> str:
    """The benchmark kind of a `datasets` mapping key: "cityscapes" or "cityscapes:night" ->
    "cityscapes"; a key that names no benchmark falls back to the dataset's `load_benchmark` info."""
    from .data.benchmarks import benchmark_info, get_spec

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
            "mapillary, synthia), optionally as 'name:label', or a dataset made by srha_hf.load_benchmark"
        ) from None


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


class _EvalDataset(torch.utils.data.Dataset):
    """`load_benchmark` examples -> evaluation resizing -> (normalised pixels, uint8 label, index)."""

    def __init__(self, dataset, indices: Sequence[int], transform, name: str, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.dataset = dataset
        self.indices = list(indices)
        self.transform = transform
        self.name = name
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self):
        return len(self.indices)

    def load(self, i: int):
        """(PIL image, uint8 label array) after the evaluation resizing."""
        index = self.indices[i]
        example = self.dataset[int(index)]
        if example.get("label") is None:
            raise ValueError(f"{self.name}: example {index} ({example.get('image_path')}) has no label; evaluate a labelled split")
        image, label = self.transform(example["image"], example["label"])
        return image, np.array(label, dtype=np.uint8)  # a writable copy

    def __getitem__(self, i: int):
        from .data.transforms import to_tensors

        image, label = self.load(i)
        pixels = to_tensors(np.asarray(image), mean=self.mean, std=self.std)
        return pixels, torch.from_numpy(np.ascontiguousarray(label)), self.indices[i]


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


def _unwrap(model, accelerator=None):
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def _model_device_dtype(model):
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


def predict(model, pixels: torch.Tensor, size=None, mixed_precision=None) -> torch.Tensor:
    """argmax class map (B, H, W) of an eval-mode model on normalised pixels (already on its device);
    logits of another size are resized bilinearly to `size` (default: the input size)."""
    device, dtype = _model_device_dtype(model)
    size = tuple(size or pixels.shape[-2:])
    with _autocast(device, mixed_precision):
        logits = _logits(model(pixel_values=pixels.to(device=device, dtype=dtype, non_blocking=True)))
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
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


def _eval_transform(kind: str, mapillary_crop: str, eval_sizes: Optional[Mapping]):
    from .data.transforms import build_eval_transform

    return build_eval_transform(kind, mapillary_crop=mapillary_crop, **dict(eval_sizes or {}))


# --------------------------------------------------------------------------------------------------
# The routine
# --------------------------------------------------------------------------------------------------


def _results_from_matrix(matrix: np.ndarray, names: list, num_images: int) -> dict:
    scores = scores_from_confusion_matrix(matrix)
    return {
        "mean_iou": float(scores["mean_iou"]),
        "mean_accuracy": float(scores["mean_accuracy"]),
        "overall_accuracy": float(scores["overall_accuracy"]),
        "frequency_weighted_iou": frequency_weighted_iou(matrix),
        "per_category_iou": {n: float(v) for n, v in zip(names, scores["per_category_iou"])},
        "per_category_accuracy": {n: float(v) for n, v in zip(names, scores["per_category_accuracy"])},
        "confusion_matrix": matrix.astype(np.int64).tolist(),
        "num_images": int(num_images),
    }


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
) -> Dict[str, dict]:
    """Evaluate `model` on each target dataset; returns `{name: result}` in the order given.

    Args:
        model: a segmentation model whose eval-mode output has `.logits` (or is the logits tensor)
            of shape (B, num_labels, h, w); logits not at the label size are resized bilinearly
            (SRHA's are already at the input size). May be wrapped in DDP / prepared by Accelerate.
            It is put in eval mode and every submodule's mode is restored afterwards.
        datasets: `{name: datasets.Dataset from load_benchmark}`; name is a benchmark (gtav,
            cityscapes, bdd100k, mapillary, synthia) or "benchmark:label"; a single dataset made by
            `load_benchmark` is also accepted.
        accelerator: an `accelerate.Accelerator`: its device, process index/count and (when
            `mixed_precision` is None) its mixed-precision setting are used. Without one, an
            initialised torch.distributed group is used if there is one.
        batch_size, num_workers: per-process DataLoader settings.
        mixed_precision: "no" / "fp16" / "bf16": autocast for the forward.
        mapillary_crop: docs/method.md §9 D3, "faithful" (default) or "corrected".
        eval_sizes: keyword arguments of `build_eval_transform` (`gtav_size`, `mapillary_size`),
            e.g. `synthetic_eval_sizes(size)` for the small synthetic benchmark.
        max_images: evaluate only the first `max_images` images of each dataset (before sharding).
        drop_remainder: docs/method.md §9 T3, drop `len % world` images like the reference's sampler.
        num_labels: defaults to `model.config.num_labels`, else 19.

    Returns per dataset: `mean_iou`, `mean_accuracy`, `overall_accuracy`, `frequency_weighted_iou`,
    `per_category_iou` / `per_category_accuracy` (class name -> value, NaN for a class absent from
    both ground truth and predictions), `confusion_matrix` (list of lists, rows = ground truth),
    `num_images` (over all processes), plus `benchmark`, `class_names`, `seconds`. Every process
    returns the same results.
    """
    if isinstance(datasets, Mapping):
        items = list(datasets.items())
    elif hasattr(datasets, "info") and hasattr(datasets, "__getitem__"):
        from .data.benchmarks import benchmark_info

        items = [(benchmark_info(datasets)["benchmark"], datasets)]
    else:
        raise TypeError("datasets must map names to datasets.Dataset objects made by srha_hf.load_benchmark")
    if not items:
        raise ValueError("no dataset to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    kinds = [benchmark_of(key, ds) for key, ds in items]
    transforms = [_eval_transform(kind, mapillary_crop, eval_sizes) for kind in kinds]  # checks arguments early

    net = _unwrap(model, accelerator)
    if num_labels is None:
        num_labels = int(getattr(getattr(net, "config", None), "num_labels", None) or NUM_CLASSES)
    names = _class_names(net, num_labels)
    if mixed_precision is None and accelerator is not None:
        mixed_precision = getattr(accelerator, "mixed_precision", None)
    rank, world, reduce = _distributed(accelerator)
    device, _ = _model_device_dtype(net)
    is_main = rank == 0

    modes = {module: module.training for module in net.modules()}
    net.eval()
    results: Dict[str, dict] = {}
    try:
        for (key, dataset), kind, transform in zip(items, kinds, transforms):
            start = time.perf_counter()
            length = len(dataset) if max_images is None else min(len(dataset), max_images)
            shard = shard_indices(length, rank, world, drop_remainder=drop_remainder)
            eval_set = _EvalDataset(dataset, shard, transform, key, image_mean, image_std)
            loader = torch.utils.data.DataLoader(
                eval_set,
                batch_size=batch_size,
                shuffle=False,
                num_workers=num_workers,
                collate_fn=_collate,
                pin_memory=device.type == "cuda",
            )
            hist = torch.zeros((num_labels, num_labels), dtype=torch.int64, device=device)
            count = 0
            bar = _progress(len(shard), f"eval {key}" + (f" (rank 0 of {world})" if world > 1 else ""), progress and is_main)
            with torch.inference_mode():
                for items_ in loader:
                    for group in _same_size_batches(items_):
                        pixels = torch.stack([g[0] for g in group]).to(device, non_blocking=True)
                        labels = torch.stack([g[1] for g in group]).to(device, non_blocking=True)
                        preds = predict(net, pixels, labels.shape[-2:], mixed_precision)
                        hist += confusion_matrix(preds, labels, num_labels, ignore_index, validate=False)
                        count += len(group)
                        bar.update(len(group))
            bar.close()
            totals = torch.cat([hist.reshape(-1).cpu(), torch.tensor([count], dtype=torch.int64)])
            if reduce is not None:
                totals = reduce(totals)
            matrix = totals[:-1].reshape(num_labels, num_labels).numpy()
            result = _results_from_matrix(matrix, names, int(totals[-1]))
            result.update(benchmark=kind, class_names=list(names), seconds=time.perf_counter() - start)
            results[key] = result
    finally:
        for module, training in modes.items():
            module.training = training
    return results


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------------
# Report: table, plots, overlays, JSON
# --------------------------------------------------------------------------------------------------


def format_iou_table(name: str, result: Mapping) -> str:
    """The per-class table as Markdown: class, IoU and accuracy in percent (n/a = absent from both)."""

    def pct(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"

    lines = [
        f"### {name}: mIoU {pct(result['mean_iou'])} ({result['num_images']} images)",
        "",
        "| # | class | IoU | accuracy |",
        "|---|---|---|---|",
    ]
    acc = result.get("per_category_accuracy", {})
    for i, (cls, iou) in enumerate(result["per_category_iou"].items()):
        lines.append(f"| {i} | {cls} | {pct(iou)} | {pct(acc.get(cls))} |")
    lines += [
        "",
        f"mIoU {pct(result['mean_iou'])}, mean accuracy {pct(result['mean_accuracy'])}, "
        f"pixel accuracy {pct(result['overall_accuracy'])}, fwIoU {pct(result.get('frequency_weighted_iou'))}",
    ]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def _json_safe(value):
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (np.floating,)):
        return _json_safe(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_text(path: str, text: str) -> str:
    """A text file, atomically."""
    return write_text_atomic(path, text)


def write_json(path: str, data) -> str:
    """JSON with NaN written as null (strict JSON), atomically."""
    return write_text(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100)


def _save_figure(fig, path: str) -> str:
    def write(tmp):
        fig.savefig(tmp, format="png", bbox_inches="tight")

    return atomic_write(path, write)


def plot_per_class_iou(name: str, result: Mapping, path: str) -> str:
    """Bar chart of per-class IoU (%) with the mIoU as a dashed line; absent classes marked n/a."""
    classes = list(result["per_category_iou"])
    values = [result["per_category_iou"][c] for c in classes]
    ious = np.array([np.nan if v is None else 100 * v for v in values], dtype=np.float64)
    palette = np.asarray(CITYSCAPES_PALETTE, dtype=np.float64) / 255.0
    colors = [palette[i % len(palette)] for i in range(len(classes))]
    fig = _figure(max(8.0, 0.5 * len(classes) + 2), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(classes))
    ax.bar(x, np.nan_to_num(ious), color=colors, edgecolor="black", linewidth=0.5)
    for xi, v in zip(x, ious):
        ax.text(xi, (0 if np.isnan(v) else v) + 1, "n/a" if np.isnan(v) else f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    miou = result["mean_iou"]
    if miou is not None and not math.isnan(miou):
        ax.axhline(100 * miou, color="black", linestyle="--", linewidth=1, label=f"mIoU {100 * miou:.2f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("IoU (%)")
    ax.set_title(f"{name}: per-class IoU ({result['num_images']} images)")
    ax.grid(axis="y", alpha=0.3)
    return _save_figure(fig, path)


def plot_confusion_matrix(name: str, result: Mapping, path: str) -> str:
    """Heatmap of the confusion matrix normalised per ground-truth row (%), with cell values."""
    matrix = np.asarray(result["confusion_matrix"], dtype=np.float64)
    classes = list(result["per_category_iou"])
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(rows > 0, 100 * matrix / rows, 0.0)
    n = len(classes)
    size = max(6.0, 0.45 * n + 2)
    fig = _figure(size + 1.5, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of ground-truth pixels")
    if n <= 40:
        for i, j in zip(*np.nonzero(norm >= 0.5)):
            ax.text(j, i, f"{norm[i, j]:.0f}", ha="center", va="center", fontsize=6, color="white" if norm[i, j] > 60 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"{name}: confusion matrix (row-normalised)")
    return _save_figure(fig, path)


def overlay_panel(image, label: np.ndarray, prediction: np.ndarray, max_width: int = 512, alpha: float = 0.55,
                  min_width: int = 192, captions=("image", "ground truth", "prediction")):  # fmt: skip
    """[image | ground truth over image | prediction over image] as one PIL image under a caption
    strip; ignored ground-truth pixels are left unblended."""
    from PIL import Image

    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    valid = (label != IGNORE_INDEX)[..., None]
    gt = np.where(valid, (1 - alpha) * rgb + alpha * colorize(label), rgb).astype(np.uint8)
    pred = ((1 - alpha) * rgb + alpha * colorize(prediction.astype(np.uint8))).astype(np.uint8)
    panel = Image.fromarray(np.concatenate([rgb, gt, pred], axis=1))
    h, w = rgb.shape[:2]
    if w < min_width:  # tiny (e.g. synthetic) images: enlarge, pixels kept sharp
        factor = -(-min_width // w)
        panel = panel.resize((3 * w * factor, h * factor), Image.NEAREST)
    elif w > max_width:
        scale = max_width / w
        panel = panel.resize((int(round(3 * w * scale)), max(1, int(round(h * scale)))), Image.BILINEAR)
    if not captions:
        return panel
    from PIL import ImageDraw

    framed = Image.new("RGB", (panel.width, panel.height + 16), (255, 255, 255))
    framed.paste(panel, (0, 16))
    draw = ImageDraw.Draw(framed)
    for k, text in enumerate(captions):
        draw.text((k * panel.width // 3 + 4, 2), text, fill=(0, 0, 0))
    return framed


def write_overlays(
    model,
    name: str,
    dataset,
    output_dir: str,
    *,
    num_images: int = 3,
    mapillary_crop: str = "faithful",
    eval_sizes: Optional[Mapping] = None,
    mixed_precision: Optional[str] = None,
    image_mean=IMAGENET_MEAN,
    image_std=IMAGENET_STD,
    max_width: int = 512,
) -> list:
    """Predict the first `num_images` images (same protocol as `evaluate_model`) and save
    `{name}_overlay_{k}.png` panels: image, ground truth and prediction over the image."""
    from .data.transforms import to_tensors

    net = _unwrap(model)
    device, _ = _model_device_dtype(net)
    transform = _eval_transform(benchmark_of(name, dataset), mapillary_crop, eval_sizes)
    eval_set = _EvalDataset(dataset, range(min(num_images, len(dataset))), transform, name, image_mean, image_std)
    modes = {module: module.training for module in net.modules()}
    net.eval()
    paths = []
    try:
        with torch.inference_mode():
            for k in range(len(eval_set)):
                image, label = eval_set.load(k)
                pixels = to_tensors(np.asarray(image), mean=eval_set.mean, std=eval_set.std)[None].to(device)
                prediction = predict(net, pixels, label.shape, mixed_precision)[0].cpu().numpy()
                panel = overlay_panel(image, label, prediction, max_width)
                path = os.path.join(output_dir, f"{_slug(name)}_overlay_{k}.png")
                paths.append(atomic_write(path, lambda tmp, panel=panel: panel.save(tmp, format="PNG")))
    finally:
        for module, training in modes.items():
            module.training = training
    return paths


def write_evaluation_report(
    results: Mapping[str, Mapping],
    output_dir: str,
    *,
    model=None,
    datasets: Optional[Mapping] = None,
    num_overlays: int = 3,
    mapillary_crop: str = "faithful",
    eval_sizes: Optional[Mapping] = None,
    mixed_precision: Optional[str] = None,
    json_path: Optional[str] = None,
    metadata: Optional[Mapping] = None,
    image_mean=IMAGENET_MEAN,
    image_std=IMAGENET_STD,
) -> dict:
    """Write, per dataset of `results` (from `evaluate_model`): `{name}_per_class_iou.png`,
    `{name}_confusion_matrix.png`, `{name}_per_class_iou.md` and, when `model` and `datasets` are
    given, `num_overlays` prediction overlays; then the JSON (`json_path`, default
    `output_dir/eval_results.json`) with `mean_iou` per dataset, every result (NaN -> null), the
    written files and `metadata`. Call it on the main process only. Returns the JSON content."""
    os.makedirs(output_dir, exist_ok=True)
    files: Dict[str, dict] = {}
    for name, result in results.items():
        slug = _slug(name)
        entry = {
            "per_class_iou_png": plot_per_class_iou(name, result, os.path.join(output_dir, f"{slug}_per_class_iou.png")),
            "confusion_matrix_png": plot_confusion_matrix(name, result, os.path.join(output_dir, f"{slug}_confusion_matrix.png")),
        }
        table = format_iou_table(name, result)
        entry["per_class_iou_md"] = write_text(os.path.join(output_dir, f"{slug}_per_class_iou.md"), table)
        if model is not None and datasets is not None and name in datasets and num_overlays > 0:
            entry["overlays_png"] = write_overlays(
                model,
                name,
                datasets[name],
                output_dir,
                num_images=num_overlays,
                mapillary_crop=mapillary_crop,
                eval_sizes=eval_sizes,
                mixed_precision=mixed_precision,
                image_mean=image_mean,
                image_std=image_std,
            )
        files[name] = entry
    content = {
        "mean_iou": {name: r["mean_iou"] for name, r in results.items()},
        **dict(metadata or {}),
        "results": {name: dict(r) for name, r in results.items()},
        "files": files,
    }
    write_json(json_path or os.path.join(output_dir, "eval_results.json"), content)
    return _json_safe(content)
