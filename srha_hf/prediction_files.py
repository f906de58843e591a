"""Prediction masks as files: the train-ID format and the Cityscapes label-ID format.

Two formats, both single-channel 8-bit PNGs at the image's size:

* ``trainid`` (default): the class index per pixel (``0..num_labels-1``), named
  ``<image name>_labelTrainIds.png``.
* ``cityscapes``: Cityscapes *label IDs* (road 7, sidewalk 8, building 11, ..., bicycle 33; docs/method.md
  §6.4 read backwards), what the official ``cityscapesscripts`` evaluation and the Cityscapes benchmark
  server read. A Cityscapes image ``<city>_<seq>_<frame>_leftImg8bit.png`` gives
  ``<city>_<seq>_<frame>_labelIds.png`` (the server and ``csEvalPixelLevelSemanticLabeling`` look for
  ``<city>_<seq>_<frame>*.png``, which must be unique, so nothing else is written beside it); another
  name gives ``<image name>_labelIds.png``. Only 19-class (Cityscapes train ID) models can write it.

Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .data.labels import NUM_CLASSES, TRAINID_TO_CITYSCAPES_LUT

PREDICTION_FORMATS = ("trainid", "cityscapes")
TRAINID_SUFFIX = "_labelTrainIds.png"
CITYSCAPES_SUFFIX = "_labelIds.png"
_CITYSCAPES_NAME = re.compile(r"^(?P<prefix>.+_\d{6}_\d{6})_leftImg8bit$")

__all__ = [
    "CITYSCAPES_SUFFIX",
    "PREDICTION_FORMATS",
    "TRAINID_SUFFIX",
    "check_prediction_format",
    "encode_prediction",
    "prediction_path",
    "write_png",
    "write_prediction",
]


def check_prediction_format(fmt: str, num_labels: int) -> str:
    """``fmt`` if it is a known format that a ``num_labels``-class model can write; a ``ValueError`` saying
    why not otherwise."""
    if fmt not in PREDICTION_FORMATS:
        raise ValueError(f"prediction format {fmt!r} is not one of {', '.join(PREDICTION_FORMATS)}")
    if fmt == "cityscapes" and int(num_labels) != NUM_CLASSES:
        raise ValueError(
            f"the cityscapes format maps the 19 Cityscapes train IDs to label IDs; this model has {num_labels} "
            "classes (use --format trainid)"
        )
    return fmt


def prediction_path(base, fmt: str = "trainid") -> Path:
    """The mask file for ``base`` (the output path of one image without suffix, named after the image's
    stem): ``base_labelTrainIds.png``, or in the cityscapes format ``<city>_<seq>_<frame>_labelIds.png``
    when the stem is a Cityscapes image name (``..._leftImg8bit``), else ``base_labelIds.png``."""
    base = Path(base)
    if fmt == "trainid":
        return base.with_name(base.name + TRAINID_SUFFIX)
    if fmt == "cityscapes":
        match = _CITYSCAPES_NAME.match(base.name)
        stem = match.group("prefix") if match else base.name
        return base.with_name(stem + CITYSCAPES_SUFFIX)
    raise ValueError(f"prediction format {fmt!r} is not one of {', '.join(PREDICTION_FORMATS)}")


def encode_prediction(mask: np.ndarray, fmt: str = "trainid") -> np.ndarray:
    """The ``(H, W)`` uint8 array stored for a train-ID mask: the mask itself, or its Cityscapes label IDs."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a prediction mask must be (H, W), got shape {mask.shape}")
    if fmt == "trainid":
        return mask.astype(np.uint8, copy=False)
    if fmt == "cityscapes":
        return TRAINID_TO_CITYSCAPES_LUT[mask.astype(np.uint8, copy=False)]
    raise ValueError(f"prediction format {fmt!r} is not one of {', '.join(PREDICTION_FORMATS)}")


def write_png(path, array: np.ndarray, mode: str) -> str:
    """``array`` as a PNG (PIL ``mode``: ``L`` or ``RGB``), atomically; returns the path."""
    from PIL import Image

    def write(tmp):
        Image.fromarray(np.ascontiguousarray(array), mode=mode).save(tmp, format="PNG")

    return atomic_write(os.fspath(path), write)


def write_prediction(base, mask: np.ndarray, fmt: str = "trainid") -> str:
    """Write the mask of one image (``base`` as in :func:`prediction_path`) in ``fmt``; returns the path."""
    return write_png(prediction_path(base, fmt), encode_prediction(mask, fmt), "L")
