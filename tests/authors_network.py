"""An independent plain-PyTorch DeepLabV3+ written from docs/method.md §1 (not from srha_hf): the network whose
state dict, wrapped as the authors' training code saves it (docs/method.md §8.4), the converter must accept,
and whose eval logits the converted model must reproduce.

Module names follow docs/method.md §1.2 / §1.5: ``layer0..layer4`` hold torchvision's modules (ResNet:
conv1/bn1/relu/maxpool then layer1..4; MobileNetV2: ``features`` split 0-1 / 2-6 / 7-10 / 11-17 / 18;
ShuffleNetV2: conv1+maxpool / stage2 / stage3 / stage4 / conv5), the heads ``aspp`` (``img_pooling``,
``img_conv``, ``features.0..3``), ``bot_fine``, ``bot_aspp``, ``final1``, ``final2``, ``dsn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

ARCH_CHANNELS = {  # (layer1, layer3, layer4) output channels, docs/method.md §1.2's decoder bookkeeping table
    "r50": (256, 1024, 2048),
    "r101": (256, 1024, 2048),
    "mobilenetv2": (32, 320, 1280),
    "shufflenetv2": (116, 464, 1024),
}


def _cbr(cin, cout, k=1, d=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=d * (k // 2), dilation=d, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _d16(stage: nn.Module) -> None:
    """docs/method.md §1.2 "D16": only the stride-2 convs of layer3 -> stride 1, dilation 2, padding 2."""
    for m in stage.modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride, m.dilation, m.padding = (1, 1), (2, 2), (2, 2)


def _stages(arch: str):
    if arch in ("r50", "r101"):
        net = models.resnet50() if arch == "r50" else models.resnet101()
        for block in net.layer4:  # every block of layer4: dilation 2 in conv2 (docs/method.md §9 M9)
            block.conv2.stride, block.conv2.dilation, block.conv2.padding = (1, 1), (2, 2), (2, 2)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        return (nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), net.layer1, net.layer2, net.layer3, net.layer4)
    if arch == "mobilenetv2":
        f = models.mobilenet_v2().features
        layer3 = nn.Sequential(*[f[i] for i in range(11, 18)])
        _d16(layer3)
        return (nn.Sequential(f[0], f[1]), nn.Sequential(*[f[i] for i in range(2, 7)]),
                nn.Sequential(*[f[i] for i in range(7, 11)]), layer3, f[18])  # fmt: skip
    if arch == "shufflenetv2":
        net = models.shufflenet_v2_x1_0()
        _d16(net.stage4)
        return (nn.Sequential(net.conv1, net.maxpool), net.stage2, net.stage3, net.stage4, net.conv5)
    raise ValueError(arch)


class ASPP(nn.Module):
    def __init__(self, cin, dim=256, rates=(6, 12, 18)):
        super().__init__()
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = _cbr(cin, dim)
        self.features = nn.ModuleList([_cbr(cin, dim)] + [_cbr(cin, dim, 3, r) for r in rates])

    def forward(self, x):
        pooled = F.interpolate(self.img_conv(self.img_pooling(x)), size=x.shape[2:], mode="bilinear", align_corners=True)
        return torch.cat([pooled] + [f(x) for f in self.features], 1)


class AuthorsDeepLabV3Plus(nn.Module):
    def __init__(self, arch: str, num_classes: int = 19):
        super().__init__()
        low, c3, c4 = ARCH_CHANNELS[arch]
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = _stages(arch)
        self.aspp = ASPP(c4)
        self.bot_fine = _cbr(low, 48)
        self.bot_aspp = _cbr(1280, 256)
        self.final1 = nn.Sequential(*_cbr(304, 256, 3), *_cbr(256, 256, 3))
        self.final2 = nn.Conv2d(256, num_classes, 1, bias=True)
        self.dsn = nn.Sequential(nn.Conv2d(c3, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(inplace=True),
                                 nn.Dropout2d(0.1), nn.Conv2d(512, num_classes, 1))  # fmt: skip

    def forward(self, x):
        size = x.shape[2:]
        x0 = self.layer0(x)
        # style elimination (docs/method.md §1.1 step 3): per-sample, per-channel, unbiased std + 1e-7
        mean = x0.mean(dim=(2, 3), keepdim=True)
        std = x0.reshape(*x0.shape[:2], -1).std(dim=2, unbiased=True)[..., None, None]
        y = (x0 - mean) / (std + 1e-7)
        f1 = self.layer1(y)
        f4 = self.layer4(self.layer3(self.layer2(f1)))
        aspp = self.bot_aspp(self.aspp(f4))
        fine = self.bot_fine(f1)
        aspp = F.interpolate(aspp, size=fine.shape[2:], mode="bilinear", align_corners=True)
        out = self.final2(self.final1(torch.cat([fine, aspp], 1)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)


def randomized(arch: str, seed: int = 0) -> AuthorsDeepLabV3Plus:
    """The network with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = AuthorsDeepLabV3Plus(arch)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(1234)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def authors_checkpoint(net: nn.Module, epoch: int = 7, mean_iu=0.0, command: str = "train.py --arch network.deepv3.DeepR50V3PlusD") -> dict:
    """docs/method.md §8.4: the DDP state dict (``module.`` prefix), epoch, mean_iu, command."""
    return {
        "state_dict": {f"module.{k}": v.clone() for k, v in net.state_dict().items()},
        "epoch": epoch,
        "mean_iu": mean_iu,
        "command": command,
    }
