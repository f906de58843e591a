"""SRHAConfig: every knob of docs/method.md §1-§3, with the authors' values as defaults."""

from __future__ import annotations

from typing import Optional, Sequence

from transformers import PretrainedConfig

from .backbones import BACKBONES
from .data.labels import CLASS_NAMES
from .srm import DEFAULT_CONCENTRATION

DECODE_HEADS = ("deeplabv3plus", "mask2former")
TEACHER_MODES = ("faithful", "lean")
ALIGNMENT_LAYERS = ("layer1", "layer2", "layer3", "layer4")


class SRHAConfig(PretrainedConfig):
    r"""Configuration of :class:`~srha_hf.SRHAForSemanticSegmentation` and of its SRHA objective.

    Model (docs/method.md §1):
        backbone: ``"resnet50"``, ``"resnet101"``, ``"mobilenetv2"`` or ``"shufflenetv2"``.
        decode_head: ``"deeplabv3plus"`` (docs/method.md §1.3) or ``"mask2former"`` (docs/method.md §4; the ``m2f_*`` keys).
        num_labels / id2label: 19 Cityscapes train IDs by default. ignore_index: 255.
        backbone_pretrained: ImageNet initialisation of the backbone: ``None`` (random init, the
            default), ``"torchvision"`` (torchvision's IMAGENET1K_V1 weights), a local
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

    def __init__(
        self,
        backbone: str = "resnet50",
        decode_head: str = "deeplabv3plus",
        num_labels: int = 19,
        ignore_index: int = 255,
        backbone_pretrained: Optional[str] = None,
        backbone_pretrained_source: Optional[str] = None,
        aspp_rates: Sequence[int] = (6, 12, 18),
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        dsn_channels: int = 512,
        dsn_dropout: float = 0.1,
        freeze_layer0: bool = True,
        style_elimination: bool = True,
        style_elimination_unbiased_std: bool = True,
        resnet_dilate_all_layer4_blocks: bool = True,
        d16_dilate_only_stride2: bool = True,
        srm: bool = True,
        srm_concentration: float = DEFAULT_CONCENTRATION,
        srm_include_ignore: bool = True,
        srm_unbiased_std: bool = False,
        srm_detach_rearranged: bool = True,
        alignment_layers: Sequence[str] = ALIGNMENT_LAYERS,
        ga_weights: Sequence[float] = (0.4, 0.6, 0.8, 1.0),
        ra_weights: Sequence[float] = (0.4, 0.6, 0.8, 1.0),
        la_weights: Sequence[float] = (0.4, 0.6, 0.8, 1.0),
        ra_include_ignore: bool = True,
        pc_weight: float = 10.0,
        pc_mask_ignore: bool = False,
        aux_weight: float = 0.4,
        teacher_mode: str = "faithful",
        teacher_ema_alpha: float = 1.0,
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
        **kwargs,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone={backbone!r} is not supported; expected one of {', '.join(BACKBONES)}")
        if decode_head not in DECODE_HEADS:
            raise ValueError(f"decode_head={decode_head!r} is not supported; expected one of {', '.join(DECODE_HEADS)}")
        if teacher_mode not in TEACHER_MODES:
            raise ValueError(f"teacher_mode={teacher_mode!r} is not supported; expected one of {', '.join(TEACHER_MODES)}")
        alignment_layers = tuple(alignment_layers)
        for layer in alignment_layers:
            if layer not in ALIGNMENT_LAYERS:
                raise ValueError(f"alignment layer {layer!r} is not one of {', '.join(ALIGNMENT_LAYERS)}")
        for key, weights in (("ga_weights", ga_weights), ("ra_weights", ra_weights), ("la_weights", la_weights)):
            if len(tuple(weights)) != len(alignment_layers):
                raise ValueError(
                    f"{key} has {len(tuple(weights))} entries but alignment_layers has {len(alignment_layers)}"
                )
        if num_labels == len(CLASS_NAMES) and "id2label" not in kwargs:
            kwargs["id2label"] = {i: name for i, name in enumerate(CLASS_NAMES)}
            kwargs["label2id"] = {name: i for i, name in enumerate(CLASS_NAMES)}
        self.backbone = backbone
        self.decode_head = decode_head
        self.ignore_index = ignore_index
        self.backbone_pretrained = backbone_pretrained
        self.backbone_pretrained_source = backbone_pretrained_source
        self.aspp_rates = list(aspp_rates)
        self.aspp_channels = aspp_channels
        self.low_level_channels = low_level_channels
        self.decoder_channels = decoder_channels
        self.dsn_channels = dsn_channels
        self.dsn_dropout = dsn_dropout
        self.freeze_layer0 = freeze_layer0
        self.style_elimination = style_elimination
        self.style_elimination_unbiased_std = style_elimination_unbiased_std
        self.resnet_dilate_all_layer4_blocks = resnet_dilate_all_layer4_blocks
        self.d16_dilate_only_stride2 = d16_dilate_only_stride2
        self.srm = srm
        self.srm_concentration = srm_concentration
        self.srm_include_ignore = srm_include_ignore
        self.srm_unbiased_std = srm_unbiased_std
        self.srm_detach_rearranged = srm_detach_rearranged
        self.alignment_layers = list(alignment_layers)
        self.ga_weights = [float(w) for w in ga_weights]
        self.ra_weights = [float(w) for w in ra_weights]
        self.la_weights = [float(w) for w in la_weights]
        self.ra_include_ignore = ra_include_ignore
        self.pc_weight = pc_weight
        self.pc_mask_ignore = pc_mask_ignore
        self.aux_weight = aux_weight
        self.teacher_mode = teacher_mode
        self.teacher_ema_alpha = teacher_ema_alpha
        self.m2f_num_queries = m2f_num_queries
        self.m2f_hidden_dim = m2f_hidden_dim
        self.m2f_num_heads = m2f_num_heads
        self.m2f_dim_feedforward = m2f_dim_feedforward
        self.m2f_decoder_layers = m2f_decoder_layers
        self.m2f_conv_dim = m2f_conv_dim
        self.m2f_mask_dim = m2f_mask_dim
        self.m2f_encoder_layers = m2f_encoder_layers
        self.m2f_encoder_feedforward_dim = m2f_encoder_feedforward_dim
        self.m2f_train_num_points = m2f_train_num_points
        self.m2f_oversample_ratio = m2f_oversample_ratio
        self.m2f_importance_sample_ratio = m2f_importance_sample_ratio
        self.m2f_class_weight = m2f_class_weight
        self.m2f_mask_weight = m2f_mask_weight
        self.m2f_dice_weight = m2f_dice_weight
        self.m2f_no_object_weight = m2f_no_object_weight
        self.m2f_deep_supervision = m2f_deep_supervision
        self.m2f_misdeclared_strides = m2f_misdeclared_strides
        self.m2f_absent_class_targets = m2f_absent_class_targets
        self.m2f_pc_on_scores = m2f_pc_on_scores
        super().__init__(num_labels=num_labels, **kwargs)
