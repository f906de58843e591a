"""SRHAConfig: every knob of docs/method.md §1-§3, with the authors' values as defaults."""

from __future__ import annotations

from typing import Optional

from transformers import PretrainedConfig

from .backbones import BACKBONES
from .data.labels import CLASS_NAMES
from .srm import DEFAULT_CONCENTRATION

DECODE_HEADS = ("deeplabv3plus", "mask2former")
TEACHER_MODES = ("faithful", "lean")
ALIGNMENT_LAYERS = ("layer1", "layer2", "layer3", "layer4")

# Every key of SRHAConfig besides num_labels / id2label (documented in the class docstring), with
# the authors' value as its default, grouped as the docstring groups them.
DEFAULTS = {
    # the network (docs/method.md §1)
    "backbone": "resnet50",
    "decode_head": "deeplabv3plus",
    "ignore_index": 255,
    "backbone_pretrained": None,
    "backbone_pretrained_source": None,
    "aspp_rates": (6, 12, 18),
    "aspp_channels": 256,
    "low_level_channels": 48,
    "decoder_channels": 256,
    "dsn_channels": 512,
    "dsn_dropout": 0.1,
    "freeze_layer0": True,
    "style_elimination": True,
    "style_elimination_unbiased_std": True,
    "resnet_dilate_all_layer4_blocks": True,
    "d16_dilate_only_stride2": True,
    # SRM (docs/method.md §2)
    "srm": True,
    "srm_concentration": DEFAULT_CONCENTRATION,
    "srm_include_ignore": True,
    "srm_unbiased_std": False,
    "srm_detach_rearranged": True,
    # HAC, PC, the teacher (docs/method.md §3)
    "alignment_layers": ALIGNMENT_LAYERS,
    "ga_weights": (0.4, 0.6, 0.8, 1.0),
    "ra_weights": (0.4, 0.6, 0.8, 1.0),
    "la_weights": (0.4, 0.6, 0.8, 1.0),
    "ra_include_ignore": True,
    "pc_weight": 10.0,
    "pc_mask_ignore": False,
    "pc_stop_gradient": False,
    "aux_weight": 0.4,
    "teacher_mode": "faithful",
    "teacher_ema_alpha": 1.0,
    # the Mask2Former head (docs/method.md §4)
    "m2f_num_queries": 100,
    "m2f_hidden_dim": 256,
    "m2f_num_heads": 8,
    "m2f_dim_feedforward": 2048,
    "m2f_decoder_layers": 9,
    "m2f_conv_dim": 256,
    "m2f_mask_dim": 256,
    "m2f_encoder_layers": 6,
    "m2f_encoder_feedforward_dim": 1024,
    "m2f_train_num_points": 12544,
    "m2f_oversample_ratio": 3.0,
    "m2f_importance_sample_ratio": 0.75,
    "m2f_class_weight": 2.0,
    "m2f_mask_weight": 5.0,
    "m2f_dice_weight": 5.0,
    "m2f_no_object_weight": 0.1,
    "m2f_deep_supervision": True,
    "m2f_misdeclared_strides": True,
    "m2f_absent_class_targets": True,
    "m2f_pc_on_scores": True,
}
LIST_KEYS = ("aspp_rates", "alignment_layers")  # stored as lists (JSON round trip)


class SRHAConfig(PretrainedConfig):
    r"""Configuration of :class:`~srha_hf.SRHAForSemanticSegmentation` and of its SRHA objective.

    Model (docs/method.md §1):
        backbone: ``"resnet50"``, ``"resnet101"``, ``"mobilenetv2"`` or ``"shufflenetv2"`` (the paper's four), or
            ``"efficientnet_lite0"`` (not the paper's: its ImageNet weights install offline, docs/method.md §1.2).
        decode_head: ``"deeplabv3plus"`` (docs/method.md §1.3) or ``"mask2former"`` (docs/method.md §4; the ``m2f_*`` keys).
        num_labels / id2label: 19 Cityscapes train IDs by default. ignore_index: 255.
        backbone_pretrained: ImageNet initialisation of the backbone: ``None`` (random init, the
            default), ``"imagenet"`` (this backbone's own ImageNet weights: torchvision's IMAGENET1K_V1
            for the paper's four, the packaged checkpoint for Lite0), ``"torchvision"`` (torchvision's
            IMAGENET1K_V1 weights), a local
            ``.pth``/``.safetensors`` file, or a Hub repo id such as ``"timm/resnet50.tv_in1k"``. The
            model consumes it when it is built (a failed load raises) and records it in
            ``backbone_pretrained_source``; the config it saves asks for no load.
        aspp_rates, aspp_channels, low_level_channels, decoder_channels, dsn_channels,
            dsn_dropout: the head sizes of docs/method.md §1.3.
        freeze_layer0: docs/method.md §1.4 (layer0 without gradients and in eval mode).
        style_elimination: docs/method.md §1.1 step 3 (always on in the reference, §9 M4).
        style_elimination_unbiased_std: §9 M7, faithful ``True``.
        resnet_dilate_all_layer4_blocks: §9 M9, faithful ``True``; ``False`` = torchvision's
            ``replace_stride_with_dilation`` (first block of layer4 undilated).
        d16_dilate_only_stride2: §9 M10, faithful ``True``; ``False`` also dilates the later 3x3
            convs of layer3 (MobileNetV2, ShuffleNetV2).

    SRM (docs/method.md §2):
        srm: on in training. srm_concentration: Dirichlet α (0.0156, the reference's default).
        srm_include_ignore: §9 M5, faithful ``True`` (ignore region is a region).
        srm_unbiased_std: §9 M7, faithful ``False``.
        srm_detach_rearranged: §9 M8, faithful ``True``.

    HAC and losses (docs/method.md §3):
        alignment_layers and ga_weights / ra_weights / la_weights (0.4, 0.6, 0.8, 1.0); a layer
            whose weight is <= 0 is skipped.
        ra_include_ignore: §9 M5, faithful ``True`` (the ignore region is a region in RA).
        pc_weight: 10. pc_mask_ignore: §9 M6, faithful ``False`` (every pixel counts in PC).
        pc_stop_gradient: §9 M6, faithful ``False`` (both halves get PC's gradient); ``True`` treats the
            original half's prediction as a fixed target, so PC only pulls the rearranged half to it.
        aux_weight: 0.4 (the dsn CE).
        teacher_mode: §9 M1. ``"faithful"``: the teacher's layers 1-4 use batch-statistics BN over
            ``[original; teacher-rearranged]`` with the teacher's own SRM draws, and only the original
            half is used. ``"lean"``: eval-mode BN, no teacher SRM, originals only (batch B).
        teacher_ema_alpha: §9 M2, faithful ``1.0`` (no EMA; the teacher stays the ImageNet backbone).

    Mask2Former head (docs/method.md §4, ``decode_head="mask2former"``; see :mod:`srha_hf.heads.mask2former`):
        m2f_num_queries (100), m2f_hidden_dim (256), m2f_num_heads (8), m2f_dim_feedforward (2048),
            m2f_decoder_layers (9 masked-attention layers; the query-only prediction makes 10 sets),
            m2f_conv_dim / m2f_mask_dim (256), m2f_encoder_layers (6), m2f_encoder_feedforward_dim (1024).
        m2f_train_num_points (12544), m2f_oversample_ratio (3), m2f_importance_sample_ratio (0.75),
            m2f_class_weight / m2f_mask_weight / m2f_dice_weight (2 / 5 / 5), m2f_no_object_weight (0.1),
            m2f_deep_supervision (the loss on all 10 prediction sets).
        m2f_misdeclared_strides: §9 MF1, faithful ``True`` (three FPN levels, res4/res3/res2, from the
            declared strides [1, 2, 2, 2]); ``False`` = the standard single FPN level on res2.
        m2f_absent_class_targets: §9 MF2, faithful ``True`` (all classes are targets, absent ones with
            empty masks); ``False`` = only the classes present in the image.
        m2f_pc_on_scores: §9 MF3, faithful ``True`` (PC softmaxes the semantic scores as if they were
            logits); ``False`` = PC on the log-scores, i.e. on the scores normalised over the classes.
    """

    model_type = "srha"

    def __init__(self, num_labels: Optional[int] = None, **kwargs):
        if num_labels is None:  # a saved config.json has id2label, not num_labels
            num_labels = len(kwargs["id2label"]) if kwargs.get("id2label") else len(CLASS_NAMES)
        values = {name: kwargs.pop(name, default) for name, default in DEFAULTS.items()}
        _validate(values)
        for key in LIST_KEYS:
            values[key] = list(values[key])
        for key in ("ga_weights", "ra_weights", "la_weights"):
            values[key] = [float(w) for w in values[key]]
        if num_labels == len(CLASS_NAMES) and "id2label" not in kwargs:
            kwargs["id2label"] = {i: name for i, name in enumerate(CLASS_NAMES)}
            kwargs["label2id"] = {name: i for i, name in enumerate(CLASS_NAMES)}
        for name, value in values.items():
            setattr(self, name, value)
        super().__init__(num_labels=num_labels, **kwargs)


def _validate(values: dict) -> None:
    """Refuse unknown backbones, heads, teacher modes and alignment layers, and weight lists whose
    length differs from the alignment layers', naming the key and what was expected."""
    for key, allowed in (("backbone", BACKBONES), ("decode_head", DECODE_HEADS), ("teacher_mode", TEACHER_MODES)):
        if values[key] not in allowed:
            raise ValueError(f"{key}={values[key]!r} is not supported; expected one of {', '.join(allowed)}")
    layers = tuple(values["alignment_layers"])
    for layer in layers:
        if layer not in ALIGNMENT_LAYERS:
            raise ValueError(f"alignment layer {layer!r} is not one of {', '.join(ALIGNMENT_LAYERS)}")
    for key in ("ga_weights", "ra_weights", "la_weights"):
        if len(tuple(values[key])) != len(layers):
            raise ValueError(f"{key} has {len(tuple(values[key]))} entries but alignment_layers has {len(layers)}")
