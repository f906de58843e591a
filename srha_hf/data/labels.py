"""The 19-class Cityscapes train-ID taxonomy and every per-dataset label lookup table (docs/method.md §6).

Everything here is plain data plus numpy lookup tables: decoding a label map is one fancy-indexing
operation, never a per-colour or per-pixel Python loop. Importing this module is cheap (numpy only).
"""

from __future__ import annotations

import functools

import numpy as np

#: The benchmarks, by the names every loader, recipe and script uses: the method's five and ACDC
#: (docs/method.md §6.7; Cityscapes labelIds, decoded by CITYSCAPES_LUT).
BENCHMARK_NAMES = ("gtav", "synthia", "cityscapes", "bdd100k", "mapillary", "acdc")
IGNORE_INDEX = 255
NUM_CLASSES = 19

#: docs/method.md §6.1, in train-ID order.
CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

#: docs/method.md §6.2: the Cityscapes colours of the 19 train IDs (also GTAV's label colours).
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)

ID2LABEL: dict[int, str] = dict(enumerate(CLASS_NAMES))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}


def _lut(mapping: dict[int, int], size: int = 256, default: int = IGNORE_INDEX) -> np.ndarray:
    """A uint8 lookup table of `size` entries: `mapping` where given, `default` elsewhere."""
    table = np.full(size, default, dtype=np.uint8)
    for key, value in mapping.items():
        if key < 0 or value < 0:  # docs/method.md §9 D8: negative ids (license plate) cannot occur in uint8
            continue
        table[key] = value
    return table


# --- Cityscapes (docs/method.md §6.4): labelIds -> train IDs ---------------------------------------------------
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_LUT: np.ndarray = _lut(CITYSCAPES_ID_TO_TRAINID)
# ... and back: train ID -> Cityscapes labelId, what the official evaluation and the benchmark server read;
# 255 (ignore) and any other value -> 0 ("unlabeled")
TRAINID_TO_CITYSCAPES_ID: dict[int, int] = {train_id: label_id for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items()}
TRAINID_TO_CITYSCAPES_LUT: np.ndarray = _lut(TRAINID_TO_CITYSCAPES_ID, default=0)

# --- BDD-100K (docs/method.md §6.5): already train IDs, identity for 0..18 and 255 -----------------------------
BDD_LUT: np.ndarray = _lut({i: i for i in range(NUM_CLASSES)})

# --- Synthia (docs/method.md §6.3): channel 0 of the 16-bit label PNG -> train IDs ----------------------------
SYNTHIA_ID_TO_TRAINID: dict[int, int] = {
    0: 255, 1: 10, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 13, 9: 7, 10: 11, 11: 18,
    12: 17, 13: 255, 14: 255, 15: 6, 16: 9, 17: 12, 18: 14, 19: 15, 20: 16, 21: 3, 22: 255,
}  # fmt: skip
SYNTHIA_NAMES: dict[int, str] = {
    0: "void", 1: "sky", 2: "building", 3: "road", 4: "sidewalk", 5: "fence", 6: "vegetation",
    7: "pole", 8: "car", 9: "traffic sign", 10: "pedestrian", 11: "bicycle", 12: "motorcycle",
    13: "parking-slot", 14: "road-work", 15: "traffic light", 16: "terrain", 17: "rider",
    18: "truck", 19: "bus", 20: "train", 21: "wall", 22: "lane-marking",
}  # fmt: skip
# The reference leaves values outside this table unchanged (docs/method.md §6.3); none occur in real Synthia
# labels. We map them to 255 instead so that a corrupt label can never reach the loss as a class
# index >= 19; `scripts/check_data.py` reports such values.
SYNTHIA_LUT: np.ndarray = _lut(SYNTHIA_ID_TO_TRAINID)

# --- Mapillary Vistas v1.2 (docs/method.md §6.6): 66 class indices -> train IDs -------------------------------
MAPILLARY_V12_NAMES: tuple[str, ...] = (
    "animal--bird", "animal--ground-animal", "construction--barrier--curb",
    "construction--barrier--fence", "construction--barrier--guard-rail",
    "construction--barrier--other-barrier", "construction--barrier--wall",
    "construction--flat--bike-lane", "construction--flat--crosswalk-plain",
    "construction--flat--curb-cut", "construction--flat--parking",
    "construction--flat--pedestrian-area", "construction--flat--rail-track",
    "construction--flat--road", "construction--flat--service-lane",
    "construction--flat--sidewalk", "construction--structure--bridge",
    "construction--structure--building", "construction--structure--tunnel", "human--person",
    "human--rider--bicyclist", "human--rider--motorcyclist", "human--rider--other-rider",
    "marking--crosswalk-zebra", "marking--general", "nature--mountain", "nature--sand",
    "nature--sky", "nature--snow", "nature--terrain", "nature--vegetation", "nature--water",
    "object--banner", "object--bench", "object--bike-rack", "object--billboard",
    "object--catch-basin", "object--cctv-camera", "object--fire-hydrant", "object--junction-box",
    "object--mailbox", "object--manhole", "object--phone-booth", "object--pothole",
    "object--street-light", "object--support--pole", "object--support--traffic-sign-frame",
    "object--support--utility-pole", "object--traffic-light", "object--traffic-sign--back",
    "object--traffic-sign--front", "object--trash-can", "object--vehicle--bicycle",
    "object--vehicle--boat", "object--vehicle--bus", "object--vehicle--car",
    "object--vehicle--caravan", "object--vehicle--motorcycle", "object--vehicle--on-rails",
    "object--vehicle--other-vehicle", "object--vehicle--trailer", "object--vehicle--truck",
    "object--vehicle--wheeled-slow", "void--car-mount", "void--ego-vehicle", "void--unlabeled",
)  # fmt: skip
MAPILLARY_ID_TO_TRAINID: dict[int, int] = {
    13: 0, 24: 0, 41: 0, 2: 1, 15: 1, 17: 2, 6: 3, 3: 4, 45: 5, 47: 5, 48: 6, 50: 7, 30: 8,
    29: 9, 27: 10, 19: 11, 20: 12, 21: 12, 22: 12, 55: 13, 61: 14, 54: 15, 58: 16, 57: 17, 52: 18,
}  # fmt: skip
MAPILLARY_LUT: np.ndarray = _lut(MAPILLARY_ID_TO_TRAINID)

# --- GTAV (docs/method.md §6.2): RGB colour -> train ID (the colour rule) -------------------------------------
# Colours are packed into one 24-bit integer r<<16 | g<<8 | b; a 2**24-entry uint8 table (16 MiB) is
# built lazily on first use so that importing this module stays cheap.
GTAV_COLOR_TO_TRAINID: dict[tuple[int, int, int], int] = {
    color: train_id for train_id, color in enumerate(CITYSCAPES_PALETTE)
}


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) int32 codes r<<16 | g<<8 | b."""
    rgb = np.asarray(rgb)
    r = rgb[..., 0].astype(np.int32)
    g = rgb[..., 1].astype(np.int32)
    b = rgb[..., 2].astype(np.int32)
    return (r << 16) | (g << 8) | b


@functools.cache
def gtav_rgb_lut() -> np.ndarray:
    """The 2**24-entry table mapping a packed RGB code to its GTAV train ID (255 elsewhere); built once
    (16 MiB) and read-only."""
    table = np.full(1 << 24, IGNORE_INDEX, dtype=np.uint8)
    colors = np.asarray(CITYSCAPES_PALETTE, dtype=np.uint8)
    table[pack_rgb(colors)] = np.arange(NUM_CLASSES, dtype=np.uint8)
    table.setflags(write=False)
    return table


def palette_to_trainid_lut(palette: np.ndarray) -> np.ndarray:
    """For a palette-mode label PNG: a 256-entry table mapping each palette index to the train ID of
    its colour under GTAV's colour rule (docs/method.md §6.2). `palette` is (N, 3) uint8, N <= 256."""
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[: len(palette)] = gtav_rgb_lut()[pack_rgb(palette)]
    return table

