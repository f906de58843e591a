"""Pictures of label maps and results: palettes, colour masks, overlays and charts.

Everything the library draws comes from here: the colour table of train IDs (the Cityscapes palette of
docs/method.md §6.2 for the 19 classes), colour masks, masks blended over images, the evaluation report's
image / ground truth / prediction panels, and the matplotlib charts (per-class IoU bars, the confusion
matrix heatmap, grouped bars for ablation tables). Charts are drawn on a bare ``matplotlib.figure.Figure``
(no pyplot: no global figure state, no GUI backend) and written atomically.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from .atomic import atomic_write
from .data.labels import CITYSCAPES_PALETTE, IGNORE_INDEX, NUM_CLASSES

__all__ = [
    "colorize",
    "grouped_bar_chart",
    "overlay",
    "overlay_panel",
    "palette_for",
    "plot_confusion_matrix",
    "plot_corruption_heatmap",
    "plot_per_class_iou",
]


# --------------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------------


def palette_for(num_labels: int) -> np.ndarray:
    """``(256, 3)`` uint8 colour table: the Cityscapes palette for train IDs 0..18 (docs/method.md §6.2), fixed
    pseudo-random colours for any further class, black for the rest (e.g. 255 = ignore)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:NUM_CLASSES] = np.asarray(CITYSCAPES_PALETTE, dtype=np.uint8)
    extra = min(num_labels, 255) - NUM_CLASSES
    if extra > 0:
        rng = np.random.default_rng(19)
        table[NUM_CLASSES : NUM_CLASSES + extra] = rng.integers(40, 256, size=(extra, 3), dtype=np.uint8)
    return table


def colorize(mask: np.ndarray, num_labels: int = NUM_CLASSES) -> np.ndarray:
    """``(H, W)`` train IDs -> ``(H, W, 3)`` uint8 colours from :func:`palette_for`; 255 (ignore) is black."""
    return palette_for(num_labels)[np.asarray(mask, dtype=np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, num_labels: int = NUM_CLASSES,
            keep: Optional[np.ndarray] = None) -> np.ndarray:  # fmt: skip
    """The colour mask blended over the RGB image, ``(1 - alpha) * image + alpha * colours`` rounded to
    uint8; where the boolean ``keep`` is True the image is left as it is (e.g. ignored ground truth)."""
    rgb = np.asarray(image, dtype=np.float32)
    blended = np.clip((1.0 - alpha) * rgb + alpha * colorize(mask, num_labels).astype(np.float32) + 0.5, 0, 255)
    blended = blended.astype(np.uint8)
    if keep is not None:
        blended = np.where(np.asarray(keep, dtype=bool)[..., None], np.asarray(image, dtype=np.uint8), blended)
    return blended


def overlay_panel(image, label: np.ndarray, prediction: np.ndarray, max_width: int = 512, alpha: float = 0.55,
                  min_width: int = 192, captions=("image", "ground truth", "prediction")):  # fmt: skip
    """[image | ground truth over image | prediction over image] as one PIL image under a caption
    strip; ignored ground-truth pixels are left unblended. Tiny images are enlarged (nearest, pixels kept
    sharp) to ``min_width`` per panel, large ones scaled down to ``max_width`` in all."""
    from PIL import Image, ImageDraw

    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    label = np.asarray(label)
    gt = overlay(rgb, np.where(label == IGNORE_INDEX, 0, label), alpha, keep=label == IGNORE_INDEX)
    pred = overlay(rgb, np.asarray(prediction).astype(np.uint8), alpha)
    panel = Image.fromarray(np.concatenate([rgb, gt, pred], axis=1))
    h, w = rgb.shape[:2]
    if w < min_width:
        factor = -(-min_width // w)
        panel = panel.resize((3 * w * factor, h * factor), Image.NEAREST)
    elif w > max_width:
        scale = max_width / w
        panel = panel.resize((int(round(3 * w * scale)), max(1, int(round(h * scale)))), Image.BILINEAR)
    if not captions:
        return panel
    framed = Image.new("RGB", (panel.width, panel.height + 16), (255, 255, 255))
    framed.paste(panel, (0, 16))
    draw = ImageDraw.Draw(framed)
    for k, text in enumerate(captions):
        draw.text((k * panel.width // 3 + 4, 2), text, fill=(0, 0, 0))
    return framed


# --------------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------------


def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def save_figure(fig, path: str) -> str:
    """Write a matplotlib figure as PNG, atomically; returns the path."""

    def write(tmp):
        fig.savefig(tmp, format="png", bbox_inches="tight")

    return atomic_write(str(path), write)


def plot_per_class_iou(name: str, result: Mapping, path: str) -> str:
    """Bar chart of per-class IoU (%) with the mIoU as a dashed line; absent classes marked n/a."""
    classes = list(result["per_category_iou"])
    values = [result["per_category_iou"][c] for c in classes]
    ious = np.array([np.nan if v is None else 100 * v for v in values], dtype=np.float64)
    colors = palette_for(len(classes))[: len(classes)].astype(np.float64) / 255.0
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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


def grouped_bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: str,
    *,
    title: str = "",
    ylabel: str = "mIoU (%)",
    errors: Optional[Mapping[str, Sequence[float]]] = None,
    separator_after: Optional[int] = None,
    ylim: Optional[Sequence[float]] = None,
) -> str:
    """Bars grouped by ``groups`` (x axis), one colour per entry of ``series`` (name -> one value per
    group), with optional error bars (name -> one value per group) and a dotted separator line after
    group index ``separator_after``. The y axis runs from 0 to at least 100 (mIoU), or over ``ylim``
    (low, high) when given, e.g. for differences, with a line at zero when the range crosses it.
    Written as PNG, atomically."""
    if ylim is not None and (len(ylim) != 2 or not ylim[0] < ylim[1]):
        raise ValueError(f"ylim must be (low, high) with low < high, got {ylim!r}")
    for name, values in series.items():
        if len(values) != len(groups):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(groups)} groups")
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    fig = _figure(11, 4.5, dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, values) in enumerate(series.items()):
        yerr = None if errors is None else errors.get(name)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, yerr=yerr, capsize=2, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if separator_after is not None:
        ax.axvline(separator_after + 0.5, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    if ylim is None:
        ax.set_ylim(0, max(100, ax.get_ylim()[1]))
    else:
        ax.set_ylim(*ylim)
        if ylim[0] < 0 < ylim[1]:
            ax.axhline(0, color="black", lw=0.8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_corruption_heatmap(name: str, report: Mapping, path: str) -> str:
    """Heatmap of mIoU (%) per corruption (rows, grouped by family) × severity (columns), with a column of
    each corruption's mean over the severities; the title gives the clean mIoU, the overall corrupted mean
    and the relative robustness. ``report``: one dataset of ``evaluate_corruptions`` (or its compact JSON
    form with ``mean_iou[corruption][severity]`` and ``summary``)."""
    from .corruptions import FAMILIES

    summary = report["summary"]
    cells = report.get("mean_iou") or {c: {s: r["mean_iou"] for s, r in by.items()} for c, by in report["corrupted"].items()}
    severities = sorted({int(s) for by in cells.values() for s in by})
    names = [n for names in FAMILIES.values() for n in names if n in cells]
    grid = np.full((len(names), len(severities) + 1), np.nan)
    for i, corruption in enumerate(names):
        for j, severity in enumerate(severities):
            value = cells[corruption].get(str(severity), cells[corruption].get(severity))
            grid[i, j] = np.nan if value is None else 100 * value
        grid[i, -1] = 100 * summary["per_corruption"][corruption]
    clean = 100 * summary["clean"]
    fig = _figure(2.2 + 0.75 * (len(severities) + 1), 1.2 + 0.32 * len(names), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    top = max(clean, float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0, vmax=top, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label="mIoU (%)")
    for i, j in np.ndindex(grid.shape):
        if np.isfinite(grid[i, j]):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7, fontweight="bold" if j == grid.shape[1] - 1 else "normal")
    ax.axvline(len(severities) - 0.5, color="black", lw=1.0)
    row = 0
    for family, members in FAMILIES.items():
        count = sum(1 for n in members if n in cells)
        if count and row:
            ax.axhline(row - 0.5, color="black", lw=0.8)
        row += count
    ax.set_xticks(range(len(severities) + 1))
    ax.set_xticklabels([f"s{s}" for s in severities] + ["mean"], fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{n} ({next(f for f, m in FAMILIES.items() if n in m)})" for n in names], fontsize=7)
    relative = summary["relative"]["mean"]
    ax.set_title(f"{name}: mIoU under corruptions\nclean {clean:.1f}, corrupted mean {100 * summary['mean']:.1f} "
                 f"({100 * relative:.0f}% of clean)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path)
