"""SRHAConfig: every knob of docs/method.md §1-§3, with the authors' values as defaults."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict, Optional, Sequence

from transformers import PretrainedConfig
from transformers.utils import logging

from .backbones import available_backbones, backbone_families, is_backbone_name
from .data.labels import CLASS_NAMES
from .heads import available_decode_heads
from .srm import DEFAULT_CONCENTRATION

logger = logging.get_logger(__name__)

TEACHER_MODES = ("faithful", "lean")
ALIGNMENT_LAYERS = ("layer1", "layer2", "layer3", "layer4")

LIST_KEYS = ("aspp_rates", "alignment_layers")  # stored as lists (JSON round trip)
# Keys that transformers' PretrainedConfig itself takes or writes into a config.json, and the provenance
# that srha_hf's checkpoint conversion records: accepted besides SRHAConfig's own arguments.
_TRANSFORMERS_KEYS = frozenset(inspect.signature(PretrainedConfig.__init__).parameters) | frozenset(PretrainedConfig().to_dict()) | {
    "num_labels", "model_type", "transformers_version", "_name_or_path", "name_or_path", "_commit_hash", "attn_implementation",
    "experts_implementation", "output_attentions", "torch_dtype", "dtype", "original_checkpoint",
}  # fmt: skip


class SRHAConfig(PretrainedConfig):
    r"""Configuration of :class:`~srha_hf.SRHAForSemanticSegmentation` and of its SRHA objective. Every
    default is the authors' value.

    Unknown keys: a keyword given to the constructor that is neither SRHAConfig's nor transformers' is an
    error naming the closest valid one (``SRHAConfig(pc_wieght=5)``). A saved ``config.json``
    (``from_pretrained``, ``from_dict``, ``from_json_file``) may hold keys that a tool set on the config
    after it was built (``config.use_cache = False``): those are kept as attributes, as transformers keeps
    them, and saved again. An unknown key of a ``config.json`` that is close to one of SRHAConfig's own
    (a hand-edited typo: it changes nothing) is also kept, with a warning naming the key it resembles.

    Args:
        backbone (`str`, defaults to `"resnet50"`): `"resnet50"`, `"resnet101"`, `"mobilenetv2"` or
            `"shufflenetv2"` (the paper's four), or `"efficientnet_lite0"` (not the paper's: its ImageNet
            weights install offline, docs/method.md §1.2), or a name registered with
            `srha_hf.backbones.register_backbone`, or
            `"timm:<model name>"`: a timm network at output stride 16 (the optional extra `srha_hf[timm]`;
            docs/training.md "timm backbones"). With `backbone_config` set it records `"hf:<model_type>"`
            (whatever was passed).
        backbone_config (`PretrainedConfig` or `dict`, *optional*): a transformers backbone config (an object, or a
            dict with `model_type`, e.g. `{"model_type": "convnext", "depths": [3, 3, 9, 3]}`) whose stem and four
            stages become layer0..layer4 (`srha_hf/backbones/hf.py`; ResNet, BiT, ConvNeXt / V2, Swin / V2; not
            the paper's backbones). It takes precedence over `backbone`, is saved nested in `config.json`, and is
            never fetched: a string naming a Hub model is refused. Default `None`: `backbone` names the network.
        backbone_output_stride (`int`, *optional*): the output stride of a `backbone_config` backbone: `None` (16
            where it can be dilated: ResNet by the project's layer4 edit, BiT by its `output_stride`; otherwise
            its native stride, 32 for ConvNeXt and Swin), 16, or the native stride. A built model records the
            measured one here. Only `None` or 16 without `backbone_config` (the registered backbones are OS16).
        decode_head (`str`, defaults to `"deeplabv3plus"`): `"deeplabv3plus"` (docs/method.md §1.3) or
            `"mask2former"` (docs/method.md §4; the `m2f_*` arguments), or a name registered with
            `srha_hf.heads.register_decode_head`.
        ignore_index (`int`, defaults to 255): the label value that no loss or metric counts.
        backbone_pretrained (`str`, *optional*): ImageNet initialisation of the backbone: `None` (random
            init, the default), `"imagenet"` (this backbone's own ImageNet weights: torchvision's
            IMAGENET1K_V1 for the paper's four, the packaged checkpoint for Lite0), `"torchvision"`
            (torchvision's IMAGENET1K_V1 weights), a local `.pth`/`.safetensors` file, or a Hub repo id such
            as `"timm/resnet50.tv_in1k"`. With `backbone_config`: a transformers backbone (or image-classification)
            folder or Hub id, read by the backbone's concrete class (`ResNetBackbone.from_pretrained`).
            The model consumes it when it is built (a failed load raises) and
            records it in `backbone_pretrained_source`; the config it saves asks for no load.
        backbone_pretrained_source (`str`, *optional*): where a built model's ImageNet weights came from.
        DINOv2 (beyond the paper, docs/method.md §1.2): `backbone_config={"model_type": "dinov2" |
            "dinov2_with_registers", ...}` (its config's keys, optionally `out_indices`, four stage indices) is
            staged by `srha_hf/backbones/dinov2.py`; `backbone_pretrained` is then a local folder saved by a DINOv2
            model/backbone or a Hub id such as `"facebook/dinov2-large"`. Also `backbone="dinov2:<size>"` (presets
            tiny/small/base/large/giant).
        backbone_freeze (`bool`, defaults to `False`): freeze the whole backbone (layer0..layer4: no gradients,
            always in eval mode); only the heads train.
        backbone_frozen_blocks (`int`, defaults to 0): freeze the first N transformer blocks of a ViT backbone
            (DINOv2; SoMA freezes 8 of ViT-L's 24). An error for a backbone without transformer blocks or with
            fewer than N.
        aspp_rates (`Sequence[int]`, defaults to `(6, 12, 18)`), aspp_channels (`int`, defaults to 256),
            low_level_channels (`int`, defaults to 48), decoder_channels (`int`, defaults to 256),
            dsn_channels (`int`, defaults to 512), dsn_dropout (`float`, defaults to 0.1): the head sizes of
            docs/method.md §1.3.
        freeze_layer0 (`bool`, defaults to `True`): docs/method.md §1.4 (layer0 without gradients and in eval mode).
        style_elimination (`bool`, *optional*): docs/method.md §1.1 step 3 (always on in the reference, §9 M4).
            `None` (the default) means the backbone's default: on for the CNN backbones (the reference), off for
            DINOv2 (docs/method.md §1.2: a foundation model's token statistics carry content, and its frozen
            blocks expect the patch embeddings' scale).
        style_elimination_unbiased_std (`bool`, defaults to `True`): §9 M7, faithful `True`.
        resnet_dilate_all_layer4_blocks (`bool`, defaults to `True`): §9 M9, faithful `True`; `False` =
            torchvision's `replace_stride_with_dilation` (first block of layer4 undilated).
        d16_dilate_only_stride2 (`bool`, defaults to `True`): §9 M10, faithful `True`; `False` also dilates
            the later spatial convs of layer3 (MobileNetV2, ShuffleNetV2, Lite0).
        srm (`bool`, defaults to `True`): SRM (docs/method.md §2) on in training.
        srm_concentration (`float`, defaults to 0.0156): the Dirichlet α of the mixing weights (the reference's).
        srm_include_ignore (`bool`, defaults to `True`): §9 M5, faithful `True` (the ignore region is a region).
        srm_unbiased_std (`bool`, defaults to `False`): §9 M7, faithful `False`.
        srm_detach_rearranged (`bool`, defaults to `True`): §9 M8, faithful `True`.
        alignment_layers (`Sequence[str]`, defaults to layer1-layer4): the layers HAC aligns (docs/method.md §3).
        ga_weights, ra_weights, la_weights (`Sequence[float]`, defaults to `(0.4, 0.6, 0.8, 1.0)`): per-layer
            weights of GA, RA and LA; a layer whose weight is <= 0 is skipped.
        ra_include_ignore (`bool`, defaults to `True`): §9 M5, faithful `True` (the ignore region is a region in RA).
        pc_weight (`float`, defaults to 10): the weight of prediction consistency.
        pc_mask_ignore (`bool`, defaults to `False`): §9 M6, faithful `False` (every pixel counts in PC).
        pc_stop_gradient (`bool`, defaults to `False`): §9 M6, faithful `False` (both halves get PC's
            gradient); `True` treats the original half's prediction as a fixed target.
        aux_weight (`float`, defaults to 0.4): the weight of the `dsn` CE.
        teacher_mode (`str`, defaults to `"faithful"`): §9 M1. `"faithful"`: the teacher's layers 1-4 use
            batch-statistics BN over `[original; teacher-rearranged]` with the teacher's own SRM draws, and
            only the original half is used. `"lean"`: eval-mode BN, no teacher SRM, originals only.
        teacher_ema_alpha (`float`, defaults to 1.0): §9 M2, faithful 1.0 (no EMA; the teacher stays the
            ImageNet backbone).
        m2f_num_queries (100), m2f_hidden_dim (256), m2f_num_heads (8), m2f_dim_feedforward (2048),
            m2f_decoder_layers (9 masked-attention layers; the query-only prediction makes 10 sets),
            m2f_conv_dim / m2f_mask_dim (256), m2f_encoder_layers (6), m2f_encoder_feedforward_dim (1024):
            the Mask2Former head's sizes (docs/method.md §4.2).
        m2f_train_num_points (12544), m2f_oversample_ratio (3), m2f_importance_sample_ratio (0.75),
            m2f_class_weight / m2f_mask_weight / m2f_dice_weight (2 / 5 / 5), m2f_no_object_weight (0.1),
            m2f_deep_supervision (`True`: the loss on all 10 prediction sets): the set criterion (§4.3).
        m2f_misdeclared_strides (`bool`, defaults to `True`): §9 MF1, faithful `True` (three FPN levels,
            res4/res3/res2, from the declared strides [1, 2, 2, 2]); `False` = the standard single level on res2.
        m2f_absent_class_targets (`bool`, defaults to `True`): §9 MF2, faithful `True` (all classes are
            targets, absent ones with empty masks); `False` = only the classes present in the image.
        m2f_pc_on_scores (`bool`, defaults to `True`): §9 MF3, faithful `True` (PC softmaxes the semantic
            scores as if they were logits); `False` = PC on the log-scores.
        num_labels (`int`, *optional*): 19 Cityscapes train IDs by default (with their `id2label`); a saved
            `config.json` gives `id2label` instead.
        kwargs: `id2label`, `label2id` and the other keys of transformers' `PretrainedConfig`.
    """

    model_type = "srha"

    def __init__(
        self,
        # the network (docs/method.md §1)
        backbone: str = "resnet50",
        decode_head: str = "deeplabv3plus",
        ignore_index: int = 255,
        backbone_pretrained: Optional[str] = None,
        backbone_pretrained_source: Optional[str] = None,
        backbone_config: Optional[Any] = None,
        backbone_output_stride: Optional[int] = None,
        backbone_freeze: bool = False,
        backbone_frozen_blocks: int = 0,
        aspp_rates: Sequence[int] = (6, 12, 18),
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        dsn_channels: int = 512,
        dsn_dropout: float = 0.1,
        freeze_layer0: bool = True,
        style_elimination: Optional[bool] = None,
        style_elimination_unbiased_std: bool = True,
        resnet_dilate_all_layer4_blocks: bool = True,
        d16_dilate_only_stride2: bool = True,
        # SRM (docs/method.md §2)
        srm: bool = True,
        srm_concentration: float = DEFAULT_CONCENTRATION,
        srm_include_ignore: bool = True,
        srm_unbiased_std: bool = False,
        srm_detach_rearranged: bool = True,
        # HAC, PC, the teacher (docs/method.md §3)
        alignment_layers: Sequence[str] = ALIGNMENT_LAYERS,
        ga_weights: Sequence[float] = (0.4, 0.6, 0.8, 1.0),
        ra_weights: Sequence[float] = (0.4, 0.6, 0.8, 1.0),
        la_weights: Sequence[float] = (0.4, 0.6, 0.8, 1.0),
        ra_include_ignore: bool = True,
        pc_weight: float = 10.0,
        pc_mask_ignore: bool = False,
        pc_stop_gradient: bool = False,
        aux_weight: float = 0.4,
        teacher_mode: str = "faithful",
        teacher_ema_alpha: float = 1.0,
        # the Mask2Former head (docs/method.md §4)
        m2f_num_queries: int = 100,
        m2f_hidden_dim: int = 256,
        m2f_num_heads: int = 8,
        m2f_dim_feedforward: int = 2048,
        m2f_decoder_layers: int = 9,
        m2f_conv_dim: int = 256,
        m2f_mask_dim: int = 256,
        m2f_encoder_layers: int = 6,
        m2f_encoder_feedforward_dim: int = 1024,
        m2f_train_num_points: int = 12544,
        m2f_oversample_ratio: float = 3.0,
        m2f_importance_sample_ratio: float = 0.75,
        m2f_class_weight: float = 2.0,
        m2f_mask_weight: float = 5.0,
        m2f_dice_weight: float = 5.0,
        m2f_no_object_weight: float = 0.1,
        m2f_deep_supervision: bool = True,
        m2f_misdeclared_strides: bool = True,
        m2f_absent_class_targets: bool = True,
        m2f_pc_on_scores: bool = True,
        num_labels: Optional[int] = None,
        **kwargs,
    ):
        values = {name: value for name, value in locals().items() if name in DEFAULTS}
        check_config_keys(kwargs)
        if num_labels is None:  # a saved config.json has id2label, not num_labels
            num_labels = len(kwargs["id2label"]) if kwargs.get("id2label") else len(CLASS_NAMES)
        values = _normalised(values)
        if num_labels == len(CLASS_NAMES) and "id2label" not in kwargs:
            kwargs["id2label"] = {i: name for i, name in enumerate(CLASS_NAMES)}
            kwargs["label2id"] = {name: i for i, name in enumerate(CLASS_NAMES)}
        for name, value in values.items():
            setattr(self, name, value)
        super().__init__(num_labels=num_labels, **kwargs)

    @property
    def num_stages(self) -> int:
        """The backbone's stages, layer0..layer4: the number of ``hidden_states`` (not a setting, not saved)."""
        return 5

    @classmethod
    def from_dict(cls, config_dict: Dict[str, Any], **kwargs):
        """As transformers' ``from_dict``, keeping a saved config's unknown keys (see the class docstring)."""
        known, extra = _split_saved_keys(config_dict)
        outcome = super().from_dict(known, **kwargs)
        config = outcome[0] if isinstance(outcome, tuple) else outcome
        _keep_saved_keys(config, extra)
        return outcome

    @classmethod
    def from_json_file(cls, json_file):
        """As transformers' ``from_json_file``, keeping a saved config's unknown keys (see the class docstring)."""
        known, extra = _split_saved_keys(cls._dict_from_json_file(json_file))
        config = cls(**known)
        _keep_saved_keys(config, extra)
        return config


# Every argument of SRHAConfig besides num_labels, with its default (the authors' value).
DEFAULTS = {
    name: p.default for name, p in inspect.signature(SRHAConfig.__init__).parameters.items() if name not in ("self", "num_labels", "kwargs")
}


def _closest_key(key: str) -> Optional[str]:
    close = difflib.get_close_matches(key, list(DEFAULTS) + ["num_labels", "id2label", "label2id"], n=1, cutoff=0.6)
    return close[0] if close else None


def _split_saved_keys(config_dict: Dict[str, Any]):
    """A saved config's keys that the constructor takes, and the others (set on the config after it was built)."""
    known = {k: v for k, v in config_dict.items() if k in DEFAULTS or k in _TRANSFORMERS_KEYS}
    return known, {k: v for k, v in config_dict.items() if k not in known}


def _keep_saved_keys(config: "SRHAConfig", extra: Dict[str, Any]) -> None:
    """Set a saved config's unknown keys on ``config``; warn for those that look like a typo of SRHAConfig's own."""
    for key, value in extra.items():
        setattr(config, key, value)
        close = _closest_key(key)
        if close is not None:
            logger.warning(
                f"config.json has the key {key!r}, which SRHAConfig does not take; did you mean {close!r}? "
                f"It is kept as an attribute and changes nothing ({close!r} is {getattr(config, close, None)!r})."
            )
        else:
            logger.info(f"config.json key {key!r} is not SRHAConfig's; kept as an attribute")


def check_config_keys(kwargs: dict) -> None:
    """Refuse keywords that are neither SRHAConfig's nor transformers' own, naming the closest valid key
    (``SRHAConfig(pc_wieght=5.0)`` would otherwise store ``pc_wieght`` and train with ``pc_weight`` 10)."""
    unknown = [key for key in kwargs if key not in _TRANSFORMERS_KEYS]
    if not unknown:
        return
    key = unknown[0]
    close = _closest_key(key)
    hint = f"; did you mean {close!r}?" if close else f"; SRHAConfig takes {', '.join(DEFAULTS)}"
    raise ValueError(f"SRHAConfig got an unknown key {key!r}{hint}")


def _normalised(values: dict) -> dict:
    """The constructor's values checked (:func:`_validate`) and normalised: a ``backbone_config`` dict as a
    config object (``backbone`` then ``"hf:<model_type>"``), lists as lists, alignment weights as floats."""
    if values["backbone_config"] is not None:
        from .backbones.hf import PREFIX, as_backbone_config

        values["backbone_config"] = as_backbone_config(values["backbone_config"])
        values["backbone"] = f"{PREFIX}:{values['backbone_config'].model_type}"
    _validate(values)
    _validate_backbone_extras(values)
    for key in LIST_KEYS:
        values[key] = list(values[key])
    for key in ("ga_weights", "ra_weights", "la_weights"):
        values[key] = [float(w) for w in values[key]]
    return values


def _validate(values: dict) -> None:
    """Refuse unknown backbones, heads, teacher modes and alignment layers, and weight lists whose
    length differs from the alignment layers', naming the key and what was expected."""
    if values["backbone_config"] is None:
        if str(values["backbone"]).startswith("hf:"):
            raise ValueError(
                f"backbone={values['backbone']!r} is a transformers backbone: give it as backbone_config (a config, or a dict with model_type)"
            )
        if values["backbone_output_stride"] not in (None, 16):
            raise ValueError(
                f"backbone_output_stride={values['backbone_output_stride']!r}: the registered backbones are built at output stride 16; "
                "another stride needs a transformers backbone (backbone_config)"
            )
    elif values["backbone_output_stride"] not in (None, 16, 32):
        raise ValueError(f"backbone_output_stride={values['backbone_output_stride']!r}; expected None, 16 or 32")
    if values["backbone_config"] is None and not is_backbone_name(values["backbone"]):
        expected = list(available_backbones()) + list(backbone_families().values())
        raise ValueError(f"backbone={values['backbone']!r} is not supported; expected one of {', '.join(expected)}")
    for key, allowed in (("decode_head", available_decode_heads()), ("teacher_mode", TEACHER_MODES)):
        if values[key] not in allowed:
            raise ValueError(f"{key}={values[key]!r} is not supported; expected one of {', '.join(allowed)}")
    layers = tuple(values["alignment_layers"])
    for layer in layers:
        if layer not in ALIGNMENT_LAYERS:
            raise ValueError(f"alignment layer {layer!r} is not one of {', '.join(ALIGNMENT_LAYERS)}")
    for key in ("ga_weights", "ra_weights", "la_weights"):
        if len(tuple(values[key])) != len(layers):
            raise ValueError(f"{key} has {len(tuple(values[key]))} entries but alignment_layers has {len(layers)}")


# --- the backbone keys beyond the paper (freezing, style elimination's per-backbone default) ---------------------


def _validate_backbone_extras(values: dict) -> None:
    """Check ``backbone_freeze``, ``backbone_frozen_blocks`` and ``style_elimination`` (``backbone_config`` is
    checked and normalised by :func:`_normalised`: a DINOv2 config goes to :mod:`srha_hf.backbones.dinov2`)."""
    for key in ("backbone_freeze",) + (() if values["style_elimination"] is None else ("style_elimination",)):
        if not isinstance(values[key], bool):
            raise ValueError(f"{key} must be true or false, got {values[key]!r}")
    frozen = values["backbone_frozen_blocks"]
    if isinstance(frozen, bool) or not isinstance(frozen, int) or frozen < 0:
        raise ValueError(f"backbone_frozen_blocks must be an integer >= 0, got {frozen!r}")
