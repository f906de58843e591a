"""DINOv2 and DINOv2 with registers as a staged SRHA backbone (beyond the paper; docs/method.md §1.2).

A ViT has no feature pyramid: every block reads and writes the same token sequence at the patch grid (stride
14). SRHA's stages run in sequence (``layer0 → layer1 → … → layer4``, docs/method.md §1.1), so the stages
here carry the **token sequence** and the pyramid is taken from each of layer1..4 as a **side output**:

* ``layer0`` (:class:`Dinov2PatchStage`): ``transformers``' embeddings (patch projection + position
  embeddings); it returns the patch tokens as a map ``(B, C, H/14, W/14)``, the CLS and register tokens set
  aside. SRM and style elimination act on this map, exactly as on a CNN's layer0 output.
* ``layer1`` (:class:`Dinov2BlockStage`): puts the CLS (+ its position embedding) and register tokens back
  in front of the (possibly rearranged, so ``2B``-row) patch tokens and runs blocks ``0..b1``; ``layer2..4``
  run the next block groups on the sequence. Each returns the sequence ``(N, 1 + R + hw, C)``.
* ``feature_map`` of each block stage (what the model's ``forward_features`` asks for, the side output): the
  patch tokens after the backbone's final LayerNorm (when ``apply_layernorm``, as ``transformers``'
  ``Dinov2Backbone``), reshaped to a map and resampled bilinearly, without weights, to strides 4 / 8 / 16 / 16
  of the input: the strides the DeepLabV3+ and Mask2Former heads expect of layer1..4 at output stride 16.

The CLS and register tokens after the embeddings do not depend on the image (``cls_token +
position_embeddings[:, 0]`` and ``register_tokens``), so re-creating them in ``layer1`` gives the blocks
exactly the sequence ``transformers``' model gives them (tested against ``Dinov2Backbone``).

Blocks: the foundation-model DG methods take ViT-L's blocks ``[7, 11, 15, 23]`` (0-based, of 24), i.e. the
ends of the first 1/3, 1/2, 2/3 and all of the depth. For depth ``d`` block ``k`` of the four is
``floor(d · f_k + 1/2) − 1`` with ``f = (8, 12, 16, 24) / 24``: ``[3, 5, 7, 11]`` for 12 blocks, ``[7, 11, 15,
23]`` for 24, ``[12, 19, 26, 39]`` for 40. A ``backbone_config`` may give its own four as ``out_indices`` in
``transformers``' numbering (stage ``k`` = the output of block ``k − 1``; ViT-L's default is ``[8, 12, 16, 24]``).

Parameter names: ``layer0.embeddings.*`` (``transformers``' ``embeddings.*``), ``layerK.blocks.<i>.*`` for
block ``i`` (``encoder.layer.<i>.*``), ``layer4.layernorm.*`` (``layernorm.*``, when ``apply_layernorm``).
Weights are read through the concrete ``transformers`` class (``Dinov2Model.from_pretrained`` of a local
folder or a Hub id), which also converts the Hub checkpoints' older key names.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel
from transformers import initialization as init

from .registry import IMAGENET_SOURCES, BackboneLoadError, BackboneSpec, register_backbone_family

#: ``model_type`` → (config class, model class)
MODEL_TYPES = {
    "dinov2": (Dinov2Config, Dinov2Model),
    "dinov2_with_registers": (Dinov2WithRegistersConfig, Dinov2WithRegistersModel),
}
#: ViT-L's blocks (0-based, of 24) that Rein and SoMA take as the four feature levels
VIT_L_BLOCKS = (7, 11, 15, 23)
#: output strides of layer1..layer4's side outputs (layer0 is the patch grid)
FEATURE_STRIDES = (4, 8, 16, 16)

# The published sizes (Hub configs facebook/dinov2-<size>, image_size 518, patch 14) and a tiny one for tests.
PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=518),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=518),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, image_size=518),
    "giant": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, image_size=518, use_swiglu_ffn=True),
}
# config fields that change what a checkpoint computes without changing its tensor shapes: a loaded
# checkpoint must agree with the spec's config on them
_ARCHITECTURE_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "hidden_act", "layer_norm_eps", "patch_size",
    "qkv_bias", "use_swiglu_ffn", "num_register_tokens",
)  # fmt: skip


def default_block_indices(depth: int) -> Tuple[int, int, int, int]:
    """The four blocks (0-based) whose outputs are layer1..4 for a ViT of ``depth`` blocks: ViT-L's ``[7, 11,
    15, 23]`` scaled, ``floor(depth · k / 24 + 1/2) − 1`` for ``k = 8, 12, 16, 24``. A ``ValueError`` when
    they are not four distinct blocks (depths below 6 other than 4; give ``out_indices`` then)."""
    blocks = tuple(int(math.floor(depth * k / 24 + 0.5)) - 1 for k in (8, 12, 16, 24))
    if depth < 1 or blocks[0] < 0 or any(b >= a for a, b in zip(blocks[1:], blocks)):
        raise ValueError(
            f"a ViT of {depth} blocks has no four distinct feature blocks by the rule floor(d*k/24 + 1/2) - 1 "
            f"(got {list(blocks)}); give backbone_config['out_indices'] (four stage indices, block k = stage k+1)"
        )
    return blocks


def _block_indices(config, out_indices: Optional[Sequence[int]]) -> Tuple[int, int, int, int]:
    """``out_indices`` (``transformers``' stage numbering) as four 0-based blocks, or the default rule."""
    depth = config.num_hidden_layers
    if out_indices is None or list(out_indices) == [depth]:  # absent, or transformers' own default (last stage only)
        return default_block_indices(depth)
    stages = [int(i) for i in out_indices]
    if len(stages) != 4 or any(not 1 <= s <= depth for s in stages) or any(b <= a for a, b in zip(stages, stages[1:])):
        raise ValueError(
            f"backbone_config['out_indices'] must be four increasing stage indices in 1..{depth} (stage k = the output "
            f"of block k-1; ViT-L's default is [8, 12, 16, 24]), got {list(out_indices)}"
        )
    return tuple(s - 1 for s in stages)


def dinov2_config(backbone_config) -> Tuple[Any, type, Tuple[int, int, int, int]]:
    """``(config, model class, blocks)`` for a ``backbone_config``: a dict with ``model_type`` ``"dinov2"`` or
    ``"dinov2_with_registers"`` and any of the config class's keys, or such a config object."""
    if isinstance(backbone_config, (Dinov2Config, Dinov2WithRegistersConfig)):
        values = backbone_config.to_dict()
    elif isinstance(backbone_config, dict):
        values = dict(backbone_config)
    else:
        raise TypeError(f"backbone_config must be a dict or a DINOv2 config, got {type(backbone_config).__name__}")
    model_type = values.pop("model_type", None)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"backbone_config['model_type'] must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    out_indices = values.pop("out_indices", None)
    values.pop("out_features", None)
    values.pop("stage_names", None)
    config_class, model_class = MODEL_TYPES[model_type]
    config = config_class(**values)
    patch = config.patch_size
    if not isinstance(patch, int):
        raise ValueError(f"backbone_config: patch_size must be one integer, got {patch!r}")
    return config, model_class, _block_indices(config, out_indices)


# --- the stages -------------------------------------------------------------------------------------------------


def _reentrant(checkpoint_func) -> bool:
    """Whether a checkpoint function set by ``activation_checkpointing_enable`` checkpoints reentrantly."""
    return getattr(checkpoint_func, "keywords", {}).get("use_reentrant", True) is not False


class Dinov2PatchStage(nn.Module):
    """layer0: ``transformers``' DINOv2 embeddings; returns the patch tokens (position embeddings added, CLS
    and register tokens set aside) as a map ``(B, C, H // patch, W // patch)``."""

    def __init__(self, embeddings: nn.Module, patch_size: int, num_prefix_tokens: int):
        super().__init__()
        self.embeddings = embeddings
        self.patch_size = patch_size
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        tokens = self.embeddings(pixel_values)[:, self.num_prefix_tokens :]
        grid = (height // self.patch_size, width // self.patch_size)
        return tokens.transpose(1, 2).reshape(batch, tokens.shape[-1], *grid)

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        """``(batch, 1 + R, C)``: the CLS token with its position embedding and the ``R`` register tokens, as the
        embeddings put them in front of the patch tokens (they do not depend on the image)."""
        emb = self.embeddings
        parts = [emb.cls_token + emb.position_embeddings[:, :1]]
        if getattr(emb, "register_tokens", None) is not None:
            parts.append(emb.register_tokens)
        return emb.dropout(torch.cat(parts, dim=1).expand(batch, -1, -1))


class Dinov2BlockStage(nn.Module):
    """layer1..4: a group of consecutive DINOv2 blocks (``blocks``, keyed by their index in the network) on the
    token sequence. The first stage takes layer0's map and puts the CLS and register tokens back in front.

    :meth:`feature_map` is the stage's side output for the heads and HAC. The blocks checkpoint themselves
    (``transformers``' per-block ``GradientCheckpointingLayer``) when the model enables gradient checkpointing:
    ``checkpoints_own_layers`` tells the model's stage runner not to checkpoint the stage around them.
    """

    checkpoints_own_layers = True

    def __init__(self, blocks: Dict[int, nn.Module], stride: int, patch_size: int, num_prefix_tokens: int):
        super().__init__()
        self.blocks = nn.ModuleDict({str(i): block for i, block in blocks.items()})
        self.stride = stride
        self.patch_size = patch_size
        self.num_prefix_tokens = num_prefix_tokens
        self.layernorm: Optional[nn.Module] = None  # set on layer4 when the backbone applies its final norm
        object.__setattr__(self, "_patch_stage", None)  # layer1: layer0, for the prefix tokens (a reference)
        object.__setattr__(self, "_norm_owner", None)  # layer1..3: layer4, whose layernorm they use (a reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # layer1: layer0's (possibly rearranged) map → the token sequence
            if self._patch_stage is None:
                raise RuntimeError("this DINOv2 stage takes a token sequence, not a map")
            tokens = x.flatten(2).transpose(1, 2)
            x = torch.cat([self._patch_stage.prefix_tokens(x.shape[0]).to(tokens.dtype), tokens], dim=1)
        for block in self.blocks.values():
            x = self._run_block(block, x)
        return x

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One block; under gradient checkpointing a frozen block is not checkpointed, and under reentrant
        checkpointing a trainable block whose input needs no gradient gets one that does (or its weights would
        get none), as the model's stage runner does for stages."""
        enabled = getattr(block, "gradient_checkpointing", False)
        if not enabled:
            return block(x)
        trainable = any(p.requires_grad for p in block.parameters())
        if not trainable:
            block.gradient_checkpointing = False
        elif block.training and torch.is_grad_enabled() and not x.requires_grad and _reentrant(block._gradient_checkpointing_func):
            x = x.detach().requires_grad_(True)
        try:
            return block(x)
        finally:
            block.gradient_checkpointing = enabled

    def feature_map(self, tokens: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """The side output: patch tokens → (final LayerNorm) → ``(N, C, H // patch, W // patch)`` → bilinear
        (``align_corners=False``) to ``(ceil(H / stride), ceil(W / stride))``."""
        height, width = image_size
        grid = (height // self.patch_size, width // self.patch_size)
        patches = tokens[:, self.num_prefix_tokens :]
        if patches.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"{patches.shape[1]} patch tokens do not fit a {grid[0]}x{grid[1]} grid for an image of {height}x{width}")
        norm = self.layernorm if self._norm_owner is None else self._norm_owner.layernorm
        if norm is not None:
            patches = norm(patches)
        fmap = patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[-1], *grid)
        size = (math.ceil(height / self.stride), math.ceil(width / self.stride))
        if tuple(fmap.shape[-2:]) != size:
            fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
        return fmap

    def extra_repr(self) -> str:
        keys = list(self.blocks)
        return f"blocks={keys[0]}..{keys[-1]}, stride={self.stride}"


def split(network: nn.Module, blocks: Tuple[int, ...], apply_layernorm: bool, **_) -> Tuple[nn.Module, ...]:
    """Cut a ``Dinov2Model`` / ``Dinov2WithRegistersModel`` into layer0 (embeddings) and layer1..4 (the block
    groups ending at ``blocks``). Blocks after the last of ``blocks`` are left out, and so is the mask token
    (used only for masked-image pretraining)."""
    config = network.config
    patch = config.patch_size
    prefix = 1 + getattr(config, "num_register_tokens", 0)
    embeddings = network.embeddings
    if getattr(embeddings, "mask_token", None) is not None:
        embeddings.mask_token = None
    layer0 = Dinov2PatchStage(embeddings, patch, prefix)
    layers = network.encoder.layer
    starts = (0,) + tuple(b + 1 for b in blocks[:-1])
    stages = [
        Dinov2BlockStage({i: layers[i] for i in range(start, end + 1)}, stride, patch, prefix)
        for start, end, stride in zip(starts, blocks, FEATURE_STRIDES)
    ]
    object.__setattr__(stages[0], "_patch_stage", layer0)
    if apply_layernorm:
        stages[-1].layernorm = network.layernorm
        for stage in stages[:-1]:
            object.__setattr__(stage, "_norm_owner", stages[-1])
    for stage in (layer0, *stages):
        for module in stage.modules():
            module._srha_backbone_init = partial(init_module, config=config)
    return (layer0, *stages)


def key_map(key: str, blocks: Tuple[int, ...], apply_layernorm: bool) -> Optional[str]:
    """A ``Dinov2Model`` state-dict key → its staged name (``None``: not part of the stages)."""
    for prefix in ("dinov2.", "dinov2_with_registers."):  # a classification model's base-model prefix
        if key.startswith(prefix):
            key = key[len(prefix) :]
    if key.startswith("embeddings."):
        return f"layer0.{key}"
    if key.startswith("layernorm."):
        return f"layer4.{key}" if apply_layernorm else None
    if key.startswith("encoder.layer."):
        index, _, rest = key[len("encoder.layer.") :].partition(".")
        if index.isdigit():
            for stage, last in enumerate(blocks, start=1):
                if int(index) <= last:
                    return f"layer{stage}.blocks.{index}.{rest}"
    return None


@torch.no_grad()
def init_module(module: nn.Module, config) -> None:
    """A random DINOv2 as ``transformers`` initialises one (the model's ``_init_weights`` calls this for the
    backbone's modules): truncated-normal (std ``initializer_range``) linear and conv weights with zero bias,
    LayerNorm 1 / 0, truncated-normal position embeddings and CLS token, zero mask and register tokens,
    LayerScale at ``layerscale_value``."""
    std = config.initializer_range
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        init.trunc_normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif hasattr(module, "lambda1"):  # LayerScale
        init.constant_(module.lambda1, config.layerscale_value)
    elif hasattr(module, "position_embeddings") and hasattr(module, "cls_token"):  # the embeddings
        init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
        init.trunc_normal_(module.cls_token, mean=0.0, std=std)
        for name in ("mask_token", "register_tokens"):
            if getattr(module, name, None) is not None:
                init.zeros_(getattr(module, name))


# --- weights ----------------------------------------------------------------------------------------------------


def read_weights(source: str, model_class: type, config, hub_id: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """A DINOv2 state dict (``transformers``' key layout) for ``backbone_pretrained=source``: a local folder
    saved by a DINOv2 model, backbone or classifier, or a Hub id, read with ``model_class.from_pretrained``;
    ``"imagenet"`` / ``"torchvision"`` mean ``hub_id`` (the preset's own checkpoint). Refused
    (:class:`BackboneLoadError`) when the class leaves any tensor missing or mis-shaped, or when the
    checkpoint's architecture differs from ``config`` in a field that changes the computation."""
    if source in IMAGENET_SOURCES:
        if hub_id is None:
            raise BackboneLoadError(f"backbone_pretrained={source!r}: this DINOv2 backbone has no default checkpoint; give a folder or Hub id")
        source = hub_id
    try:
        network, info = model_class.from_pretrained(source, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001
        raise BackboneLoadError(
            f"could not load {model_class.__name__} from {source!r} ({type(exc).__name__}: {exc}); offline, pass a local folder "
            "saved with save_pretrained (e.g. a snapshot of facebook/dinov2-large)"
        ) from exc
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("mask_token")]  # the stages leave it out
    bad = missing + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        raise BackboneLoadError(f"{model_class.__name__}.from_pretrained({source!r}) left {len(bad)} tensors missing or mis-shaped: {bad[:5]}")
    differ = [f for f in _ARCHITECTURE_FIELDS if getattr(network.config, f, None) != getattr(config, f, None)]
    if differ:
        found = {f: getattr(network.config, f, None) for f in differ}
        wanted = {f: getattr(config, f, None) for f in differ}
        raise BackboneLoadError(f"the checkpoint at {source!r} is a different DINOv2: {found} where the backbone config has {wanted}")
    return network.state_dict()


# --- the spec ---------------------------------------------------------------------------------------------------


def _build(model_class: type, config) -> nn.Module:
    return model_class(copy.deepcopy(config))


def dinov2_spec(backbone_config, name: Optional[str] = None, hub_id: Optional[str] = None) -> BackboneSpec:
    """The :class:`BackboneSpec` of a DINOv2 (with or without registers) described by ``backbone_config`` (a dict
    with ``model_type`` ``"dinov2"`` / ``"dinov2_with_registers"`` and the config class's keys, or such a config;
    ``out_indices``: see the module docstring). ``name`` defaults to the model type; ``hub_id`` is what
    ``backbone_pretrained="imagenet"`` loads. Style elimination is off by default for it (docs/method.md §1.2)."""
    config, model_class, blocks = dinov2_config(backbone_config)
    apply_layernorm = bool(config.apply_layernorm)
    layer_class = model_class.__name__.replace("Model", "Layer")
    embeddings_class = model_class.__name__.replace("Model", "Embeddings")
    return BackboneSpec(
        name=name or config.model_type,
        build=partial(_build, model_class, config),
        split=partial(split, blocks=blocks, apply_layernorm=apply_layernorm),
        channels=(config.hidden_size,) * 5,
        strides=(config.patch_size, *FEATURE_STRIDES),
        key_map=partial(key_map, blocks=blocks, apply_layernorm=apply_layernorm),
        imagenet=partial(read_weights, model_class=model_class, config=config, hub_id=hub_id),
        weights=partial(read_weights, model_class=model_class, config=config, hub_id=hub_id),  # every other source
        paper=False,
        no_split_modules=(layer_class, embeddings_class),
        style_elimination=False,
        num_blocks=config.num_hidden_layers,
    )


def _family(model_type: str, hub_prefix: str):
    def resolve(size: str) -> BackboneSpec:
        if size not in PRESETS:
            raise ValueError(f"{model_type}:{size!r} is not a preset; expected one of {', '.join(PRESETS)} (or use backbone_config)")
        values = {"model_type": model_type, **PRESETS[size]}
        hub_id = None if size == "tiny" else f"{hub_prefix}-{size}"
        return dinov2_spec(values, name=f"{model_type}:{size}", hub_id=hub_id)

    return resolve


register_backbone_family("dinov2", _family("dinov2", "facebook/dinov2"), "dinov2:<tiny|small|base|large|giant>")
register_backbone_family(
    "dinov2_with_registers", _family("dinov2_with_registers", "facebook/dinov2-with-registers"),
    "dinov2_with_registers:<tiny|small|base|large|giant>",
)  # fmt: skip
