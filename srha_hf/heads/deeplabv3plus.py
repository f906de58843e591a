"""DeepLabV3+ head modules exactly as docs/method.md §1.3: ASPP, the decoder blocks and the auxiliary ``dsn``
head. The model holds them as top-level children named as the authors' (docs/method.md §1.5: ``aspp``,
``bot_fine``, ``bot_aspp``, ``final1``, ``final2``, ``dsn``) and wires them in its forward."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU, padded to keep the spatial size."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling at OS16: image pooling, 1x1, and three dilated 3x3 branches,
    concatenated in this order (``5 * reduction`` channels)."""

    def __init__(self, in_channels: int, reduction: int = 256, rates: Sequence[int] = (6, 12, 18)):
        super().__init__()
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = conv_bn_relu(in_channels, reduction, 1)
        self.features = nn.ModuleList(
            [conv_bn_relu(in_channels, reduction, 1)] + [conv_bn_relu(in_channels, reduction, 3, r) for r in rates]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = self.img_conv(self.img_pooling(x))
        pooled = F.interpolate(pooled, size=size, mode="bilinear", align_corners=True)
        return torch.cat([pooled] + [branch(x) for branch in self.features], dim=1)


def final_block(in_channels: int, channels: int = 256) -> nn.Sequential:
    """``final1``: 3x3 conv (no bias) + BN + ReLU, twice, as one flat ``nn.Sequential``."""
    return nn.Sequential(*conv_bn_relu(in_channels, channels, 3), *conv_bn_relu(channels, channels, 3))


class AuxiliaryHead(nn.Sequential):
    """``dsn`` on layer3: 3x3 conv with bias -> BN -> ReLU -> Dropout2d -> 1x1 conv with bias."""

    def __init__(self, in_channels: int, num_labels: int, channels: int = 512, dropout: float = 0.1):
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_labels, kernel_size=1, bias=True),
        )
