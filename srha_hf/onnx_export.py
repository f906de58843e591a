"""ONNX export of the eval forward (``pixel_values -> logits``) with dynamic batch, height and width.

Uses torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it runs offline with
no extra package (the dynamo exporter needs ``onnxscript``). Every op of the eval forward exports:
style elimination's unbiased ``std`` (a reduction whose ``n - 1`` is computed from the runtime shape),
adaptive average pooling and the ``align_corners=True`` bilinear upsampling (``Resize`` with
``coordinate_transformation_mode="align_corners"``), all with shapes taken from the input at run time.

The exported file is checked against PyTorch with onnxruntime on the CPU at input sizes other than the
traced one before it is moved into place, and carries the model's labels, config and image-processor
settings as ONNX metadata (``scripts/predict.py`` reads them).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write
from .version import __version__

__all__ = ["ExportCheckError", "check_onnx", "export_onnx"]

DEFAULT_TRACE_SIZE = (128, 160)
DEFAULT_CHECK_SIZES = ((96, 136), (150, 212))


class ExportCheckError(RuntimeError):
    """The exported model's logits differ from PyTorch's by more than the tolerance."""


class LogitsOnly(nn.Module):
    """``pixel_values -> logits`` of an eval-mode semantic-segmentation model (what is exported)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values, return_dict=True)
        return out.logits if hasattr(out, "logits") else out[0]


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    return stack


def _metadata(model, processor, source: Optional[str]) -> Dict[str, str]:
    config = getattr(model, "config", None)
    meta = {"producer": f"srha_hf {__version__}", "exported_from": str(source or "")}
    if config is not None:
        num_labels = int(config.num_labels)
        meta["num_labels"] = str(num_labels)
        meta["id2label"] = json.dumps({str(i): str(config.id2label.get(i, i)) for i in range(num_labels)})
        meta["model_type"] = str(getattr(config, "model_type", ""))
        if getattr(config, "backbone", None):
            meta["backbone"] = str(config.backbone)
        meta["config"] = config.to_json_string(use_diff=False)
    if processor is not None:
        meta["preprocessor_config"] = processor.to_json_string()
    return meta


def check_onnx(model: nn.Module, onnx_path: str, sizes: Sequence[Tuple[int, int]] = DEFAULT_CHECK_SIZES,
               *, batch_sizes: Optional[Sequence[int]] = None, seed: int = 0, threads: Optional[int] = None) -> list:  # fmt: skip
    """Max absolute difference between onnxruntime (CPU) and PyTorch logits on random inputs, one
    entry per size: ``[{"shape": [B, 3, H, W], "max_abs_diff": float}, ...]``. By default the last
    size is run with batch 2, the others with batch 1."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    wrapper = LogitsOnly(model).eval()
    batch_sizes = list(batch_sizes or [1] * (len(sizes) - 1) + [2])
    generator = torch.Generator().manual_seed(seed)
    results = []
    for (h, w), b in zip(sizes, batch_sizes):
        x = torch.randn(b, 3, int(h), int(w), generator=generator)
        with torch.inference_mode():
            expected = wrapper(x).float().numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(f"onnxruntime logits have shape {got.shape} for input {tuple(x.shape)}, PyTorch {expected.shape}")
        results.append({"shape": list(x.shape), "max_abs_diff": float(np.abs(got - expected).max())})
    return results


def export_onnx(
    model: nn.Module,
    output,
    *,
    processor=None,
    opset: int = 17,
    trace_size: Tuple[int, int] = DEFAULT_TRACE_SIZE,
    check: bool = True,
    check_sizes: Sequence[Tuple[int, int]] = DEFAULT_CHECK_SIZES,
    atol: float = 1e-4,
    source: Optional[str] = None,
    threads: Optional[int] = None,
) -> dict:
    """Export ``model``'s eval forward to ``output`` (input ``pixel_values`` ``(B, 3, H, W)``, output
    ``logits`` ``(B, num_labels, H, W)``; B, H and W dynamic). With ``check`` the file is compared with
    PyTorch by onnxruntime at ``check_sizes`` and refused (:class:`ExportCheckError`, nothing written)
    if the logits differ by more than ``atol``. Written atomically. Returns a report dict."""
    import onnx

    output = os.fspath(output)
    head = getattr(getattr(model, "config", None), "decode_head", None)
    if head == "mask2former" and opset < 16:  # the deformable attention samples with GridSample (opset 16)
        raise ValueError(f"a Mask2Former model exports with opset >= 16 (GridSample), got opset {opset}")
    model = model.float().cpu().eval()
    wrapper = LogitsOnly(model).eval()
    dummy = torch.randn(1, 3, int(trace_size[0]), int(trace_size[1]), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    timing: Dict[str, float] = {}
    checks: list = []

    def write(tmp: str) -> None:  # the file reaches `output` only if export, check and comparison pass
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                wrapper,
                (dummy,),
                tmp,
                input_names=["pixel_values"],
                output_names=["logits"],
                dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"},
                              "logits": {0: "batch", 2: "height", 3: "width"}},  # fmt: skip
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(tmp)
        for key, value in _metadata(model, processor, source).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        timing["export"] = time.perf_counter() - start
        checks.extend(check_onnx(model, tmp, check_sizes, threads=threads) if check else [])
        worst = max((c["max_abs_diff"] for c in checks), default=None)
        if worst is not None and not worst < atol:
            raise ExportCheckError(
                f"onnxruntime and PyTorch logits differ by up to {worst:.3g} (tolerance {atol:g}): "
                + ", ".join(f"{c['shape']}: {c['max_abs_diff']:.3g}" for c in checks)
            )

    atomic_write(output, write)
    export_seconds = timing["export"]
    return {
        "output": output,
        "opset": opset,
        "trace_size": list(trace_size),
        "dynamic_axes": ["batch", "height", "width"],
        "export_seconds": round(export_seconds, 2),
        "size_mb": round(os.path.getsize(output) / 2**20, 1),
        "checks": checks,
        "max_abs_diff": max((c["max_abs_diff"] for c in checks), default=None),
        "atol": atol,
    }
