"""Reading the benchmarks' files: images as PIL RGB, and one decoder per label encoding (docs/method.md
§6), each a lookup table of ``labels.py`` applied to the raw array, plus the image-header reads that
give sizes without decoding pixels. Every failure names the file.

8-bit RGB and 8-bit greyscale PNGs (GTAV and Cityscapes images, GTAV RGB labels, grey index labels) are
decoded by libspng (the ``pyspng`` package) when it is installed: the same pixels as PIL in about half
the time (``benchmarks/bench_png_decode.py``). Every other file (palette PNGs, whose indices are kept,
16-bit or alpha PNGs, JPEGs), a file libspng rejects, or any file when ``pyspng`` is missing is read
by PIL as before."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import labels as L
from .errors import UnreadableFileError

try:
    import pyspng as _spng
except ImportError:  # optional at run time: PIL reads everything then
    _spng = None

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _RGB = 0, 2  # PNG colour types (IHDR byte 25)


def png_decoder() -> str:
    """The decoder of 8-bit RGB / greyscale PNGs: ``"libspng"`` or ``"PIL"``."""
    return "PIL" if _spng is None else "libspng"


def _fast_png(path: str, colour_type: int):
    """The pixels of an 8-bit PNG of ``colour_type`` (``_RGB``: (H, W, 3), ``_GREY``: (H, W) uint8) read by
    libspng, or None when the file is not such a PNG, libspng is missing or fails on it: the caller then
    reads it with PIL, which also raises the errors that name the file."""
    if _spng is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(33)  # signature, IHDR length and type, width, height, bit depth, colour type, ...
            if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR" or head[24] != 8 or head[25] != colour_type:
                return None
            data = head + f.read()
        return _spng.load(data, "RGB" if colour_type == _RGB else "L")
    except Exception:  # unreadable or corrupt: PIL decides and reports
        return None


def _open(path: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise UnreadableFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def read_image(path: str) -> Image.Image:
    """An image file as a PIL RGB image."""
    pixels = _fast_png(path, _RGB)
    if pixels is not None:
        return Image.fromarray(pixels)
    image = _open(path)
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_gtav_label(path: str) -> np.ndarray:
    """GTAV: palette or RGB PNG -> train IDs by the colour rule of docs/method.md §6.2 (unknown colours -> 255).

    A palette PNG is decoded without expanding it to RGB: its (at most 256) palette colours are
    mapped once and the pixel indices go through that 256-entry table."""
    rgb = _fast_png(path, _RGB)
    if rgb is not None:
        return L.gtav_rgb_lut()[L.pack_rgb(rgb)]
    image = _open(path)
    if image.mode == "P":
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        return L.palette_to_trainid_lut(palette)[np.asarray(image)]
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB") if image.mode == "RGBA" else image)
        return L.gtav_rgb_lut()[L.pack_rgb(rgb)]
    raise UnreadableFileError(
        f"{path}: GTAV label has PIL mode {image.mode!r}; expected a palette ('P') or RGB colour PNG"
    )


def _read_index_png(path: str, dataset: str, what: str) -> np.ndarray:
    index = _fast_png(path, _GREY)
    if index is not None:
        return index
    image = _open(path)
    if image.mode not in ("L", "P"):
        raise UnreadableFileError(
            f"{path}: {dataset} label has PIL mode {image.mode!r}; expected a single-channel 8-bit "
            f"PNG of {what}"
        )
    return np.asarray(image)


def read_raw_label(name: str, path: str) -> np.ndarray:
    """The label file's raw values before mapping: GTAV packed RGB codes (int32), Synthia channel 0
    (uint16), the class-index PNG of the others (uint8)."""
    if name == "gtav":
        rgb = _fast_png(path, _RGB)
        if rgb is not None:
            return L.pack_rgb(rgb)
        image = _open(path)
        if image.mode == "P":
            palette = np.zeros((256, 3), dtype=np.uint8)
            pal = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
            palette[: len(pal)] = pal
            return L.pack_rgb(palette[np.asarray(image)])
        return L.pack_rgb(np.asarray(image.convert("RGB")))
    if name == "synthia":
        return read_synthia_channel0(path)
    return _read_index_png(path, name, "class indices")


def read_synthia_channel0(path: str) -> np.ndarray:
    """Channel 0 (red) of a Synthia label PNG at its full 16-bit depth.

    PIL reduces 16-bit RGB PNGs to 8 bits by dropping the low byte, which turns every class id into 0,
    so OpenCV reads these files (it returns channels in BGR order, hence index 2 for red)."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise UnreadableFileError(f"cannot read {path}: not a PNG that OpenCV can decode")
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[..., 2]
    raise UnreadableFileError(f"{path}: Synthia label has shape {array.shape}; expected H x W x 3")


def decode_synthia_label(path: str) -> np.ndarray:
    # docs/method.md §6.3: cast to uint8 (ids <= 22), then map.
    return L.SYNTHIA_LUT[read_synthia_channel0(path).astype(np.uint8)]


def decode_cityscapes_label(path: str) -> np.ndarray:
    return L.CITYSCAPES_LUT[_read_index_png(path, "Cityscapes", "labelIds (0..33)")]


def decode_acdc_label(path: str) -> np.ndarray:
    # docs/method.md §6.7: ACDC's *_gt_labelIds.png hold Cityscapes labelIds, decoded by the Cityscapes table.
    return L.CITYSCAPES_LUT[_read_index_png(path, "ACDC", "Cityscapes labelIds (0..33)")]


def decode_bdd100k_label(path: str) -> np.ndarray:
    return L.BDD_LUT[_read_index_png(path, "BDD-100K", "train IDs (0..18, 255)")]


def decode_mapillary_label(path: str) -> np.ndarray:
    return L.MAPILLARY_LUT[_read_index_png(path, "Mapillary", "v1.2 class indices (0..65)")]


def image_size(path: str) -> tuple[int, int]:
    """(W, H) from the file header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise
    except Exception as err:
        raise UnreadableFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def read_sizes(paths: Sequence[str], num_threads: int = 8, progress: bool = False, desc: str = "") -> list[tuple[int, int]]:
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(num_threads, len(paths)))) as pool:
        results = pool.map(image_size, paths, chunksize=64)
        if progress:
            results = tqdm(results, total=len(paths), desc=desc or "reading sizes")
        return list(results)
