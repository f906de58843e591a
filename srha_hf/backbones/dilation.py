"""The reference's output-stride-16 edits of docs/method.md §1.2, shared by the backbone specs."""

from __future__ import annotations

from torch import nn


def dilate_conv(conv: nn.Conv2d, dilation: int) -> None:
    """Stride 1, the given dilation, and the padding that keeps the spatial size."""
    conv.stride = (1, 1)
    conv.dilation = (dilation, dilation)
    k = conv.kernel_size[0]
    conv.padding = (dilation * (k - 1) // 2,) * 2


def dilate_d16(layer3: nn.Module, only_stride2: bool) -> None:
    """docs/method.md §1.2 "D16" / §9 M10: the stride-2 convs of layer3 get stride 1, dilation 2 and the
    padding that keeps the size (2 for 3x3, 4 for Lite0's 5x5; faithful: nothing else changes); with
    ``only_stride2=False`` every later spatial (k > 1) conv of the stage is dilated by 2 as well, as a
    proper output-stride-16 conversion would do."""
    seen_stride2 = False
    for module in layer3.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.stride == (2, 2):
            dilate_conv(module, 2)
            seen_stride2 = True
        elif not only_stride2 and seen_stride2 and module.kernel_size[0] > 1:
            dilate_conv(module, 2)
