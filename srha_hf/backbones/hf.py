"""Transformers backbones as SRHA backbones: ``SRHAConfig(backbone_config=...)`` (docs/training.md, "Backbones
from transformers").

A transformers backbone config (``ResNetConfig``, ``BitConfig``, ``ConvNextConfig``, ``ConvNextV2Config``,
``SwinConfig``, ``Swinv2Config``; an object or a dict with ``model_type``) becomes a :class:`BackboneSpec`
named ``"hf:<model_type>"``: layer0 is the backbone's stem (its embedder), layer1..layer4 its four stages.
Nothing is trusted from the config: the stages' widths and strides are measured with a forward of the
network built on the meta device (no memory, no arithmetic), once natively (does the backbone fit?) and
once as split (what the heads are sized from).

* **Fit.** SRHA needs a stem at stride 4 (SRM re-styles regions of layer0's features) and four stages, layer1
  at stride 4 (the DeepLabV3+ low-level branch, Mask2Former's mask features), each later stage at the same or
  twice the previous stride, layer4 at 16 or more. A config that is no backbone at all (``ViTConfig``: no
  ``AutoBackbone`` class) and a backbone that does not fit (``VitDetConfig``: every stage at stride 16) are
  refused with the reason; so is a backbone that fits but has no stage split here yet (Hiera, FocalNet, ...).
* **Output stride.** 16 where the backbone can dilate: ResNet by the project's own edit of layer4 (the
  faithful layout of :mod:`.resnet` / docs/method.md §1.2 applied to transformers' ``ResNetStage``: the
  stride-2 convs of stage 4 get stride 1, every 3x3 conv dilation 2; ``resnet_dilate_all_layer4_blocks=False``
  leaves the first block's at 1), BiT by its own ``output_stride=16``. ConvNeXt and Swin cannot: they keep
  their native stride 32. ``SRHAConfig.backbone_output_stride`` asks for one (16 or the native one).
* **Weights.** ``backbone_pretrained`` is a transformers backbone folder or Hub id, read by the concrete class's
  own ``from_pretrained`` (``ResNetBackbone.from_pretrained(folder)``; ``AutoBackbone.from_pretrained`` of a
  local folder fails in transformers 5.25), into the architecture of ``backbone_config``. An
  image-classification checkpoint's head (``classifier.*`` and the pooled ``layernorm.*``) is dropped by name;
  any other unread, missing or mis-shaped tensor of the stages refuses the load (:class:`BackboneLoadError`).
* **What is left out.** The backbones' output norms (``hidden_states_norms`` of ConvNeXt and Swin, BiT's final
  norm) normalise the features a backbone hands to a detection head, not the next stage's input: SRHA's
  layerN feeds layer(N+1) and the heads alike, so the stages are the bare ones.

``hf_backbone_spec`` is the one place that dispatches on ``model_type``: a model type handled by another
builder is routed (or, for now, refused) there.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .dilation import dilate_conv
from .registry import BackboneLoadError, BackboneSpec

PREFIX = "hf"
# model types whose stages another builder makes (a ViT: blocks, not a stem and four stages); hf_backbone_spec routes them
ROUTED_ELSEWHERE = {"dinov2": "srha_hf.backbones.dinov2", "dinov2_with_registers": "srha_hf.backbones.dinov2"}
# an image-classification checkpoint's head, dropped by name when its weights are read into a backbone
HEAD_KEYS = re.compile(r"^(classifier|layernorm)\.")
FIT_SIZE = 256  # the side of the meta-device image the layout is measured on (no arithmetic is done)


def _backbone_classes() -> Dict[str, str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING_NAMES

    return dict(MODEL_FOR_BACKBONE_MAPPING_NAMES)


def as_backbone_config(value):
    """A transformers config object for ``value`` (a ``PretrainedConfig`` or a dict with ``model_type``):
    a copy, so the caller's object is never changed. Refuses anything else, and a config whose model type
    has no transformers backbone class, naming the requirement."""
    from transformers import PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if isinstance(value, PretrainedConfig):
        config = copy.deepcopy(value)
    elif isinstance(value, dict):
        model_type = value.get("model_type")
        if not model_type:
            raise ValueError(
                f"backbone_config as a dict needs a 'model_type' (e.g. {{\"model_type\": \"convnext\", ...}}); got keys {sorted(value)}"
            )
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"backbone_config has model_type={model_type!r}, which transformers does not know")
        fields = {k: v for k, v in value.items() if k not in ("model_type", "transformers_version")}
        config = CONFIG_MAPPING[model_type].from_dict(fields)
    else:
        hint = " (a name is not taken: nothing is fetched from the Hub; give the config itself)" if isinstance(value, str) else ""
        raise TypeError(f"backbone_config must be a transformers config or a dict with 'model_type', got {type(value).__name__}{hint}")
    check_is_backbone(config)
    return config


def check_is_backbone(config) -> None:
    """Refuse a config that is not a transformers backbone's, or one routed to another builder."""
    model_type = getattr(config, "model_type", None)
    if model_type in ROUTED_ELSEWHERE:
        return
    if model_type not in _backbone_classes() or model_type == "timm_backbone":
        raise ValueError(
            f"backbone_config is a {type(config).__name__} (model_type {model_type!r}), which is not a transformers backbone: "
            "SRHA needs a config that AutoBackbone builds (a *Backbone class) with a stride-4 stem and four stages, "
            f"e.g. ResNetConfig, BitConfig, ConvNextConfig, SwinConfig (supported here: {', '.join(FAMILIES)})"
        )


def _backbone_class(config):
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

    return MODEL_FOR_BACKBONE_MAPPING[type(config)]


def _meta_input(config) -> torch.Tensor:
    size = getattr(config, "image_size", None)
    size = size if isinstance(size, int) and size >= 64 else (tuple(size) if isinstance(size, (list, tuple)) else FIT_SIZE)
    h, w = size if isinstance(size, tuple) else (size, size)
    return torch.zeros(1, getattr(config, "num_channels", 3), h, w, device="meta")


def _layout(shapes: Sequence[torch.Size], image: torch.Tensor) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    channels = tuple(int(s[1]) for s in shapes)
    # a power of two: a side that does not divide evenly (224 at stride 64 gives 4) still names its stride
    strides = tuple(2 ** int(round(math.log2(image.shape[-1] / s[-1]))) for s in shapes)
    return channels, strides


def native_layout(config) -> Tuple[Tuple[str, ...], Tuple[int, ...], Tuple[int, ...]]:
    """``(stage_names, channels, strides)`` of the backbone as transformers builds it, measured with a forward on
    the meta device of every stage (``out_features`` = all of ``stage_names``)."""
    config = copy.deepcopy(config)
    names = tuple(config.stage_names)
    config.out_features = list(names)
    image = _meta_input(config)
    with torch.device("meta"), torch.no_grad():
        network = _backbone_class(config)(config).eval()
        maps = network(image).feature_maps
    channels, strides = _layout([m.shape for m in maps], image)
    return names, channels, strides


def check_fit(model_type: str, names: Sequence[str], strides: Sequence[int]) -> None:
    """Refuse a backbone whose stages cannot be SRHA's layer0..layer4, saying why."""
    what = f"the {model_type!r} backbone"
    if len(names) < 2 or names[0] != "stem":
        raise ValueError(f"{what} has no stem stage (stages {list(names)}): SRHA's layer0 is the stem's output")
    stages = list(strides[1:])
    if len(stages) > 1 and len(set(stages)) == 1:
        raise ValueError(
            f"{what} has {len(stages)} stages all at stride {stages[0]} (a plain ViT column, no feature pyramid): SRHA needs a "
            "stride-4 stem and four stages at strides 4, 8, 16 and 16 or 32 (a ViT backbone needs its own adapter)"
        )
    if len(names) != 5:
        raise ValueError(f"{what} has a stem and {len(names) - 1} stages ({list(names)}): SRHA needs exactly four (layer1..layer4)")
    if strides[0] != 4:
        raise ValueError(f"{what} has a stem at stride {strides[0]}: SRHA's layer0 (where SRM re-styles regions) must be at stride 4")
    ok = stages[0] == 4 and stages[-1] >= 16 and all(b in (a, 2 * a) for a, b in zip(stages, stages[1:]))
    if not ok:
        raise ValueError(
            f"{what} has stages at strides {stages}: SRHA needs layer1 at stride 4, each later stage at the same or twice "
            "the previous stride, and layer4 at 16 or more"
        )


# ---------------------------------------------------------------------------------------------------
# Stage splits, one per family


class TokenStem(nn.Module):
    """A Swin-style patch embedding as layer0: image → tokens → ``(B, C, H/4, W/4)``."""

    def __init__(self, embeddings: nn.Module):
        super().__init__()
        self.embeddings = embeddings

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = {"interpolate_pos_encoding": True} if getattr(self.embeddings, "position_embeddings", None) is not None else {}
        tokens, (h, w) = self.embeddings(pixel_values, **kwargs)[:2]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


class TokenStage(nn.Module):
    """A Swin stage as layerN on ``(B, C, H, W)``: the previous transformers stage's patch merging (``downsample``,
    none for layer1), then this stage's blocks. transformers puts the merging at the end of a stage; the
    backbone's own feature maps are taken before it, so this cut gives the same four maps."""

    def __init__(self, blocks: nn.ModuleList, downsample: Optional[nn.Module], block_kwargs: Dict):
        super().__init__()
        self.downsample = downsample
        self.blocks = blocks
        self.block_kwargs = dict(block_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2).contiguous()
        if self.downsample is not None:
            tokens = self.downsample(tokens, (h, w))
            h, w = (h + 1) // 2, (w + 1) // 2
        for block in self.blocks:
            tokens = block(tokens, (h, w), **self.block_kwargs)[0]
        return tokens.transpose(1, 2).reshape(b, -1, h, w)


def dilate_resnet_stage(stage: nn.Module, all_blocks: bool = True) -> None:
    """docs/method.md §1.2 / §9 M9 on transformers' ``ResNetStage`` (the last one): its stride-2 convs (the first
    layer's shortcut 1x1 and its strided conv, wherever ``downsample_in_bottleneck`` puts it) get stride 1, and
    every 3x3 conv of every layer dilation 2 (faithful); ``all_blocks=False`` keeps the first layer's at 1
    (torchvision's ``replace_stride_with_dilation``)."""
    for index, layer in enumerate(stage.layers):
        for conv in layer.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            if conv.kernel_size[0] > 1 and (all_blocks or index > 0):
                dilate_conv(conv, 2)
            else:
                conv.stride = (1, 1)


def _split_resnet(net, dilate: bool, dilate_all_layer4_blocks: bool):
    stages = list(net.encoder.stages)
    if dilate:
        dilate_resnet_stage(stages[3], dilate_all_layer4_blocks)
    return (net.embedder, *stages)


def _split_bit(net, dilate: bool, dilate_all_layer4_blocks: bool):
    return (net.bit.embedder, *net.bit.encoder.stages)  # BiT dilates itself (output_stride, set in _build)


def _split_convnext(net, dilate: bool, dilate_all_layer4_blocks: bool):
    return (net.embeddings, *net.encoder.stages)


def _swin_stages(embeddings, layers, block_kwargs):
    stages = [TokenStage(layer.blocks, layers[i - 1].downsample if i else None, block_kwargs) for i, layer in enumerate(layers)]
    return (TokenStem(embeddings), *stages)


def _split_swin(net, dilate: bool, dilate_all_layer4_blocks: bool):
    # always_partition: the backbone's own setting (windows are never shrunk to a small input)
    return _swin_stages(net.swin.embeddings, net.swin.encoder.layers, {"always_partition": True})


def _split_swinv2(net, dilate: bool, dilate_all_layer4_blocks: bool):
    return _swin_stages(net.embeddings, net.encoder.layers, {})


@dataclass(frozen=True)
class Family:
    """How one transformers backbone family becomes SRHA's stages.

    ``split(network, dilate, dilate_all_layer4_blocks)`` → the five stage modules (``dilate``: make layer4
    output stride 16 by the project's own edit); ``dilation``: ``"project"`` (the split dilates), ``"config"``
    (the config's ``output_stride`` does) or ``None`` (the native stride only); ``no_split_modules``: the
    blocks ``device_map="auto"`` keeps whole; ``description``: for the docs and the model card."""

    split: Callable
    dilation: Optional[str]
    no_split_modules: Tuple[str, ...]
    description: str


FAMILIES: Dict[str, Family] = {
    "resnet": Family(_split_resnet, "project", ("ResNetBottleNeckLayer", "ResNetBasicLayer"),
                     "transformers' ResNet, layer4 dilated as docs/method.md §1.2"),
    "bit": Family(_split_bit, "config", ("BitEmbeddings", "BitBottleneckLayer", "BitPreActivationBottleneckLayer"),
                  "transformers' BiT, dilated by its own output_stride"),
    "convnext": Family(_split_convnext, None, ("ConvNextLayer",), "transformers' ConvNeXt (no dilation: native stride)"),
    "convnextv2": Family(_split_convnext, None, ("ConvNextV2Layer",), "transformers' ConvNeXt V2 (no dilation: native stride)"),
    "swin": Family(_split_swin, None, ("SwinLayer", "SwinPatchMerging"), "transformers' Swin (no dilation: native stride)"),
    "swinv2": Family(_split_swinv2, None, ("Swinv2Layer", "Swinv2PatchMerging"), "transformers' Swin V2 (no dilation: native stride)"),
}  # fmt: skip


def _build_config(config, output_stride: int, family: Family):
    build = copy.deepcopy(config)
    if family.dilation == "config":
        build.output_stride = output_stride
    return build


def _tag_init(stages: Sequence[nn.Module], network: nn.Module) -> None:
    """Every module of the stages is initialised by the backbone's own ``_init_weights`` (SRHA's model defers to
    it: random init, and whatever a meta-device load leaves, e.g. Swin's relative position index)."""
    for stage in stages:
        for module in stage.modules():
            module._srha_backbone_init = network._init_weights


def _drop_capture_hooks(stages: Sequence[nn.Module]) -> None:
    """Remove the output-recording hooks transformers put on the backbone's own layers when it was built (a
    ``ConvNextStage`` records ``hidden_states``): out of their backbone they would add their outputs to SRHA's
    ``output_hidden_states``, which records the five stages itself (``StageRunner``)."""
    for stage in stages:
        for module in stage.modules():
            for hooks in (module._forward_hooks, module._forward_pre_hooks):
                for handle_id in [i for i, hook in hooks.items() if getattr(hook, "__name__", "") == "output_capturing_hook"]:
                    del hooks[handle_id]


def _state_key_map(network: nn.Module, stages: Sequence[nn.Module]) -> Dict[str, str]:
    """The backbone's state-dict key → its staged name (``layerN.…``), matched by tensor identity."""
    staged = {}
    for i, stage in enumerate(stages):
        for key, tensor in stage.state_dict(keep_vars=True).items():
            staged.setdefault(id(tensor), f"layer{i}.{key}")
    return {key: staged[id(t)] for key, t in network.state_dict(keep_vars=True).items() if id(t) in staged}


def _measure(stages: Sequence[nn.Module], image: torch.Tensor):
    shapes = []
    x = image
    with torch.no_grad():
        for stage in stages:
            x = stage.eval()(x)
            shapes.append(x.shape)
    return _layout(shapes, image)


def hf_backbone_spec(backbone_config, output_stride: Optional[int] = None) -> BackboneSpec:
    """The :class:`BackboneSpec` of a transformers backbone config (see the module docstring).

    ``output_stride``: ``None`` (16 where the backbone can dilate, else its native stride), 16, or the native
    stride. The one dispatch on ``model_type``: a model type another builder handles is routed (refused for
    now) here, a family without a split is refused naming the supported ones."""
    config = as_backbone_config(backbone_config)
    model_type = config.model_type
    if model_type in ROUTED_ELSEWHERE:  # DINOv2: blocks resampled to strides 4/8/16/16 (docs/method.md §1.2)
        from .dinov2 import dinov2_spec

        if output_stride not in (None, 16):
            raise ValueError(f"backbone_output_stride={output_stride} is not possible for the {model_type!r} backbone: its pyramid is at 16")
        return dinov2_spec(config)
    names, _, native = native_layout(config)
    check_fit(model_type, names, native)
    if model_type not in FAMILIES:
        raise ValueError(
            f"the {model_type!r} backbone fits SRHA (a stride-4 stem, stages at strides {list(native[1:])}), but srha_hf has no "
            f"stage split for it yet; supported model types: {', '.join(FAMILIES)}"
        )
    family = FAMILIES[model_type]
    possible = (16, 32) if family.dilation else (native[4],)
    if family.dilation == "config":  # native = as configured; either stride is one config value away
        possible = (16, 32)
    chosen = output_stride if output_stride is not None else (16 if family.dilation else native[4])
    if chosen not in possible:
        raise ValueError(
            f"backbone_output_stride={chosen} is not possible for the {model_type!r} backbone: it "
            + ("can be 16 or 32" if family.dilation else f"cannot be dilated here, its native output stride is {native[4]}")
        )
    build_config = _build_config(config, chosen, family)
    cls = _backbone_class(config)
    dilate = family.dilation == "project" and chosen == 16 and native[4] != 16

    def build() -> nn.Module:
        return cls(copy.deepcopy(build_config))

    def split(network: nn.Module, dilate_all_layer4_blocks: bool = True, **_):
        stages = family.split(network, dilate, dilate_all_layer4_blocks)
        _tag_init(stages, network)
        _drop_capture_hooks(stages)
        return stages

    with torch.device("meta"):
        network = build()
        stages = split(network)
    channels, strides = _measure(stages, _meta_input(config))
    if strides[4] != chosen:
        raise RuntimeError(f"the {model_type!r} backbone was built for output stride {chosen} but measures {strides[4]}")
    key_table = _state_key_map(network, stages)
    name = f"{PREFIX}:{model_type}"

    def imagenet(source: str):
        raise BackboneLoadError(
            f"backbone_pretrained={source!r} does not apply to a transformers backbone ({name}): pass a transformers "
            "backbone folder or a Hub id (e.g. microsoft/resnet-50), whose config matches backbone_config"
        )

    def weights(source: str) -> Dict[str, torch.Tensor]:
        return read_backbone_weights(cls, build_config, source, key_table)

    return BackboneSpec(
        name, build, split, channels, strides, key_table.get, imagenet, paper=False,
        no_split_modules=family.no_split_modules, weights=weights,
    )  # fmt: skip


def read_backbone_weights(cls, config, source: str, key_table: Dict[str, str]) -> Dict[str, torch.Tensor]:
    """The backbone's state dict from ``source`` (a folder or a Hub id) through ``cls.from_pretrained`` into the
    architecture of ``config``, strictly: an image-classification head (:data:`HEAD_KEYS`) is dropped by name; a
    tensor of the stages that stays unread, a mis-shaped one or any other unread key of the checkpoint refuses."""
    try:
        network, info = cls.from_pretrained(source, config=copy.deepcopy(config), output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - one error type for every failed load
        raise BackboneLoadError(f"could not read a {cls.__name__} from {source!r}: {type(exc).__name__}: {exc}") from exc
    missing = [k for k in info.get("missing_keys", ()) if k in key_table]
    unexpected = [k for k in info.get("unexpected_keys", ()) if not HEAD_KEYS.match(k)]
    mismatched = [k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", ())]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors of the stages missing (first: {', '.join(sorted(missing)[:5])})")
    if mismatched:
        problems.append(f"{len(mismatched)} mis-shaped (first: {', '.join(sorted(mismatched)[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} keys that fit nothing (first: {', '.join(sorted(unexpected)[:5])})")
    if problems:
        raise BackboneLoadError(f"{cls.__name__} weights from {source!r} do not match backbone_config: " + "; ".join(problems))
    return network.state_dict()


def output_stride_note(strides: Sequence[int]) -> str:
    """One line for the model card: the stride and where it comes from."""
    return f"output stride {strides[4]}" + ("" if strides[4] == 16 else " (native; the paper's models are at 16)")


__all__ = ["FAMILIES", "PREFIX", "ROUTED_ELSEWHERE", "TokenStage", "TokenStem", "as_backbone_config", "check_fit",
           "check_is_backbone", "dilate_resnet_stage", "hf_backbone_spec", "native_layout", "read_backbone_weights"]  # fmt: skip
