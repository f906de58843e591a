"""Class subsets of the 19 Cityscapes classes for mIoU (docs/method.md §8.7).

Synthia has no terrain, truck or train pixels, so Synthia-source papers report the mIoU over the 16
classes it labels; many also report it over 13, leaving out wall, fence and pole as well. Both are
computed from the same 19-class confusion matrix: each class's IoU as in the 19-class result, averaged
over the subset's classes (a class absent from both ground truth and prediction is left out, as in the
19-class mean).
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple, Union

import numpy as np

from ..metrics.mean_iou import scores_from_confusion_matrix
from .labels import CLASS_NAMES

_NOT_IN_SYNTHIA = ("terrain", "truck", "train")
SYNTHIA16: Tuple[str, ...] = tuple(c for c in CLASS_NAMES if c not in _NOT_IN_SYNTHIA)
SYNTHIA13: Tuple[str, ...] = tuple(c for c in SYNTHIA16 if c not in ("wall", "fence", "pole"))
CLASS_SUBSETS: Dict[str, Tuple[str, ...]] = {"synthia16": SYNTHIA16, "synthia13": SYNTHIA13}
SYNTHIA_SUBSETS = ("synthia16", "synthia13")  # reported for Synthia as source or target


def resolve_class_subset(subset: Union[str, Sequence[str]], class_names: Sequence[str] = CLASS_NAMES) -> Tuple[str, Tuple[str, ...]]:
    """``(name, classes)`` of a subset given by name (``synthia16``, ``synthia13``) or as class names
    (a list, or one comma-separated string); an unknown name or class is an error naming it."""
    if isinstance(subset, str) and subset in CLASS_SUBSETS:
        classes = CLASS_SUBSETS[subset]
        name = subset
    else:
        items = subset.split(",") if isinstance(subset, str) else list(subset)
        classes = tuple(str(c).strip() for c in items if str(c).strip())
        if len(classes) < 2 and isinstance(subset, str):
            raise ValueError(f"class subset {subset!r}: expected {' or '.join(CLASS_SUBSETS)}, or two or more class names separated by commas")
        name = f"{len(classes)} classes"
    unknown = [c for c in classes if c not in class_names]
    if unknown:
        raise ValueError(f"class subset {name!r}: unknown classes {unknown}; the classes are {', '.join(class_names)}")
    if not classes:
        raise ValueError("an empty class subset")
    return name, classes


def subset_mean_iou(matrix, class_names: Sequence[str], classes: Sequence[str]) -> float:
    """The mean IoU over ``classes`` from a (n, n) confusion matrix (rows ground truth) whose classes are
    ``class_names``: the per-class IoUs of :func:`~srha_hf.metrics.scores_from_confusion_matrix`, NaN-IoU
    classes (absent from ground truth and prediction) left out."""
    index = [list(class_names).index(c) for c in classes]
    iou = scores_from_confusion_matrix(matrix)["per_category_iou"][index]  # the 19-class result's IoUs
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def subset_results(matrix, class_names: Sequence[str], subsets: Sequence[Union[str, Sequence[str]]]) -> Dict[str, Mapping]:
    """``{subset name: {"mean_iou", "classes"}}`` for each subset."""
    out = {}
    for subset in subsets:
        name, classes = resolve_class_subset(subset, class_names)
        out[name] = {"mean_iou": subset_mean_iou(matrix, class_names, classes), "classes": list(classes)}
    return out
