"""ShuffleNetV2 x1.0 (docs/method.md §1.2): torchvision's; layer0 = conv1 + maxpool, layer1..3 = stage2..4
(stage4 dilated, D16), layer4 = conv5."""

from __future__ import annotations

import re
from typing import Optional

from torch import nn
from torchvision import models as tvm

from .dilation import dilate_d16
from .loading import torchvision_imagenet
from .registry import BackboneSpec, register_backbone

_PREFIX = {"conv1": "layer0.0", "stage2": "layer1", "stage3": "layer2", "stage4": "layer3", "conv5": "layer4"}


def split(model: nn.Module, d16_only_stride2: bool = True, **_):
    dilate_d16(model.stage4, d16_only_stride2)
    return nn.Sequential(model.conv1, model.maxpool), model.stage2, model.stage3, model.stage4, model.conv5


def key_map(key: str) -> Optional[str]:
    m = re.match(r"(conv1|stage2|stage3|stage4|conv5)\.(.+)$", key)
    return f"{_PREFIX[m.group(1)]}.{m.group(2)}" if m else None


register_backbone(BackboneSpec(
    "shufflenetv2", lambda: tvm.shufflenet_v2_x1_0(weights=None), split, (24, 116, 232, 464, 1024), (4, 8, 16, 16, 16),
    key_map, torchvision_imagenet("ShuffleNet_V2_X1_0_Weights"), paper=True, no_split_modules=("InvertedResidual",),
))  # fmt: skip
