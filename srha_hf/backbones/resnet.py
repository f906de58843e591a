"""ResNet-50 and ResNet-101 (docs/method.md §1.2): torchvision's definitions; layer0 = conv1 + bn1 + relu +
maxpool, layer1..4 torchvision's; layer4 dilated to output stride 16."""

from __future__ import annotations

import re
from typing import Optional

from torch import nn
from torchvision import models as tvm

from .dilation import dilate_conv
from .loading import torchvision_imagenet
from .registry import BackboneSpec, register_backbone

CHANNELS = (64, 256, 512, 1024, 2048)
STRIDES = (4, 4, 8, 16, 16)


def dilate_layer4(layer4: nn.Sequential, all_blocks: bool) -> None:
    """docs/method.md §1.2 / §9 M9: every block's 3x3 conv gets dilation 2 (faithful); with ``all_blocks=False``
    the torchvision ``replace_stride_with_dilation`` layout (first block dilation 1, the rest 2)."""
    for i, block in enumerate(layer4):
        if i == 0:
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
            block.conv2.stride = (1, 1)
            if all_blocks:
                dilate_conv(block.conv2, 2)
        else:
            dilate_conv(block.conv2, 2)


def split(model: nn.Module, dilate_all_layer4_blocks: bool = True, **_):
    dilate_layer4(model.layer4, dilate_all_layer4_blocks)
    layer0 = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return layer0, model.layer1, model.layer2, model.layer3, model.layer4


def key_map(key: str) -> Optional[str]:
    m = re.match(r"(conv1|bn1)\.(.+)$", key)
    if m:
        return f"layer0.{0 if m.group(1) == 'conv1' else 1}.{m.group(2)}"
    return key if re.match(r"layer[1-4]\.", key) else None


register_backbone(BackboneSpec(
    "resnet50", lambda: tvm.resnet50(weights=None), split, CHANNELS, STRIDES, key_map,
    torchvision_imagenet("ResNet50_Weights"), paper=True, no_split_modules=("Bottleneck",),
))  # fmt: skip
register_backbone(BackboneSpec(
    "resnet101", lambda: tvm.resnet101(weights=None), split, CHANNELS, STRIDES, key_map,
    torchvision_imagenet("ResNet101_Weights"), paper=True, no_split_modules=("Bottleneck",),
))  # fmt: skip
