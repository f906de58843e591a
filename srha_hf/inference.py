"""Prediction on image files: what ``scripts/predict.py`` runs.

``load_segmenter(name)`` (:mod:`srha_hf.segmenters`, re-exported here) opens a model folder, a Hub repo id
or an exported ``.onnx`` file. ``predict_files(segmenter, inputs, output_dir)`` writes, per image, the mask (8-bit grey PNG: train IDs
``0..num_labels-1``, or Cityscapes label IDs with ``prediction_format="cityscapes"``; see
:mod:`srha_hf.prediction_files`), the mask in the Cityscapes palette and an overlay on the image (train-ID
format only), in batches of equally sized images, with a progress bar. An unreadable input is reported and
skipped; the rest is still processed and the run ends with a summary (also written as
``summary.json``). Every file is written atomically (temporary file, then rename). ``predict_image``
is the same prediction for one image in memory (what ``scripts/app.py`` shows).
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .atomic import write_json_atomic
from .prediction_files import TRAINID_SUFFIX, check_prediction_format, write_png, write_prediction
from .segmenters import ModelLoadError, OnnxSegmenter, TorchSegmenter, load_segmenter, resolve_device
from .visualization import colorize, overlay, palette_for

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MASK_SUFFIX = TRAINID_SUFFIX
COLOR_SUFFIX = "_color.png"
OVERLAY_SUFFIX = "_overlay.png"

__all__ = [
    "IMAGE_EXTENSIONS",
    "InputItem",
    "ModelLoadError",
    "OnnxSegmenter",
    "TorchSegmenter",
    "check_image_options",
    "colorize",
    "collect_inputs",
    "load_segmenter",
    "overlay",
    "palette_for",
    "predict_files",
    "predict_image",
    "resolve_device",
]


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


@dataclass
class InputItem:
    path: Path
    stem: Path  # output path without suffix, relative to the output folder


@dataclass
class Collected:
    items: List[InputItem]
    skipped: List[Path] = field(default_factory=list)  # files without an image extension


def _inside(path: Path, folder: Optional[Path]) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def collect_inputs(input_path, output_dir=None) -> Collected:
    """An image file, or every image under a folder (recursively, sorted, hidden files and the output
    folder left out). Each input's outputs go to the same relative sub-folder of the output folder;
    two inputs with the same stem in one folder (``a.png``, ``a.jpg``) keep their extension in the name."""
    root = Path(input_path)
    out = Path(output_dir) if output_dir is not None else None
    if not root.exists():
        raise FileNotFoundError(f"input {root} does not exist")
    if root.is_file():
        return Collected([InputItem(root, Path(root.stem))])
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _inside(Path(dirpath) / d, out))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            (files if path.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(path)
    counts: Dict[Tuple[Path, str], int] = {}
    for path in files:
        key = (path.parent, path.stem)
        counts[key] = counts.get(key, 0) + 1
    items = []
    for path in files:
        rel = path.relative_to(root)
        stem = path.stem if counts[(path.parent, path.stem)] == 1 else path.name.replace(".", "_")
        items.append(InputItem(path, rel.parent / stem))
    return Collected(items, skipped)


def read_image(path: Path):
    """The image as RGB PIL image (fully decoded); raises ``ValueError`` saying what is wrong otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError as exc:
        raise ValueError("not a readable image (PIL cannot identify its format)") from exc
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot decode image ({type(exc).__name__}: {exc})") from exc


def check_image_options(resize: Optional[Sequence[int]], max_size: Optional[int], alpha: float = 0.5) -> None:
    """The ``--resize``, ``--max_size`` and ``--alpha`` options of ``scripts/predict.py`` and ``scripts/app.py``:
    a ``ValueError`` naming the flag when one is out of range or both sizes are given."""
    if resize and min(resize) < 1:
        raise ValueError(f"--resize must be two positive sizes, got {list(resize)}")
    if resize and max_size:
        raise ValueError("give --resize or --max_size, not both")
    if max_size is not None and max_size < 1:
        raise ValueError(f"--max_size must be >= 1, got {max_size}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {alpha}")


def input_size(size: Tuple[int, int], resize: Optional[Sequence[int]] = None, max_size: Optional[int] = None):
    """The model's input ``(height, width)`` for an image of ``size``: ``resize`` as given, or scaled
    down (aspect kept) so that the longer side is at most ``max_size``; else unchanged."""
    h, w = size
    if resize:
        return int(resize[0]), int(resize[1])
    if max_size and max(h, w) > max_size:
        scale = max_size / max(h, w)
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    return h, w


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def write_json(path, data) -> str:
    """Strict JSON (NaN as null), atomically."""
    return write_json_atomic(path, data, strict=True, sort_keys=False)


def _write_outputs(item: InputItem, output_dir: Path, image, mask: np.ndarray, num_labels: int, alpha: float,
                   write_color: bool, write_overlay: bool, fmt: str = "trainid") -> Dict[str, str]:  # fmt: skip
    base = output_dir / item.stem
    written = {"mask": write_prediction(base, mask, fmt)}
    if write_color:
        written["color"] = write_png(base.with_name(base.name + COLOR_SUFFIX), colorize(mask, num_labels), "RGB")
    if write_overlay:
        blended = overlay(np.asarray(image), mask, alpha, num_labels)
        written["overlay"] = write_png(base.with_name(base.name + OVERLAY_SUFFIX), blended, "RGB")
    return written


def _prefetch(executor: Optional[ThreadPoolExecutor], items: Sequence[InputItem], depth: int) -> Iterator:
    """``(item, image or exception)`` in input order, decoding up to ``depth`` images ahead."""

    def load(item):
        try:
            return read_image(item.path)
        except Exception as exc:  # noqa: BLE001 - reported per file
            return exc

    if executor is None:
        for item in items:
            yield item, load(item)
        return
    queue: deque = deque()
    it = iter(items)
    for item in it:
        queue.append((item, executor.submit(load, item)))
        if len(queue) >= depth:
            break
    while queue:
        item, future = queue.popleft()
        nxt = next(it, None)
        if nxt is not None:
            queue.append((nxt, executor.submit(load, nxt)))
        yield item, future.result()


def _batches(loaded: Iterable, batch_size: int, resize, max_size, fail):
    """Group consecutive readable images with the same input and original size into batches;
    ``fail(path, message)`` gets each unreadable one."""
    group, key = [], None
    for item, image in loaded:
        if isinstance(image, BaseException):
            fail(item.path, str(image))
            continue
        original = (image.height, image.width)
        target = input_size(original, resize, max_size)
        k = (original, target)
        if group and (k != key or len(group) >= batch_size):
            yield key, group
            group = []
        key = k
        group.append((item, image))
    if group:
        yield key, group


def _preprocess(processor, images, target, original) -> torch.Tensor:
    kwargs = {"return_tensors": "pt"}
    if target != original:
        kwargs.update(do_resize=True, size={"height": target[0], "width": target[1]})
    return processor(images, **kwargs)["pixel_values"]


def predict_image(segmenter, image, *, resize: Optional[Sequence[int]] = None, max_size: Optional[int] = None) -> np.ndarray:
    """The ``(H, W)`` uint8 train-ID mask of one image (a PIL image or an ``(H, W, 3)`` uint8 RGB array) at
    the image's own size: exactly what :func:`predict_files` writes for it (same preprocessing, same
    ``resize`` / ``max_size`` handling, same forward)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3) uint8 RGB, got shape {image.shape} and dtype {image.dtype}")
        image = Image.fromarray(image, mode="RGB")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    original = (image.height, image.width)
    return _predict_group(segmenter, [image], input_size(original, resize, max_size), original)[0]


def _predict_group(segmenter, images, target, original) -> np.ndarray:
    """``(B, H, W)`` uint8 masks at ``original`` size of images that share ``original`` and model input ``target``."""
    pixels = _preprocess(segmenter.processor, images, target, original)
    return segmenter.predict(pixels, original).numpy().astype(np.uint8)


class _OutputWriter:
    """Writes each predicted image's files (in a thread pool when ``num_workers > 0``) and keeps, in input
    order, the records of the images written and of the failures, advancing the progress bar per image."""

    def __init__(self, num_workers: int, bar):
        self.pool = ThreadPoolExecutor(num_workers, thread_name_prefix="srha-write") if num_workers > 0 else None
        self.bar = bar
        self.pending: deque = deque()
        self.outputs: List[dict] = []
        self.failures: List[dict] = []

    def fail(self, path, message: str) -> None:
        self.failures.append({"path": str(path), "error": message})
        self.bar.update(1)

    def submit(self, record: dict, *args) -> None:
        """Write ``_write_outputs(*args)`` for the image of ``record``."""
        if self.pool is not None:
            self.pending.append((record, self.pool.submit(_write_outputs, *args)))
            return
        try:
            self.pending.append((record, _write_outputs(*args)))
        except Exception as exc:  # noqa: BLE001 - reported per file
            self.fail(record["input"], f"cannot write outputs: {type(exc).__name__}: {exc}")

    def settle(self, limit: int) -> None:
        """Wait for the oldest writes until at most ``limit`` are in flight."""
        while len(self.pending) > limit:
            record, result = self.pending.popleft()
            try:
                record.update(result.result() if isinstance(result, Future) else result)
            except Exception as exc:  # noqa: BLE001 - reported per file
                self.fail(record["input"], f"cannot write outputs: {type(exc).__name__}: {exc}")
                continue
            self.outputs.append(record)
            self.bar.update(1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _predict_and_write(segmenter, group, original, target, output_dir: Path, options: tuple, writer: _OutputWriter):
    """One batch of equally sized images: forward, then each image's files handed to ``writer``."""
    images = [image for _, image in group]
    try:
        masks = _predict_group(segmenter, images, target, original)
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory on one huge image
        for item, _ in group:
            writer.fail(item.path, f"prediction failed: {type(exc).__name__}: {exc}")
        return
    for (item, image), mask in zip(group, masks):
        record = {
            "input": str(item.path),
            "size": [original[0], original[1]],
            "model_input_size": [target[0], target[1]],
            "classes": [segmenter.id2label.get(int(c), str(c)) for c in np.unique(mask)],
        }
        writer.submit(record, item, output_dir, image, mask, *options)


def predict_files(
    segmenter,
    items: Sequence[InputItem],
    output_dir,
    *,
    batch_size: int = 1,
    resize: Optional[Sequence[int]] = None,
    max_size: Optional[int] = None,
    alpha: float = 0.5,
    write_color: bool = True,
    write_overlay: bool = True,
    num_workers: int = 2,
    progress: bool = True,
    prediction_format: str = "trainid",
) -> dict:
    """Predict every item and write its outputs under ``output_dir``; returns the summary (also written
    to ``output_dir/summary.json``): per image its output files and predicted classes, and the
    failures (unreadable inputs, failed forwards or writes) with their reasons.

    ``prediction_format`` is ``"trainid"`` (default) or ``"cityscapes"`` (label IDs for the official
    evaluation and the benchmark server, :mod:`srha_hf.prediction_files`); the cityscapes format writes
    the mask only (no colour mask, no overlay), since the server wants one PNG per image."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_prediction_format(prediction_format, segmenter.num_labels)
    if prediction_format == "cityscapes":
        write_color = write_overlay = False
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = (segmenter.num_labels, alpha, write_color, write_overlay, prediction_format)
    start = time.perf_counter()
    bar = tqdm(total=len(items), desc="predict", unit="img", disable=not progress, dynamic_ncols=True)
    reader = ThreadPoolExecutor(num_workers, thread_name_prefix="srha-read") if num_workers > 0 else None
    writer = _OutputWriter(num_workers, bar)
    try:
        loaded = _prefetch(reader, items, depth=max(2, batch_size * 2))
        for (original, target), group in _batches(loaded, batch_size, resize, max_size, writer.fail):
            _predict_and_write(segmenter, group, original, target, output_dir, options, writer)
            writer.settle(limit=2 * max(1, num_workers) + batch_size)
        writer.settle(limit=0)
    finally:
        if reader is not None:
            reader.shutdown(wait=True)
        writer.close()
        bar.close()
    seconds = time.perf_counter() - start
    summary = {
        "model": segmenter.name,
        "backend": segmenter.backend,
        "device": str(segmenter.device),
        "output_dir": str(output_dir),
        "format": prediction_format,
        "num_inputs": len(items),
        "num_predicted": len(writer.outputs),
        "num_failed": len(writer.failures),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(writer.outputs) / seconds, 4) if seconds > 0 else None,
        "outputs": writer.outputs,
        "failures": writer.failures,
    }
    write_json(str(output_dir / "summary.json"), summary)
    return summary
