"""MobileNetV2 (docs/method.md §1.2): torchvision's ``features`` split into the reference's five stages,
layer3 dilated (D16)."""

from __future__ import annotations

import re
from typing import Optional

from torch import nn
from torchvision import models as tvm

from .dilation import dilate_d16
from .loading import torchvision_imagenet
from .registry import BackboneSpec, register_backbone

# ``features`` indices of layer0..layer3 (layer4 is ``features.18``)
STAGES = ((0, 1), (2, 3, 4, 5, 6), (7, 8, 9, 10), (11, 12, 13, 14, 15, 16, 17))


def split(model: nn.Module, d16_only_stride2: bool = True, **_):
    stages = [nn.Sequential(*[model.features[i] for i in idx]) for idx in STAGES]
    dilate_d16(stages[3], d16_only_stride2)
    return (*stages, model.features[18])


def key_map(key: str) -> Optional[str]:
    m = re.match(r"features\.(\d+)\.(.+)$", key)
    if not m:
        return None
    idx, rest = int(m.group(1)), m.group(2)
    if idx == 18:
        return f"layer4.{rest}"
    for stage, indices in enumerate(STAGES):
        if idx in indices:
            return f"layer{stage}.{indices.index(idx)}.{rest}"
    return None


register_backbone(BackboneSpec(
    "mobilenetv2", lambda: tvm.mobilenet_v2(weights=None), split, (16, 32, 64, 320, 1280), (2, 8, 16, 16, 16), key_map,
    torchvision_imagenet("MobileNet_V2_Weights"), paper=True, no_split_modules=("InvertedResidual",),
))  # fmt: skip
