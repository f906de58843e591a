"""int8 quantisation of an exported ONNX model with ONNX Runtime (docs/inference.md "Deploy").

Two modes, both ONNX Runtime's own tools (``onnxruntime.quantization``):

* ``static`` (the default when calibration images are given): ``quantize_static`` in QDQ format, int8
  weights (per output channel by default) and uint8 activations whose ranges are calibrated by running
  the float model on the user's images, preprocessed exactly as ``srha-predict`` preprocesses them (the
  image processor saved in the file's metadata). On CPUs with VNNI (and on ARM) ONNX Runtime runs the
  quantised convolutions and matrix products as integer kernels.
* ``dynamic``: ``quantize_dynamic``, int8 weights and activations quantised on the fly, for when no
  calibration images are at hand (static does not apply). For convolutional networks ONNX Runtime's
  dynamic convolution (``ConvInteger``) is usually slower than float: the export tool says so.

Before quantising, the float model goes through ONNX Runtime's recommended pre-processing
(``quant_pre_process``: symbolic shape inference and graph optimisation), so that the quantiser sees fused
convolutions. The written file keeps the float file's metadata (labels, config, image processor) and adds
``quantization``: a JSON record of how it was quantised (mode, format, types, per-channel, calibration
method, the calibration folder and how many images, onnxruntime's version).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from .atomic import atomic_write

__all__ = ["CALIBRATION_METHODS", "CalibrationError", "QUANTIZATION_KEY", "calibration_images", "compare_quantized", "quantization_record",
           "quantize_onnx"]

QUANTIZATION_KEY = "quantization"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
MODES = ("static", "dynamic")


class CalibrationError(ValueError):
    """The calibration folder is missing, empty or holds an unreadable image (the message names it)."""


def calibration_images(folder, num_images: Optional[int] = 100) -> List[Path]:
    """The first ``num_images`` images under ``folder`` in ``srha-predict``'s order (recursive, sorted)."""
    from .inference import collect_inputs

    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"--calibration {root}: not a folder of images")
    items = collect_inputs(root).items
    if not items:
        raise CalibrationError(f"--calibration {root}: no images found (expected .png, .jpg, ... files)")
    paths = [item.path for item in items]
    paths = paths[: int(num_images)] if num_images else paths
    for path in paths:  # a header check, so that a bad file stops the tool before the export and calibration
        _check_image(path)
    return paths


def _check_image(path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a damaged file
        raise CalibrationError(f"calibration image {path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _pixel_values(path: Path, processor, max_size: Optional[int]) -> np.ndarray:
    """One image preprocessed as ``srha-predict`` does it: ``(1, 3, H, W)`` float32."""
    from .inference import _preprocess, input_size, read_image

    try:
        image = read_image(path)
    except ValueError as exc:
        raise CalibrationError(f"calibration image {path}: {exc}") from None
    original = (image.height, image.width)
    return _preprocess(processor, [image], input_size(original, None, max_size), original).numpy().astype(np.float32)


def _reader(paths: Sequence[Path], input_name: str, processor, max_size: Optional[int], progress: bool):
    """An ``onnxruntime.quantization.CalibrationDataReader`` that loads one image per call (no image is
    held longer than its forward)."""
    from onnxruntime.quantization import CalibrationDataReader
    from tqdm.auto import tqdm

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.bar = tqdm(total=len(paths), desc="calibrate", unit="img", disable=not progress)
            self.items: Iterator[Path] = iter(paths)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            path = next(self.items, None)
            if path is None:
                self.bar.close()
                return None
            try:
                pixels = _pixel_values(path, processor, max_size)
            except CalibrationError:
                self.bar.close()
                raise
            self.bar.update(1)
            return {input_name: pixels}

        def rewind(self):
            self.items = iter(paths)

    return Reader()


def quantization_record(source) -> Optional[dict]:
    """The ``quantization`` metadata of an ONNX file, given by path or as its metadata mapping (e.g.
    ``OnnxSegmenter.metadata``); None for a float file."""
    text = (source if isinstance(source, Mapping) else _metadata(source)).get(QUANTIZATION_KEY)
    return json.loads(text) if text else None


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantiser logs a warning (with a whole tensor type) through the root logger for every
    tensor whose type shape inference left open (e.g. Lite0's padding slices; they stay float): errors only."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _metadata(path_or_proto) -> Dict[str, str]:
    import onnx

    proto = path_or_proto if isinstance(path_or_proto, onnx.ModelProto) else onnx.load(str(path_or_proto), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _preprocessed(source: str, folder: str) -> tuple:
    """(path, note): the float model after ONNX Runtime's quantisation pre-processing, or the model as it
    is with the reason when the pre-processing fails on it."""
    from onnxruntime.quantization import quant_pre_process

    target = os.path.join(folder, "preprocessed.onnx")
    failures = []
    for skip_symbolic in (False, True):  # symbolic shape inference fails on some graphs (Lite0's padding)
        try:
            with _working_directory(folder):  # a failed symbolic inference leaves its model in the working directory
                quant_pre_process(os.path.abspath(source), target, skip_symbolic_shape=skip_symbolic)
            return target, "quant_pre_process" + (" (ONNX shape inference; symbolic inference failed)" if failures else "")
        except Exception as exc:  # noqa: BLE001 - onnxruntime's pre-processing raises assorted errors
            failures.append(f"{type(exc).__name__}: {str(exc)[:160]}")
    return source, f"quant_pre_process failed ({'; '.join(failures)}); quantised as exported"


@contextlib.contextmanager
def _working_directory(folder: str):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _check_options(mode: str, calibration, calibration_method: str) -> None:
    if mode not in MODES:
        raise ValueError(f"quantisation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {calibration_method!r}")
    if mode == "static" and calibration is None:
        raise CalibrationError("static int8 quantisation needs calibration images (--calibration DIR); use dynamic without them")


def quantize_onnx(source, output, *, mode: str = "static", calibration=None, num_calibration: Optional[int] = 100,
                  calibration_method: str = "minmax", per_channel: bool = True, processor=None,
                  max_size: Optional[int] = None, progress: bool = True) -> dict:  # fmt: skip
    """Quantise the float ONNX file ``source`` to int8 and write it atomically to ``output``.

    ``mode="static"`` calibrates on the first ``num_calibration`` images under ``calibration`` (a folder),
    preprocessed by ``processor`` (default: the image processor in ``source``'s metadata) and, with
    ``max_size``, resized as ``srha-predict --max_size`` does; ``"dynamic"`` needs no images. Returns the
    record also stored in the file's ``quantization`` metadata."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    _check_options(mode, calibration, calibration_method)
    source = os.fspath(source)
    float_proto = onnx.load(source, load_external_data=False)
    meta, input_name = _metadata(float_proto), float_proto.graph.input[0].name  # pre-processing keeps the input
    del float_proto
    if QUANTIZATION_KEY in meta:
        raise ValueError(f"{source} is already quantised ({meta[QUANTIZATION_KEY]}); quantise the float export")
    paths = calibration_images(calibration, num_calibration) if mode == "static" else []
    if processor is None:
        from .segmenters import processor_from_metadata

        processor = processor_from_metadata(meta)
    record = {"dtype": "int8", "mode": mode, "format": "QDQ" if mode == "static" else "QOperator",
              "weight_type": "int8", "activation_type": "uint8" if mode == "static" else "uint8 (dynamic ranges)",
              "per_channel": bool(per_channel), "onnxruntime": onnxruntime.__version__}  # fmt: skip
    if mode == "static":
        record.update(calibration_method=calibration_method, calibration_dir=str(calibration),
                      calibration_images=len(paths), calibration_max_size=max_size)  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="srha-quantize-") as folder, _quiet_root_logger():
        prepared, record["preprocessing"] = _preprocessed(source, folder)
        quantized = os.path.join(folder, "quantized.onnx")
        if mode == "static":
            method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                      "entropy": CalibrationMethod.Entropy}[calibration_method]  # fmt: skip
            quantize_static(prepared, quantized, _reader(paths, input_name, processor, max_size, progress),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=method)  # fmt: skip
        else:
            quantize_dynamic(prepared, quantized, per_channel=per_channel, weight_type=QuantType.QInt8)
        record["seconds"] = round(time.perf_counter() - start, 1)
        proto = onnx.load(quantized)
        onnx.helper.set_model_props(proto, {**meta, QUANTIZATION_KEY: json.dumps(record)})  # replaces the quantiser's
        atomic_write(os.fspath(output), lambda tmp: onnx.save(proto, tmp))
    return record


def compare_quantized(float_path, int8_path, *, images: Sequence[Path] = (), processor=None, sizes=((96, 136),),
                      max_size: Optional[int] = None, threads: Optional[int] = None, seed: int = 0) -> dict:  # fmt: skip
    """How far the int8 file's output is from the float file's: on ``images`` (preprocessed as
    ``srha-predict`` does; what the check uses when calibration images exist) or else on random inputs
    at ``sizes``. Returns ``{"inputs": "images"|"random", "checks": [{"shape", "max_abs_diff",
    "pixel_agreement"}], "pixel_agreement": mean over the checks}``: the int8 model is not expected to
    match to a float tolerance, so nothing is refused; the agreement of the argmax maps is the number to read."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    sessions = [ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"]) for p in (float_path, int8_path)]
    name = sessions[0].get_inputs()[0].name
    if images:
        if processor is None:
            from .segmenters import processor_from_metadata

            processor = processor_from_metadata(sessions[0].get_modelmeta().custom_metadata_map)
        inputs = [_pixel_values(Path(p), processor, max_size) for p in images]
    else:
        rng = np.random.default_rng(seed)
        inputs = [rng.standard_normal((1, 3, int(h), int(w))).astype(np.float32) for h, w in sizes]
    checks = []
    for x in inputs:
        reference, quantized = (s.run(None, {name: x})[0] for s in sessions)
        checks.append({"shape": list(x.shape), "max_abs_diff": float(np.abs(quantized - reference).max()),
                       "pixel_agreement": float((quantized.argmax(1) == reference.argmax(1)).mean())})  # fmt: skip
    return {"inputs": "images" if images else "random", "checks": checks,
            "pixel_agreement": float(np.mean([c["pixel_agreement"] for c in checks]))}  # fmt: skip
