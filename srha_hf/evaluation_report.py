"""The evaluation report: what a person looks at after `evaluate_model` (docs/method.md §8).

`write_evaluation_report(results, output_dir, ...)` writes, per dataset, the per-class IoU bar chart, the
confusion-matrix heatmap, prediction overlays (image | ground truth | prediction), the per-class table
(Markdown) and one JSON file for the whole run, each atomically. `format_iou_table` is the Markdown table
that `scripts/evaluate.py` and training print.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from .atomic import atomic_write, json_safe, write_json_atomic, write_text_atomic
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_tensors
from .evaluation import EvalDataset, benchmark_of, dataset_slug, eval_transform, model_device_dtype, predict, unwrap_model
from .protocols import WHOLE, EvalProtocol
from .visualization import overlay_panel, plot_confusion_matrix, plot_corruption_heatmap, plot_per_class_iou

__all__ = ["corruption_json", "format_corruption_table", "format_iou_table", "write_evaluation_report", "write_overlays"]


def format_iou_table(name: str, result: Mapping) -> str:
    """The per-class table as Markdown: class, IoU and accuracy in percent (n/a = absent from both)."""
    lines = [
        f"### {name}: mIoU {_pct(result['mean_iou'])} ({result['num_images']} images)",
        "",
        "| # | class | IoU | accuracy |",
        "|---|---|---|---|",
    ]
    acc = result.get("per_category_accuracy", {})
    for i, (cls, iou) in enumerate(result["per_category_iou"].items()):
        lines.append(f"| {i} | {cls} | {_pct(iou)} | {_pct(acc.get(cls))} |")
    lines += [
        "",
        f"mIoU {_pct(result['mean_iou'])}, mean accuracy {_pct(result['mean_accuracy'])}, "
        f"pixel accuracy {_pct(result['overall_accuracy'])}, fwIoU {_pct(result.get('frequency_weighted_iou'))}",
    ]
    conditions = result.get("per_condition") or {}
    if conditions:
        lines.append("mIoU per condition: " + ", ".join(f"{c} {_pct(r['mean_iou'])} ({r['num_images']} images)" for c, r in conditions.items()))
    for subset, sub in (result.get("class_subsets") or {}).items():
        lines.append(f"mIoU over {subset} ({len(sub['classes'])} classes): {_pct(sub['mean_iou'])}")
    if result.get("protocol"):
        lines.append(f"protocol: {protocol_label(result['protocol'])}")
    return "\n".join(lines) + "\n"


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def corruption_json(entry: Mapping) -> dict:
    """The results JSON's form of one dataset of ``evaluate_corruptions``: the summary, the mIoU and the
    per-class IoU of every corruption × severity (no confusion matrices), the settings, the clean mIoU."""
    corrupted = entry["corrupted"]
    return {
        "corruptions": list(entry["corruptions"]),
        "severities": list(entry["severities"]),
        "seed": entry["seed"],
        "package": entry["package"],
        "num_images": entry["clean"]["num_images"],
        "summary": entry["summary"],
        "mean_iou": {c: {s: r["mean_iou"] for s, r in by.items()} for c, by in corrupted.items()},
        "per_category_iou": {c: {s: r["per_category_iou"] for s, r in by.items()} for c, by in corrupted.items()},
    }


def format_corruption_table(name: str, entry: Mapping) -> str:
    """Markdown of one dataset under corruptions: clean, each family, all and the relative robustness; then
    the mIoU of each corruption per severity with its mean (the heatmap's numbers)."""
    from .corruptions import FAMILIES

    summary = entry["summary"]
    families = [f for f in FAMILIES if f in summary["per_family"]]
    relative = summary["relative"]["mean"]
    lines = [
        f"### {name} under corruptions (docs/method.md §8.8; seed {entry['seed']}, {entry['package']})",
        "",
        "| clean | " + " | ".join(families) + " | all | relative |",
        "|---|" + "---|" * (len(families) + 2),
        f"| {_pct(summary['clean'])} | " + " | ".join(_pct(summary["per_family"][f]) for f in families)
        + f" | **{_pct(summary['mean'])}** | {'n/a' if relative != relative else f'{100 * relative:.1f}%'} |",
        "",
    ]
    cells = entry.get("mean_iou") or {c: {s: r["mean_iou"] for s, r in by.items()} for c, by in entry["corrupted"].items()}
    severities = [str(s) for s in entry["severities"]]
    lines += ["| corruption | family | " + " | ".join(f"s{s}" for s in severities) + " | mean |", "|---|---|" + "---|" * (len(severities) + 1)]
    for family, members in FAMILIES.items():
        for corruption in members:
            if corruption in cells:
                values = " | ".join(_pct(cells[corruption].get(s)) for s in severities)
                lines.append(f"| {corruption} | {family} | {values} | {_pct(summary['per_corruption'][corruption])} |")
    return "\n".join(lines) + "\n"


def protocol_label(described: Mapping) -> str:
    """The short name of a recorded protocol (``EvalProtocol.describe()``)."""
    return EvalProtocol.from_description(described).label()


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
    protocol: EvalProtocol = WHOLE,
) -> list:
    """Predict the first `num_images` images (same protocol as `evaluate_model`) and save
    `{name}_overlay_{k}.png` panels: image, ground truth and prediction over the image."""
    net = unwrap_model(model)
    device, _ = model_device_dtype(net)
    transform = eval_transform(benchmark_of(name, dataset), mapillary_crop, eval_sizes)
    eval_set = EvalDataset(dataset, range(min(num_images, len(dataset))), transform, name, image_mean, image_std)
    modes = {module: module.training for module in net.modules()}
    net.eval()
    paths = []
    try:
        with torch.inference_mode():
            for k in range(len(eval_set)):
                image, label = eval_set.load(k)
                pixels = to_tensors(np.asarray(image), mean=eval_set.mean, std=eval_set.std)[None].to(device)
                prediction = predict(net, pixels, label.shape, mixed_precision, protocol)[0].cpu().numpy()
                panel = overlay_panel(image, label, prediction, max_width)
                path = os.path.join(output_dir, f"{dataset_slug(name)}_overlay_{k}.png")
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
    protocol: EvalProtocol = WHOLE,
    corruptions: Optional[Mapping[str, Mapping]] = None,
) -> dict:
    """Write, per dataset of `results` (from `evaluate_model`): `{name}_per_class_iou.png`,
    `{name}_confusion_matrix.png`, `{name}_per_class_iou.md` and, when `model` and `datasets` are
    given, `num_overlays` prediction overlays (under `protocol`, as the evaluation); then the JSON (`json_path`, default
    `output_dir/eval_results.json`) with `mean_iou` per dataset, every result (NaN -> null), the
    written files and `metadata`. With `corruptions` (from `evaluate_corruptions`), per dataset also
    `{name}_corruptions.png` (corruption × severity heatmap) and `{name}_corruptions.md`, and the JSON's
    `corruptions` (:func:`corruption_json` per dataset). Call it on the main process only. Returns the JSON content."""
    os.makedirs(output_dir, exist_ok=True)
    files: Dict[str, dict] = {}
    for name, result in results.items():
        slug = dataset_slug(name)
        entry = {
            "per_class_iou_png": plot_per_class_iou(name, result, os.path.join(output_dir, f"{slug}_per_class_iou.png")),
            "confusion_matrix_png": plot_confusion_matrix(name, result, os.path.join(output_dir, f"{slug}_confusion_matrix.png")),
        }
        table = format_iou_table(name, result)
        entry["per_class_iou_md"] = write_text_atomic(os.path.join(output_dir, f"{slug}_per_class_iou.md"), table)
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
                protocol=protocol,
            )
        files[name] = entry
    for name, report in (corruptions or {}).items():
        slug = dataset_slug(name)
        entry = files.setdefault(name, {})
        entry["corruptions_png"] = plot_corruption_heatmap(name, report, os.path.join(output_dir, f"{slug}_corruptions.png"))
        entry["corruptions_md"] = write_text_atomic(os.path.join(output_dir, f"{slug}_corruptions.md"), format_corruption_table(name, report))
    content = {
        "mean_iou": {name: r["mean_iou"] for name, r in results.items()},
        **dict(metadata or {}),
        "results": {name: dict(r) for name, r in results.items()},
        **({"corruptions": {name: corruption_json(r) for name, r in corruptions.items()}} if corruptions else {}),
        "files": files,
    }
    write_json_atomic(json_path or os.path.join(output_dir, "eval_results.json"), content, strict=True, sort_keys=False)
    return json_safe(content)
