"""The models that ``scripts/predict.py`` and ``scripts/app.py`` run: a PyTorch model or an ONNX file.

``load_segmenter(name)`` opens a model folder written by ``save_pretrained``, a Hub repo id (through the
Hugging Face cache; offline with ``HF_HUB_OFFLINE=1`` once it is there) or an exported ``.onnx`` file
(onnxruntime) as a segmenter: ``predict(pixel_values, size)`` gives the ``(B, H, W)`` class maps, and
``processor``, ``num_labels``, ``id2label``, ``device``, ``backend`` and ``name`` describe it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .data.labels import CLASS_NAMES, NUM_CLASSES
from .evaluation import predict
from .image_processing_srha import SRHAImageProcessor

__all__ = ["ModelLoadError", "OnnxModule", "OnnxSegmenter", "TorchSegmenter", "load_segmenter", "processor_from_metadata", "resolve_device"]


class ModelLoadError(RuntimeError):
    """``--model`` could not be opened as a model folder, a Hub repo id or an ONNX file."""


def resolve_device(device: Optional[str]) -> torch.device:
    """``auto`` (or None) picks CUDA when available, else CPU; anything else is checked."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device {device!r} is not a device (expected auto, cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: CUDA is not available on this machine (use cpu or auto)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device}: MPS is not available on this machine (use cpu or auto)")
    return dev


def _id2label(config_or_dict, num_labels: int) -> Dict[int, str]:
    raw = getattr(config_or_dict, "id2label", config_or_dict) or {}
    names = {int(k): str(v) for k, v in dict(raw).items()}
    if len(names) != num_labels or all(v == f"LABEL_{k}" for k, v in names.items()):
        if num_labels == NUM_CLASSES:
            return dict(enumerate(CLASS_NAMES))
        return {i: names.get(i, str(i)) for i in range(num_labels)}
    return names


def _default_processor():
    return SRHAImageProcessor()


class TorchSegmenter:
    """A PyTorch semantic-segmentation model (eval mode, on ``device``) and its image processor."""

    backend = "pytorch"

    def __init__(self, model, processor=None, device="cpu", mixed_precision: Optional[str] = None, name: str = ""):
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.processor = processor if processor is not None else _default_processor()
        self.mixed_precision = mixed_precision
        self.num_labels = int(model.config.num_labels)
        self.id2label = _id2label(model.config, self.num_labels)
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__

    @torch.inference_mode()
    def predict(self, pixel_values: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """``(B, H, W)`` int64 class maps at ``size`` (CPU)."""
        return predict(self.model, pixel_values.to(self.device), size=size, mixed_precision=self.mixed_precision).cpu()


class OnnxSegmenter:
    """An ONNX model written by :func:`srha_hf.onnx_export.export_onnx`, run with onnxruntime."""

    backend = "onnxruntime"

    def __init__(self, path, processor=None, device: str = "cpu", threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelLoadError("running an .onnx model needs onnxruntime: pip install onnxruntime") from exc
        path = str(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        dev = str(device or "cpu")
        if dev in ("auto", "cpu"):
            providers = ["CPUExecutionProvider"]
            if dev == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
        elif dev.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelLoadError(f"--device {dev}: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider"]
        else:
            raise ModelLoadError(f"--device {dev} is not supported with an ONNX model (use cpu, cuda or auto)")
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime could not open {path}: {type(exc).__name__}: {exc}") from exc
        meta = self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.session.get_inputs()[0].name
        out_shape = self.session.get_outputs()[0].shape
        num_labels = meta.get("num_labels") or (out_shape[1] if isinstance(out_shape[1], int) else NUM_CLASSES)
        self.num_labels = int(num_labels)
        self.id2label = _id2label(json.loads(meta.get("id2label", "{}")), self.num_labels)
        self.processor = processor if processor is not None else processor_from_metadata(meta)
        self.device = torch.device("cuda" if providers[0] == "CUDAExecutionProvider" else "cpu")
        self.mixed_precision = None
        self.name = path

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        array = pixel_values.detach().cpu().float().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def predict(self, pixel_values: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        logits = self.logits(pixel_values)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)

    def config(self):
        """The model's :class:`~srha_hf.SRHAConfig` from the file's metadata (None if it has none)."""
        text = self.metadata.get("config")
        if not text:
            return None
        from .configuration_srha import SRHAConfig

        return SRHAConfig.from_dict(json.loads(text))

    def as_module(self) -> "OnnxModule":
        """This session as a parameter-free ``nn.Module`` (``model(pixel_values=x).logits``), so that the
        PyTorch evaluation (``srha_hf.evaluate_model``, ``srha-evaluate``) runs the ONNX file unchanged."""
        return OnnxModule(self)


class OnnxModule(torch.nn.Module):
    """An :class:`OnnxSegmenter` behind the model interface the evaluation uses: ``forward(pixel_values)``
    returns a ``SemanticSegmenterOutput`` with the file's logits; ``config`` is the config stored in the
    file (labels, backbone, head); ``onnx_path`` names the file."""

    def __init__(self, segmenter: OnnxSegmenter):
        super().__init__()
        self.segmenter = segmenter
        self.config = segmenter.config()
        self.onnx_path = segmenter.name

    def forward(self, pixel_values: torch.Tensor, **_):
        from transformers.modeling_outputs import SemanticSegmenterOutput

        return SemanticSegmenterOutput(logits=self.segmenter.logits(pixel_values))


def processor_from_metadata(meta: Dict[str, str]):
    """The image processor an exported ONNX file's metadata names (``preprocessor_config``), or the default
    SRHA processor when it names none (or another processor type)."""
    processor = _processor_from_json(meta["preprocessor_config"]) if meta.get("preprocessor_config") else None
    return processor if processor is not None else _default_processor()


def _processor_from_json(text: str):
    """The SRHA image processor saved in an ONNX file's metadata (None for another processor type)."""
    settings = json.loads(text)
    if settings.pop("image_processor_type", "SRHAImageProcessor") != "SRHAImageProcessor":
        return None
    settings.pop("processor_class", None)
    return SRHAImageProcessor(**settings)


def _processor_near(folder: Path):
    if (folder / "preprocessor_config.json").is_file():
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(str(folder))
    return None


def load_segmenter(
    name_or_path,
    *,
    device: Optional[str] = "auto",
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    mixed_precision: Optional[str] = None,
    threads: Optional[int] = None,
):
    """Open ``name_or_path``: a ``.onnx`` file (onnxruntime), a ``save_pretrained`` folder or a Hub repo
    id (``org/name``, loaded with ``AutoModelForSemanticSegmentation`` / ``AutoImageProcessor``; with
    ``HF_HUB_OFFLINE=1`` from the Hugging Face cache only). Failures raise :class:`ModelLoadError`."""
    import srha_hf  # noqa: F401 - registers the Auto classes

    name = os.fspath(name_or_path)
    if name.lower().endswith(".onnx"):
        path = Path(name)
        if not path.is_file():
            raise ModelLoadError(f"ONNX model {name} does not exist")
        return OnnxSegmenter(path, processor=_processor_near(path.parent), device=device or "cpu", threads=threads)

    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    local = Path(name)
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(
            f"{name} is not a model folder: no config.json in it (expected the output of save_pretrained: "
            "config.json + model.safetensors [+ preprocessor_config.json])"
        )
    if not local.exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):  # a path, not org/name
        raise ModelLoadError(f"model folder {name} does not exist")
    try:
        model = AutoModelForSemanticSegmentation.from_pretrained(name, revision=revision, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - transformers / huggingface_hub raise many types
        from huggingface_hub import constants

        offline = bool(constants.HF_HUB_OFFLINE)
        hint = (
            " (HF_HUB_OFFLINE is set: a Hub model must already be in the Hugging Face cache; fetch it once "
            "online, e.g. `hf download ORG/NAME`)"
            if offline and not local.exists()
            else ""
        )
        weights = sorted(local.glob("*.safetensors")) if local.is_dir() else []
        if type(exc).__name__ == "SafetensorError" and weights:  # name the file, not only the folder
            damaged = str(weights[0]) if len(weights) == 1 else f"a .safetensors file in {name}"
            hint += f" ({damaged} is truncated or damaged: save the model again with save_pretrained)"
        raise ModelLoadError(f"could not load model {name!r}: {type(exc).__name__}: {exc}{hint}") from exc
    try:
        processor = AutoImageProcessor.from_pretrained(name, revision=revision, cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - no preprocessor_config.json: the model's defaults
        processor = None
    return TorchSegmenter(model, processor, device=device, mixed_precision=mixed_precision, name=name)
