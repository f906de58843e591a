"""How much of the synthetic benchmark a pixel's colour alone solves: a per-pixel Gaussian classifier in
RGB (one mean and covariance per class and the class priors, fitted on the GTAV-like source's train split;
no spatial context, no texture) and a nearest-class-mean one, scored as mIoU (%) on the source's val split
and on each target's val split at native resolution, with the project's metric.

A high source score says that the source's classes are told apart by colour: a model can learn colour
first, and whatever re-styles a class's colour (the targets' regional shift; SRM during training) takes
away that cue. The targets' scores say how far their per-class colour shifts move the classes away from
the source's colours.

Prints one JSON object (per domain: mIoU of both classifiers and per-class IoU of the Gaussian one). The
benchmark is written first when ``--root`` has none (the demo's recipe, or ``--shift-scale`` /
``--texture-shift`` for the shifted targets of ``dg_shift_strength.py``, ``--class-colour-spread`` for the
benchmark whose classes change colour from image to image).

Usage:
    python -m experiments.synthetic_colour_baseline                      # outputs/synthetic, the demo's benchmark
    python -m experiments.synthetic_colour_baseline --root outputs/colour_x1.8 --shift-scale 1.8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import ROOT, machine
from experiments.trial_benchmark import add_options, make_trial_benchmark, options_from_args
from srha_hf.data import load_benchmark
from srha_hf.data.labels import CLASS_NAMES
from srha_hf.data.synthetic import DOMAINS
from srha_hf.metrics.mean_iou import scores_from_confusion_matrix

NUM_CLASSES = 19
CHUNK = 262_144  # pixels per block of the likelihood matrix (CHUNK x 19 x 3 floats)


def pixels(name: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3)`` float64 RGB and ``(N,)`` train ids of every labelled pixel of a split (ignore dropped)."""
    ds = load_benchmark(name, root, split)
    colours, labels = [], []
    for i in range(len(ds)):
        sample = ds[i]
        label = np.asarray(sample["label"]).ravel()
        keep = label < NUM_CLASSES
        colours.append(np.asarray(sample["image"], dtype=np.float64).reshape(-1, 3)[keep])
        labels.append(label[keep].astype(np.int64))
    return np.concatenate(colours), np.concatenate(labels)


def fit(colours: np.ndarray, labels: np.ndarray) -> dict:
    """Per-class mean, covariance (plus 1 on the diagonal, so that a flat class stays invertible), log
    prior. A class absent from ``labels`` gets an infinitely unlikely prior."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    present = counts > 0
    safe = np.maximum(counts, 1.0)

    def class_mean(values):  # per-class mean of one value per pixel
        return np.bincount(labels, weights=values, minlength=NUM_CLASSES) / safe

    mean = np.stack([class_mean(colours[:, i]) for i in range(3)], axis=1)  # (19, 3)
    second = np.empty((NUM_CLASSES, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            second[:, i, j] = second[:, j, i] = class_mean(colours[:, i] * colours[:, j])
    cov = second - mean[:, :, None] * mean[:, None, :] + np.eye(3)
    cov[~present] = np.eye(3)
    with np.errstate(divide="ignore"):
        log_prior = np.log(counts / counts.sum())
    return {"mean": mean, "inv_cov": np.linalg.inv(cov), "log_det": np.linalg.slogdet(cov)[1], "log_prior": log_prior}


def predict(model: dict, colours: np.ndarray, gaussian: bool = True) -> np.ndarray:
    """The most likely class per pixel (``gaussian``) or the class of the nearest mean colour."""
    out = np.empty(len(colours), dtype=np.int64)
    for start in range(0, len(colours), CHUNK):
        diff = colours[start : start + CHUNK, None, :] - model["mean"][None]  # (n, 19, 3)
        if gaussian:
            score = -0.5 * np.einsum("nci,cij,ncj->nc", diff, model["inv_cov"], diff) - 0.5 * model["log_det"] + model["log_prior"]
        else:
            score = -(diff**2).sum(-1) + np.where(np.isfinite(model["log_prior"]), 0.0, -np.inf)
        out[start : start + CHUNK] = score.argmax(1)
    return out


def confusion(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Rows = labels, columns = predictions; int64 first, so that uint8 label maps cannot overflow."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    return np.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(ROOT / "outputs" / "synthetic"), help="a synthetic benchmark folder (default: the demo's)")
    parser.add_argument("--num-train", type=int, default=100, help="images per split when the benchmark is written (the demo's 100)")
    parser.add_argument("--num-val", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(384, 212), metavar=("W", "H"))
    add_options(parser)
    args = parser.parse_args(argv)
    appearance = options_from_args(parser, args)
    root = Path(args.root)
    start = time.time()
    make_trial_benchmark(root, args.num_train, args.num_val, tuple(args.size), progress=True, **appearance)  # reused when made so
    model = fit(*pixels("gtav", root / "gtav", "train"))
    domains = {}
    for name in DOMAINS:
        colours, labels = pixels(name, root / name, "val")
        gaussian = scores_from_confusion_matrix(confusion(labels, predict(model, colours)))
        nearest = scores_from_confusion_matrix(confusion(labels, predict(model, colours, gaussian=False)))
        domains[name] = {
            "gaussian_miou": round(float(gaussian["mean_iou"]) * 100, 2),
            "nearest_mean_miou": round(float(nearest["mean_iou"]) * 100, 2),
            "gaussian_per_class_iou": {
                c: (None if np.isnan(v) else round(float(v) * 100, 1)) for c, v in zip(CLASS_NAMES, gaussian["per_category_iou"])
            },
        }
    targets = [d for d in DOMAINS if d != "gtav"]
    result = {
        "benchmark": "synthetic_colour_baseline",
        "machine": machine(),
        "root": str(root),
        **appearance,
        "targets_mean": {
            "gaussian_miou": round(float(np.mean([domains[t]["gaussian_miou"] for t in targets])), 2),
            "nearest_mean_miou": round(float(np.mean([domains[t]["nearest_mean_miou"] for t in targets])), 2),
        },
        "domains": domains,
        "wall_s": round(time.time() - start, 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
