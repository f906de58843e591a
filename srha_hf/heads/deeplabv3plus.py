"""The DeepLabV3+ decode head exactly as docs/method.md §1.3: ASPP, the decoder blocks and the auxiliary
``dsn`` head (:class:`DeepLabV3PlusDecode`). Its children are named as the authors' (docs/method.md §1.5:
``aspp``, ``bot_aspp``, ``bot_fine``, ``final1``, ``final2``, ``dsn``; the model registers them under these
names, :mod:`srha_hf.heads.base`)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging

from ..losses import segmentation_losses
from .base import DecodeHead, as_model_output, register_decode_head

logger = logging.get_logger(__name__)


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


@register_decode_head("deeplabv3plus")
class DeepLabV3PlusDecode(DecodeHead):
    """docs/method.md §1.3: ASPP + decoder on layer4 and layer1 (main logits at the input size, bilinear with
    ``align_corners=True`` as the reference), the ``dsn`` auxiliary head on layer3; loss CE + ``aux_weight``·CE_aux."""

    no_split_modules = ("ASPP",)

    @classmethod
    def check_strides(cls, strides, config) -> None:
        """The head works at any layer4 stride (ASPP pools globally and the decoder resizes to layer1), but its
        rates (6, 12, 18) are the output-stride-16 ones: at 32 (a ConvNeXt or Swin backbone) each branch reaches
        twice as far in the image. Warn, naming the halved rates DeepLabV3 uses for a coarser stride."""
        if strides[4] != 16 and tuple(config.aspp_rates) == (6, 12, 18):
            half = [max(1, r * 16 // strides[4]) for r in config.aspp_rates]
            logger.warning(
                f"the backbone's layer4 is at output stride {strides[4]}, but aspp_rates={list(config.aspp_rates)} are the ones for "
                f"stride 16 (the paper's): each ASPP branch reaches {strides[4] // 16}x as far in the image; aspp_rates={half} "
                "keeps the paper's reach"
            )

    def __init__(self, config, channels: Sequence[int]):
        super().__init__(config, channels)
        self.aspp = ASPP(channels[4], config.aspp_channels, config.aspp_rates)
        self.bot_aspp = conv_bn_relu(config.aspp_channels * (2 + len(config.aspp_rates)), config.decoder_channels, 1)
        self.bot_fine = conv_bn_relu(channels[1], config.low_level_channels, 1)
        self.final1 = final_block(config.low_level_channels + config.decoder_channels, config.decoder_channels)
        self.final2 = nn.Conv2d(config.decoder_channels, config.num_labels, kernel_size=1, bias=True)
        self.dsn = AuxiliaryHead(channels[3], config.num_labels, config.dsn_channels, config.dsn_dropout)

    def decode(self, f1: torch.Tensor, f4: torch.Tensor, size) -> torch.Tensor:
        """The decoder: logits from layer1 and layer4, upsampled to ``size`` with ``align_corners=True``."""
        aspp = self.bot_aspp(self.aspp(f4))
        fine = self.bot_fine(f1)
        aspp = F.interpolate(aspp, size=fine.shape[-2:], mode="bilinear", align_corners=True)
        logits = self.final2(self.final1(torch.cat([fine, aspp], dim=1)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)

    def forward(self, features, size, labels, config, *, with_extras, return_dict, return_loss):
        f1, _, f3, f4 = features
        logits = self.decode(f1, f4, size)
        aux_logits = self.dsn(f3) if with_extras else None
        loss = None
        if labels is not None and return_loss:
            ce, aux = segmentation_losses(logits, labels, aux_logits, config.ignore_index)
            loss = ce if aux is None else ce + config.aux_weight * aux
        kept = features if with_extras else None
        return as_model_output(return_dict, loss, logits=logits, aux_logits=aux_logits, features=kept)

    def training_terms(self, outputs, labels, config):
        ce, aux = segmentation_losses(outputs.logits, labels, outputs.aux_logits, config.ignore_index)
        return {"ce": ce, "aux": config.aux_weight * aux if aux is not None else torch.zeros_like(ce)}
