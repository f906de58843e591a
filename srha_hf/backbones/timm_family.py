"""Backbones from timm, ``backbone="timm:<model name>"`` (an optional extra: ``pip install "srha_hf[timm]"``;
docs/training.md "timm backbones"). None of them is one of the paper's backbones.

Importing this module registers the family and does not import timm: timm is imported when a member's
spec is made, on first use (:func:`~srha_hf.backbones.registry.backbone_spec`).

How a member is made (:func:`resolve`), all on the meta device (shapes only, no weights, fast):

* the network is timm's own feature extractor at output stride 16,
  ``timm.create_model(name, features_only=True, output_stride=16)``, with every feature timm declares
  (``out_indices`` = all of the full model's ``feature_info``). The dilation layout is timm's (for ResNets
  torchvision's ``replace_stride_with_dilation``: the first block of the dilated stage keeps dilation 1),
  not the reference's: the switches ``resnet_dilate_all_layer4_blocks`` and ``d16_dilate_only_stride2``
  (docs/method.md §9 M9, M10) do not apply to timm members.
* its modules are put back under the names of timm's full model (the checkpoint's names: timm's
  ``FeatureListNet`` flattens ``stem.0`` to ``stem_0``) and walked in order, descending into
  ``nn.Sequential`` containers down to timm's feature modules (``layer1``, ``blocks.1``, ``stages.0``...).
* the features' output strides are **measured** with a forward. ``layer0`` is everything before the first
  feature module whose output is at stride 4 (the input of the first stride-4 stage: ResNet's stem with
  the max-pool, /4; EfficientNet's and MobileNet's stem with block group 0, /2, like our MobileNetV2 and
  Lite0 layer0); ``layer1..layer4`` end at that feature and the three after it, which must be the last
  ones and measure strides 4, 8, 16, 16. A model that timm cannot build at output stride 16 (it rejects
  ``output_stride``, as Swin, HGNetV2 and ViTs do in timm 1.0.31), or whose features measure other
  strides (a model that ignored the argument), is refused with the reason.
* the input: the model takes the image processor's ImageNet-normalised pixels, and layer0 first converts
  them to the normalisation of timm's ``pretrained_cfg`` (mean/std; ``tf_efficientnet_lite0``: 0.5/0.5),
  :class:`ImageNetToTimmInput`, constants re-created by ``reset_constants()`` (not saved).
* parameter names: ``layerN.`` + timm's own key (``layer1.blocks.1.0.conv_pw.weight``), so a timm
  checkpoint (a local ``.safetensors``/``.pth`` file, a folder with ``model.safetensors``, a Hub id such as
  ``timm/resnet18.a1_in1k``; ``"imagenet"``: the Hub repo of the model's ``pretrained_cfg``) loads strictly
  through :func:`~srha_hf.backbones.load_backbone_weights`: keys outside the stages (the classifier, and
  what follows the last feature: EfficientNet's ``conv_head``/``bn2``, ConvNeXt's ``head``) are dropped by
  name, every stage tensor must be in the file.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .registry import BackboneLoadError, BackboneSpec, register_backbone_family

PREFIX = "timm"
EXTRA = "timm"
INSTALL_HINT = 'pip install "srha_hf[timm]"'
OUTPUT_STRIDE = 16
STAGE_STRIDES = (4, 8, 16, 16)  # layer1..layer4 at output stride 16


def import_timm():
    """timm, or an :class:`ImportError` naming the extra that installs it."""
    try:
        import timm
    except ImportError as exc:
        raise ImportError(
            f"the '{PREFIX}:<model name>' backbones need timm, an optional extra of srha_hf: {INSTALL_HINT} (or pip install timm)"
        ) from exc
    return timm


class ImageNetToTimmInput(nn.Module):
    """ImageNet-normalised pixels ``x = (r − μ)/σ`` to a timm model's ``(r − μ')/σ'``, per channel:
    ``x·σ/σ' + (μ − μ')/σ'``. Constants, not parameters (nothing in the state dict): the model's
    ``_init_weights`` re-creates them through :meth:`reset_constants` when a saved model is loaded."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.target_mean = tuple(float(v) for v in mean)
        self.target_std = tuple(float(v) for v in std)
        scale, shift = self.constants()
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def constants(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)``, each ``(1, 3, 1, 1)`` float32."""
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        target_mean, target_std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (self.target_mean, self.target_std))
        return std / target_std, (mean - target_mean) / target_std

    @torch.no_grad()
    def reset_constants(self) -> None:
        """Re-create the (unsaved) buffers in place (``from_pretrained`` builds on the meta device)."""
        scale, shift = self.constants()
        self.scale.copy_(scale)
        self.shift.copy_(shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.target_mean}, std={self.target_std}"


def _place(root: nn.Module, path: str, module: nn.Module) -> None:
    """Register ``module`` under the dotted ``path`` of ``root``, making ``nn.ModuleDict`` parents as needed."""
    *parents, leaf = path.split(".")
    for name in parents:
        if name not in root._modules:
            root.add_module(name, nn.ModuleDict())
        root = root._modules[name]
    root.add_module(leaf, module)


class TimmNetwork(nn.Module):
    """timm's feature extractor at output stride 16, its modules under the names of timm's full model (the
    checkpoint's), with the order in which they run (``units``: dotted paths) and the stage cut
    (``stage_units``: the paths of layer0..layer4)."""

    def __init__(self, units: Sequence[Tuple[str, nn.Module]], stage_units: Sequence[Sequence[str]]):
        super().__init__()
        for path, module in units:
            _place(self, path, module)
        self.units = [path for path, _ in units]
        self.stage_units = [list(paths) for paths in stage_units]


class TimmStage(nn.Module):
    """One stage: timm modules under their own dotted paths, run in order (layer0 converts the input first)."""

    def __init__(self, units: Sequence[Tuple[str, nn.Module]], input_conversion: Optional[ImageNetToTimmInput] = None):
        super().__init__()
        if input_conversion is not None:
            self.input_conversion = input_conversion
        for path, module in units:
            _place(self, path, module)
        self.units = [path for path, _ in units]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "input_conversion" in self._modules:
            x = self.input_conversion(x)
        for path in self.units:
            x = self.get_submodule(path)(x)
        return x


def _refuse(name: str, reason: str) -> ValueError:
    return ValueError(f"backbone '{PREFIX}:{name}' is refused: {reason}")


def _create_features(timm, name: str, out_indices: Tuple[int, ...]) -> nn.Module:
    return timm.create_model(name, pretrained=False, features_only=True, output_stride=OUTPUT_STRIDE, out_indices=out_indices)


def _original_paths(name: str, features: nn.Module, full: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``features``' children with the dotted path of the same module in timm's full model (a child without
    tensors that the full model lacks keeps its name); every tensor of a child must be one of the full
    model's (same name and shape), so timm checkpoints load by name."""
    full_modules = dict(full.named_modules())
    flattened: Dict[str, List[str]] = {}
    for path in full_modules:
        flattened.setdefault(path.replace(".", "_"), []).append(path)
    full_state = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    children = []
    for child_name, child in features.named_children():
        if child_name in full_modules:
            path = child_name
        elif len(flattened.get(child_name, [])) == 1:
            path = flattened[child_name][0]
        elif not child.state_dict() and child_name not in flattened:
            path = child_name  # a tensor-free module of the extractor's own (MobileNetV3's act1 after a plain BN)
        else:
            raise _refuse(name, f"timm's feature extractor holds a module {child_name!r} that is not one module of the full model")
        for key, value in child.state_dict().items():
            if full_state.get(f"{path}.{key}") != tuple(value.shape):
                raise _refuse(name, f"timm's feature extractor renames or reshapes {path}.{key}: a timm checkpoint would not load into it")
        children.append((path, child))
    return children


def _units(name: str, children: Sequence[Tuple[str, nn.Module]], feature_paths: Sequence[str]) -> List[Tuple[str, nn.Module]]:
    """The modules in the order they run, descending into ``nn.Sequential`` containers that hold a feature module."""
    units: List[Tuple[str, nn.Module]] = []

    def walk(path: str, module: nn.Module) -> None:
        if any(f.startswith(path + ".") for f in feature_paths):
            if type(module) is not nn.Sequential:
                raise _refuse(name, f"its feature module(s) under {path!r} sit in a {type(module).__name__}, not a sequence of modules")
            for child_name, child in module.named_children():
                walk(f"{path}.{child_name}", child)
        else:
            units.append((path, module))

    for path, module in children:
        walk(path, module)
    return units


def _unsaved_buffers(module: nn.Module) -> List[str]:
    return [f"{prefix}.{b}" if prefix else b for prefix, m in module.named_modules() for b in m._non_persistent_buffers_set]


def _stride(size: Tuple[int, int], output: torch.Tensor):
    """The output stride of ``output`` for an input of ``size`` (a float where it does not divide evenly)."""
    ratio = size[0] / int(output.shape[-2])
    return int(ratio) if ratio == int(ratio) else round(ratio, 2)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _create(name: str, timm) -> Tuple[nn.Module, nn.Module, Tuple[int, ...]]:
    """timm's full model and its feature extractor at output stride 16 (every declared feature), on the meta device."""
    try:
        with torch.device("meta"):
            full = timm.create_model(name, pretrained=False)
    except Exception as exc:  # noqa: BLE001 - timm's reason (unknown model, ...) is the message
        raise ValueError(f"timm cannot build {name!r}: {_reason(exc)}") from None
    feature_info = getattr(full, "feature_info", None)
    if not feature_info:
        raise _refuse(name, "timm's model declares no feature_info (no feature stages to cut)")
    out_indices = tuple(range(len(feature_info)))
    try:
        with torch.device("meta"):
            features = _create_features(timm, name, out_indices)
    except Exception as exc:  # noqa: BLE001
        raise _refuse(
            name,
            f"timm cannot build it as a feature extractor at output_stride={OUTPUT_STRIDE} ({_reason(exc)}); "
            "SRHA's heads need layer3 and layer4 at output stride 16",
        ) from None
    unsaved = _unsaved_buffers(features)
    if unsaved:
        raise _refuse(name, f"it holds buffers that a saved model does not keep ({', '.join(unsaved[:3])})")
    return full, features.eval(), out_indices  # eval: batch statistics of one meta sample at 1x1 are refused (ResNeSt)


def _cut(name: str, paths: List[str], feature_paths: List[str], first: int) -> List[List[str]]:
    """The paths of layer0..layer4: layer0 all before the first stride-4 feature module, layer1..4 each up to
    and including the next feature module."""
    missing = [f for f in feature_paths[first:] if f not in paths]
    if missing:
        raise _refuse(name, f"its feature modules {missing} are not modules that run in sequence")
    ends = [paths.index(f) + 1 for f in feature_paths[first:]]
    starts = [0, paths.index(feature_paths[first])] + ends[:-1]
    stage_units = [paths[s:e] for s, e in zip(starts, [starts[1]] + ends)]
    if not stage_units[0]:
        raise _refuse(name, "nothing runs before its first stride-4 stage (layer0 would be empty)")
    return stage_units


def _layout(name: str, timm) -> dict:
    """Everything about member ``name`` that the spec needs, measured on the meta device."""
    full, features, out_indices = _create(name, timm)
    feature_paths = list(features.feature_info.module_name())
    mean, std = full.pretrained_cfg.get("mean"), full.pretrained_cfg.get("std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        raise _refuse(name, f"timm's pretrained_cfg gives no 3-channel input normalisation (mean={mean}, std={std})")
    # a size that every stride up to 32 divides, unless the model only takes its own
    size = tuple(full.pretrained_cfg["input_size"][1:]) if full.pretrained_cfg.get("fixed_input_size") else (224, 224)

    # measured: the output stride of each feature timm declares
    x = torch.empty(1, 3, *size, device="meta")
    with torch.no_grad():
        outputs = features(x)
    outputs = list(outputs.values()) if isinstance(outputs, dict) else list(outputs)
    strides = [_stride(size, out) for out in outputs]
    first = next((i for i, s in enumerate(strides) if s == 4), None)
    if first is None:
        raise _refuse(name, f"none of its features is at stride 4 (measured {strides} for the features at {feature_paths})")
    if tuple(strides[first:]) != STAGE_STRIDES:
        raise _refuse(
            name,
            f"its feature stages from the first at stride 4 measure strides {tuple(strides[first:])} at output_stride={OUTPUT_STRIDE}, "
            f"not {STAGE_STRIDES}: timm does not dilate this model to output stride 16",
        )
    units = dict(_units(name, _original_paths(name, features, full), feature_paths))
    stage_units = _cut(name, list(units), feature_paths, first)

    # measured again through the stages as they will run: channels and strides of layer0..layer4
    channels, stage_strides = [], []
    with torch.no_grad():
        for stage in stage_units:
            for path in stage:
                x = units[path](x)
            channels.append(int(x.shape[1]))
            stage_strides.append(_stride(size, x))
    if [(c, s) for c, s in zip(channels[1:], stage_strides[1:])] != [(out.shape[1], s) for out, s in zip(outputs[first:], strides[first:])]:
        raise _refuse(name, f"its modules run in sequence do not give timm's features {feature_paths[first:]}")

    blocks = set()
    for module in units.values():
        blocks.update(type(m).__name__ for m in (module.children() if type(module) is nn.Sequential else [module]))
    return {
        "out_indices": out_indices,
        "feature_paths": feature_paths,
        "stage_units": stage_units,
        "channels": tuple(channels),
        "strides": tuple(stage_strides),
        "mean": tuple(mean),
        "std": tuple(std),
        "hub_id": full.pretrained_cfg.get("hf_hub_id"),
        "no_split_modules": tuple(sorted(blocks - {"ModuleDict", "Sequential", "Identity"})),
    }


def _build(name: str, layout: dict) -> TimmNetwork:
    timm = import_timm()
    features = _create_features(timm, name, layout["out_indices"])
    with torch.device("meta"):
        full = timm.create_model(name, pretrained=False)
    units = dict(_units(name, _original_paths(name, features, full), layout["feature_paths"]))
    return TimmNetwork([(path, units[path]) for stage in layout["stage_units"] for path in stage], layout["stage_units"])


def _split(layout: dict, network: TimmNetwork, **_):
    """The five stages (the switches of docs/method.md §9 M9/M10 do not apply: timm's dilation layout)."""
    stages = []
    for i, paths in enumerate(network.stage_units):
        conversion = ImageNetToTimmInput(layout["mean"], layout["std"]) if i == 0 else None
        stages.append(TimmStage([(p, network.get_submodule(p)) for p in paths], conversion))
    return tuple(stages)


def _key_map(stage_of: Dict[str, int], key: str) -> Optional[str]:
    parts = key.split(".")
    for n in range(1, len(parts)):
        stage = stage_of.get(".".join(parts[:n]))
        if stage is not None:
            return f"layer{stage}.{key}"
    return None  # outside the stages: the classifier and what follows the last feature


def _imagenet(name: str, hub_id: Optional[str], source: str) -> Dict[str, torch.Tensor]:
    if source == "torchvision":
        raise BackboneLoadError(f"'{PREFIX}:{name}' has no torchvision weights: pass 'imagenet' (timm's Hub weights), a local file or a Hub id")
    if not hub_id:
        raise BackboneLoadError(f"timm's pretrained_cfg of {name!r} names no Hub repo: pass a local .safetensors/.pth file or a folder holding one")
    from .loading import _hub_state_dict

    return _hub_state_dict(hub_id)


def resolve(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of ``"timm:<name>"`` (a ``ValueError`` with the reason when timm's ``name``
    cannot be an output-stride-16 SRHA backbone; an ``ImportError`` naming the extra without timm)."""
    timm = import_timm()
    layout = _layout(name, timm)
    stage_of = {path: i for i, paths in enumerate(layout["stage_units"]) for path in paths}
    return BackboneSpec(
        name=f"{PREFIX}:{name}",
        build=functools.partial(_build, name, layout),
        split=functools.partial(_split, layout),
        channels=layout["channels"],
        strides=layout["strides"],
        key_map=functools.partial(_key_map, stage_of),
        imagenet=functools.partial(_imagenet, name, layout["hub_id"]),
        paper=False,
        no_split_modules=layout["no_split_modules"],
    )


register_backbone_family(PREFIX, resolve, f"{PREFIX}:<timm model name> (optional extra: {INSTALL_HINT})")
