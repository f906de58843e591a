"""Convert the authors' released checkpoints (docs/method.md §8.4) into ``save_pretrained`` model folders.

The authors' training code saves, per epoch, a dict with ``state_dict`` (the student's DDP state dict:
every key starts with ``module.``, then the parameter names of docs/method.md §1.2 / §1.5: ``layer0..layer4``
holding torchvision's modules, ``aspp`` with ``img_conv`` and ``features.0..3``, ``bot_fine``,
``bot_aspp``, ``final1``, ``final2``, ``dsn``), ``epoch``, ``mean_iu`` (always 0: docs/method.md §9 T4) and
``command`` (the training command line). :class:`~srha_hf.SRHAForSemanticSegmentation` uses those
names, so a conversion is:

1. read the file with ``torch.load(weights_only=True)`` (tensors and plain values only; numpy
   scalars, as older training code may store for ``mean_iu``, are allowed explicitly);
2. strip ``module.``; accept the two wrappings docs/method.md §1.5 leaves open: ``final2`` as a one-conv
   ``nn.Sequential`` (``final2.0.*``) and, for MobileNetV2, ``layer4`` as ``nn.Sequential(features[18])``
   (``layer4.0.0.*`` / ``layer4.0.1.*``). For ``--arch r50_m2f`` (the Mask2Former variant, saved by
   the authors' ``train_m2f.py``) the ResNet-50 keys are the same and the head's ``m2f_decoder.*`` keys
   are renamed to ``mask2former.*`` by :data:`M2F_RULES` (one rule per row of the mapping established
   against the reference head): the packed self-attention ``in_proj_weight`` / ``in_proj_bias`` of
   the 9 decoder layers are split into q / k / v, and the loss buffer ``criterion.empty_weight`` is
   dropped;
3. require an exact match with the model of ``--arch``: any missing, unexpected or mis-shaped tensor
   refuses the conversion, listing them (only BatchNorm ``num_batches_tracked`` counters, which do not
   affect inference, may be absent);
4. write config (``backbone_pretrained=None``, provenance in ``original_checkpoint``), safetensors
   weights, the image processor and a model card stating where the weights came from, to a temporary
   folder that is renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from tqdm.auto import tqdm

from .atomic import current_umask, publish_dir
from .configuration_srha import SRHAConfig
from .hub import render_conversion_card
from .image_processing_srha import SRHAImageProcessor
from .modeling_srha import SRHAForSemanticSegmentation

ARCHS: Dict[str, Optional[str]] = {
    "r50": "resnet50",
    "r101": "resnet101",
    "mobilenetv2": "mobilenetv2",
    "shufflenetv2": "shufflenetv2",
    "r50_m2f": "resnet50",  # the Mask2Former variant (docs/method.md §4), head keys mapped by M2F_RULES
}
#: The decode head of each arch (``deeplabv3plus`` unless named here).
ARCH_HEADS: Dict[str, str] = {"r50_m2f": "mask2former"}
ARCH_NAMES = {
    "r50": "DeepLabV3+ ResNet-50 (the authors' DeepR50V3PlusD)",
    "r101": "DeepLabV3+ ResNet-101 (the authors' DeepR101V3PlusD)",
    "mobilenetv2": "DeepLabV3+ MobileNetV2 D16 (the authors' DeepMobileNetV3PlusD)",
    "shufflenetv2": "DeepLabV3+ ShuffleNetV2 x1.0 D16 (the authors' DeepShuffleNetV3PlusD)",
    "r50_m2f": "ResNet-50 + Mask2Former (the authors' train_m2f.py model)",
}

__all__ = ["ARCHS", "ARCH_HEADS", "M2F_RULES", "CheckpointMismatchError", "map_m2f_key", "OriginalCheckpoint", "convert_original_checkpoint",
           "guess_arch", "map_original_state_dict", "read_original_checkpoint"]  # fmt: skip


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not match the model of the requested architecture."""

    def __init__(self, message: str, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


@dataclass
class OriginalCheckpoint:
    path: Path
    state_dict: Dict[str, torch.Tensor]
    epoch: Optional[int]
    mean_iu: Optional[float]
    command: Optional[str]
    sha256: str
    other_keys: List[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _numpy_safe_globals() -> list:
    """numpy scalar reconstruction (``mean_iu`` saved as ``np.float64``), under the module paths of
    numpy 1 and 2; nothing that can run arbitrary code."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return []
    core = getattr(np, "_core", None) or np.core
    allowed = [np.dtype, (core.multiarray.scalar, "numpy.core.multiarray.scalar"),
               (core.multiarray.scalar, "numpy._core.multiarray.scalar")]  # fmt: skip
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType"):
        dtype_cls = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_cls is not None:
            allowed.append(dtype_cls)
    return allowed


def _to_python(value):
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def read_original_checkpoint(path) -> OriginalCheckpoint:
    """Read an authors' ``.pth`` with ``torch.load(weights_only=True)``; a file that is not such a
    checkpoint raises ``ValueError`` saying what was found."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors of many kinds
        raise ValueError(
            f"cannot read {path} with torch.load(weights_only=True): {type(exc).__name__}: {str(exc).splitlines()[0]}. "
            "Only checkpoints holding tensors and plain values are accepted (no pickled objects)."
        ) from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a {type(raw).__name__}, expected the authors' checkpoint dict (state_dict, epoch, mean_iu, command)")
    if "state_dict" in raw:
        state = raw["state_dict"]
    elif raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state = raw  # a bare state dict
    else:
        raise ValueError(f"{path} has no 'state_dict' entry (top-level keys: {', '.join(map(str, raw)) or 'none'})")
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: 'state_dict' is {'empty' if isinstance(state, dict) else type(state).__name__}, expected a dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: state_dict entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    meta = raw if raw is not state else {}
    epoch = _to_python(meta.get("epoch"))
    mean_iu = _to_python(meta.get("mean_iu"))
    command = meta.get("command")
    return OriginalCheckpoint(
        path=path,
        state_dict=dict(state),
        epoch=int(epoch) if isinstance(epoch, (int, float)) else epoch,
        mean_iu=float(mean_iu) if isinstance(mean_iu, (int, float)) else mean_iu,
        command=str(command) if command is not None else None,
        sha256=_sha256(path),
        other_keys=sorted(str(k) for k in meta if k not in ("state_dict", "epoch", "mean_iu", "command")),
    )


# --------------------------------------------------------------------------------------------------
# Key mapping
# --------------------------------------------------------------------------------------------------

# Wrappings of a module that docs/method.md §1.5 leaves open (see the module docstring).
_ALIASES = {
    None: [(re.compile(r"^final2\.0\.(weight|bias)$"), r"final2.\1")],
    "mobilenetv2": [(re.compile(r"^layer4\.0\.([01])\.(.+)$"), r"layer4.\1.\2")],
}


def _strip_prefix(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


# The authors' Mask2Former head (``m2f_decoder.``, detectron2-style names) -> ``mask2former.`` of
# :class:`~srha_hf.heads.mask2former.Mask2FormerHead` (transformers' module names). One rule per row of
# the mapping table; ``{qkv}`` marks the packed self-attention projection, split in three along dim 0.
_ENC = r"pixel_decoder\.transformer\.encoder\.layers\.(\d+)\."
_DEC = "transformer_module.decoder.layers.{}."
M2F_RULES: List[Tuple[str, str]] = [
    (r"pixel_decoder\.input_proj\.(\d+)\.(\d+)\.(.+)", "pixel_decoder.input_projections.{}.{}.{}"),
    (r"pixel_decoder\.transformer\.level_embed", "pixel_decoder.level_embed"),
    (_ENC + r"self_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(.+)",
     "pixel_decoder.encoder.layers.{}.self_attn.{}.{}"),
    (_ENC + r"norm1\.(.+)", "pixel_decoder.encoder.layers.{}.self_attn_layer_norm.{}"),
    (_ENC + r"linear1\.(.+)", "pixel_decoder.encoder.layers.{}.fc1.{}"),
    (_ENC + r"linear2\.(.+)", "pixel_decoder.encoder.layers.{}.fc2.{}"),
    (_ENC + r"norm2\.(.+)", "pixel_decoder.encoder.layers.{}.final_layer_norm.{}"),
    (r"pixel_decoder\.mask_features\.(.+)", "pixel_decoder.mask_projection.{}"),
    (r"pixel_decoder\.(adapter|layer)_(\d+)\.weight", "pixel_decoder.{}_{}.0.weight"),
    (r"pixel_decoder\.(adapter|layer)_(\d+)\.norm\.(.+)", "pixel_decoder.{}_{}.1.{}"),
    (r"predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)",
     _DEC + "self_attn.{qkv}_proj.{}"),
    (r"predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\.(.+)", _DEC + "self_attn.out_proj.{}"),
    (r"predictor\.transformer_self_attention_layers\.(\d+)\.norm\.(.+)", _DEC + "self_attn_layer_norm.{}"),
    (r"predictor\.transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)", _DEC + "cross_attn.{}"),
    (r"predictor\.transformer_cross_attention_layers\.(\d+)\.norm\.(.+)", _DEC + "cross_attn_layer_norm.{}"),
    (r"predictor\.transformer_ffn_layers\.(\d+)\.linear1\.(.+)", _DEC + "fc1.{}"),
    (r"predictor\.transformer_ffn_layers\.(\d+)\.linear2\.(.+)", _DEC + "fc2.{}"),
    (r"predictor\.transformer_ffn_layers\.(\d+)\.norm\.(.+)", _DEC + "final_layer_norm.{}"),
    (r"predictor\.decoder_norm\.(.+)", "transformer_module.decoder.layernorm.{}"),
    (r"predictor\.query_feat\.(.+)", "transformer_module.queries_features.{}"),
    (r"predictor\.query_embed\.(.+)", "transformer_module.queries_embedder.{}"),
    (r"predictor\.level_embed\.(.+)", "transformer_module.level_embed.{}"),
    (r"predictor\.mask_embed\.layers\.(\d+)\.(.+)", "transformer_module.decoder.mask_predictor.mask_embedder.{}.0.{}"),
    (r"predictor\.class_embed\.(.+)", "class_predictor.{}"),
]
_M2F_COMPILED = [(re.compile(pattern + "$"), target) for pattern, target in M2F_RULES]
#: Tensors of the authors' Mask2Former checkpoints that are not model weights (dropped, with a note).
M2F_DROPPED = ("criterion.empty_weight",)


def map_m2f_key(name: str) -> Optional[List[str]]:
    """The project name(s) of one authors' Mask2Former-model key (``module.`` already stripped).

    Backbone keys (``layer0..layer4``) keep their names; ``m2f_decoder.<rest>`` becomes
    ``mask2former.<mapped rest>``; the packed ``in_proj_weight`` / ``in_proj_bias`` give three names
    (q, k, v, in that order). Returns None for a key no rule covers."""
    if re.match(r"layer[0-4]\.", name):
        return [name]
    if not name.startswith("m2f_decoder."):
        return None
    rest = name[len("m2f_decoder."):]
    for pattern, target in _M2F_COMPILED:
        match = pattern.match(rest)
        if match:
            if "{qkv}" in target:
                return ["mask2former." + target.replace("{qkv}", part).format(*match.groups()) for part in "qkv"]
            return ["mask2former." + target.format(*match.groups())]
    return None


def _translate(name: str, value: torch.Tensor, head: str, expected, rules) -> Optional[list]:
    """``[(project name, tensor, origin suffix)]`` for one stripped key, ``[]`` to drop it, None if
    unknown."""
    if head == "mask2former":
        if name in M2F_DROPPED:
            return []
        targets = map_m2f_key(name)
        if targets is None:
            return None
        if len(targets) == 3:  # q, k, v of a packed projection
            parts = value.chunk(3, dim=0) if value.dim() and value.shape[0] % 3 == 0 else (value,) * 3
            return [(t, part, f"[{c}]") for t, part, c in zip(targets, parts, "qkv")]  # else mis-shaped below
        return [(targets[0], value, "")]
    if name not in expected:
        for pattern, repl in rules:
            if pattern.match(name):
                candidate = pattern.sub(repl, name)
                if candidate in expected:
                    return [(candidate, value, "alias")]
                break
    return [(name, value, "")]


def map_original_state_dict(state_dict: Dict[str, torch.Tensor], backbone: str,
                            expected: Dict[str, torch.Tensor], head: str = "deeplabv3plus") -> Tuple[Dict[str, torch.Tensor], List[str]]:  # fmt: skip
    """Rename the authors' keys to the model's (``expected``: its state dict) and check coverage.

    ``head="mask2former"`` applies :data:`M2F_RULES` to the ``m2f_decoder.`` keys (the DeepLabV3+
    names pass through with the optional wrappings of docs/method.md §1.5). Returns ``(state_dict, notes)`` ready for
    ``load_state_dict(strict=True)``; raises :class:`CheckpointMismatchError` listing missing,
    unexpected and mis-shaped keys."""
    notes: List[str] = []
    prefixed = sum(k.startswith("module.") for k in state_dict)
    if prefixed == len(state_dict):
        notes.append("stripped DDP's 'module.' prefix")
    elif prefixed:
        notes.append(f"stripped 'module.' from {prefixed} of {len(state_dict)} keys")
    else:
        notes.append("keys had no 'module.' prefix (an unwrapped state dict)")
    rules = _ALIASES[None] + _ALIASES.get(backbone, [])
    mapped: Dict[str, torch.Tensor] = {}
    origin: Dict[str, str] = {}
    unexpected, duplicates, aliased, dropped, split = [], [], [], [], 0
    for key, value in state_dict.items():
        name = _strip_prefix(key)
        targets = _translate(name, value, head, expected, rules)
        if targets == []:
            dropped.append(key)
            continue
        if targets is None or any(t not in expected for t, _, _ in targets):
            unexpected.append(key)
            continue
        split += len(targets) == 3
        for target, tensor, how in targets:
            if how == "alias":
                aliased.append(f"{name} -> {target}")
                how = ""
            if target in mapped:
                duplicates.append(f"{origin[target]} and {key}{how} -> {target}")
                continue
            mapped[target] = tensor
            origin[target] = key + how
    if head == "mask2former":
        renamed = [k for k in mapped if k.startswith("mask2former.")]
        sources = len({origin[k].split("[")[0] for k in renamed})
        notes.append(f"mapped {sources} m2f_decoder.* tensor(s) to {len(renamed)} Mask2Former head tensor(s) (transformers' names)")
    if split:
        notes.append(f"split {split} packed self-attention in_proj tensor(s) into q/k/v")
    if dropped:
        notes.append("dropped " + ", ".join(_strip_prefix(k) for k in dropped) + " (a loss buffer, not a weight)")
    if aliased:
        notes.append(f"renamed {len(aliased)} key(s): " + "; ".join(aliased[:4]) + (" ..." if len(aliased) > 4 else ""))
    mismatched = [f"{origin[k]}: checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)}"
                  for k, v in mapped.items() if tuple(v.shape) != tuple(expected[k].shape)]  # fmt: skip
    missing = [k for k in expected if k not in mapped]
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected or mismatched or duplicates:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched),
                            ("duplicated", duplicates)):  # fmt: skip
            if keys:
                shown = "\n    ".join(keys[:40]) + (f"\n    ... and {len(keys) - 40} more" if len(keys) > 40 else "")
                parts.append(f"  {len(keys)} {title} key(s):\n    {shown}")
        raise CheckpointMismatchError("\n".join(parts), missing, unexpected, mismatched)
    for key in counters:
        mapped[key] = expected[key].clone()
    if counters:
        notes.append(f"{len(counters)} BatchNorm num_batches_tracked counter(s) absent, set to 0 (no effect on inference)")
    mapped = {k: mapped[k].to(dtype=expected[k].dtype).contiguous() for k in expected}
    return mapped, notes


def guess_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """The ``--arch`` a state dict looks like (from a few telltale tensors), or None."""
    keys = {_strip_prefix(k): v for k, v in state_dict.items()}
    if any(k.startswith(("m2f_decoder.", "predictor.", "sem_seg_head.", "pixel_decoder.")) or ".transformer" in k for k in keys):
        return "r50_m2f"
    stem = keys.get("layer0.0.weight")
    if stem is not None and tuple(stem.shape[1:]) == (3, 7, 7):
        return "r101" if "layer3.22.conv1.weight" in keys else "r50"
    stem = keys.get("layer0.0.0.weight")
    if stem is not None and stem.dim() == 4:
        if stem.shape[0] == 32:
            return "mobilenetv2"
        if stem.shape[0] == 24:
            return "shufflenetv2"
    return None


# --------------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------------


def _num_labels(state: Dict[str, torch.Tensor]) -> Optional[int]:
    for key, extra in (("final2.weight", 0), ("final2.0.weight", 0), ("m2f_decoder.predictor.class_embed.weight", 1)):
        for k, v in state.items():
            if _strip_prefix(k) == key and v.dim() >= 1:
                return int(v.shape[0]) - extra  # the Mask2Former class head has a no-object row
    return None


def _check_conversion_target(arch: str, output_dir, overwrite: bool) -> Tuple[str, Path]:
    """The backbone of ``arch`` and the output folder, refusing an unknown arch or an existing folder."""
    if arch not in ARCHS:
        raise ValueError(f"--arch {arch!r} is not one of {', '.join(ARCHS)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already exists (pass overwrite=True / --overwrite to replace it)")
    return ARCHS[arch], output_dir


def _build_model(num_labels: int, backbone: str, head: str) -> SRHAForSemanticSegmentation:
    """A freshly initialised model of the arch (seeded: its initial values never reach the output)."""
    config = SRHAConfig(backbone=backbone, decode_head=head, num_labels=num_labels, backbone_pretrained=None)
    torch.manual_seed(0)
    return SRHAForSemanticSegmentation(config)


def _load_into(model, original: OriginalCheckpoint, arch: str, backbone: str, head: str):
    """Map the checkpoint's tensors onto ``model`` and load them strictly; return ``(state, notes)``.

    A mismatch is re-raised naming the file and the arch, with the arch the file looks like when that differs.
    """
    try:
        state, notes = map_original_state_dict(original.state_dict, backbone, model.state_dict(), head=head)
    except CheckpointMismatchError as exc:
        guess = guess_arch(original.state_dict)
        hint = f" The checkpoint looks like --arch {guess}." if guess and guess != arch else ""
        raise CheckpointMismatchError(
            f"{original.path.name} does not match the {arch} ({backbone}, {head}) model; conversion refused.{hint}\n{exc}",
            exc.missing, exc.unexpected, exc.mismatched,
        ) from None  # fmt: skip
    model.load_state_dict(state, strict=True)
    model.eval()
    return state, notes


def _provenance(original: OriginalCheckpoint, arch: str, notes: List[str]) -> dict:
    """Where the weights came from, stored as the config's ``original_checkpoint`` and shown in the card."""
    return {
        "file": original.path.name,
        "sha256": original.sha256,
        "epoch": original.epoch,
        "mean_iu": original.mean_iu,
        "command": original.command,
        "arch": arch,
        "converted": _dt.date.today().isoformat(),
        "notes": notes,
    }


def _write_model_folder(model, state, provenance: dict, output_dir: Path, card_fields: dict, steps) -> None:
    """Save model, image processor and card to a temporary sibling folder, check it, then publish it as ``output_dir``.

    ``card_fields`` are :func:`~srha_hf.hub.render_conversion_card`'s keyword arguments but
    ``num_tensors``. Nothing is left behind on failure.
    """
    parent = output_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=parent))
    try:
        model.save_pretrained(tmp)
        SRHAImageProcessor().save_pretrained(tmp)
        steps.update(1)
        card = render_conversion_card(provenance, num_tensors=len(state), **card_fields)
        card.save(tmp / "README.md")
        _check_saved(tmp, state)
        for written in tmp.iterdir():  # save_pretrained may leave private (0600) files
            os.chmod(written, 0o666 & ~current_umask())
        publish_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert_original_checkpoint(checkpoint, arch: str, output_dir, *, overwrite: bool = False,
                                repo_id: Optional[str] = None, progress: bool = True) -> dict:  # fmt: skip
    """Convert the authors' checkpoint file for ``arch`` (``r50``, ``r101``, ``mobilenetv2``,
    ``shufflenetv2`` DeepLabV3+, or ``r50_m2f``: ResNet-50 + Mask2Former) into a model folder at
    ``output_dir``; returns a report.

    Raises ``ValueError`` for an unreadable file or unsupported arch, :class:`CheckpointMismatchError`
    (missing / unexpected / mis-shaped keys) when the tensors do not fit, ``FileExistsError`` when
    ``output_dir`` exists and ``overwrite`` is False. Nothing is written unless the conversion succeeds."""
    backbone, output_dir = _check_conversion_target(arch, output_dir, overwrite)
    head = ARCH_HEADS.get(arch, "deeplabv3plus")
    steps = tqdm(total=5, desc="convert", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        original = read_original_checkpoint(checkpoint)
        steps.update(1)
        num_labels = _num_labels(original.state_dict) or 19
        model = _build_model(num_labels, backbone, head)
        steps.update(1)
        state, notes = _load_into(model, original, arch, backbone, head)
        steps.update(1)
        provenance = _provenance(original, arch, notes)
        model.config.backbone_pretrained = None
        model.config.backbone_pretrained_source = None
        model.config.original_checkpoint = provenance
        card_fields = dict(arch=arch, backbone=backbone, arch_name=ARCH_NAMES[arch], repo_or_path=repo_id or str(output_dir), head=head)
        _write_model_folder(model, state, provenance, output_dir, card_fields, steps)
        steps.update(1)
    finally:
        steps.close()
    return {
        "output_dir": str(output_dir),
        "arch": arch,
        "backbone": backbone,
        "decode_head": head,
        "num_labels": num_labels,
        "num_tensors": len(state),
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        **{k: provenance[k] for k in ("file", "sha256", "epoch", "mean_iu", "command", "notes")},
    }


def _check_saved(folder: Path, state: Dict[str, torch.Tensor]) -> None:
    """The written safetensors hold exactly the converted tensors (bit for bit)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise RuntimeError(f"save_pretrained wrote no safetensors file to {folder}")
    seen = set()
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key not in state or not torch.equal(f.get_tensor(key), state[key]):
                    raise RuntimeError(f"written tensor {key} in {file.name} differs from the converted one")
                seen.add(key)
    absent = [k for k in state if k not in seen]
    if absent:
        raise RuntimeError(f"written weights lack {len(absent)} tensor(s), e.g. {', '.join(absent[:5])}")

