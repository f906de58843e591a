"""The Mask2Former head of SRHA's R50 + Mask2Former variant (docs/method.md §4), built from ``transformers``' own
Mask2Former modules (pure PyTorch; no compiled deformable-attention op, nothing fetched from the Hub).

Pieces (all configured from :class:`~srha_hf.SRHAConfig` through an explicit ``Mask2FormerConfig``):

* :class:`SRHAMask2FormerPixelDecoder`: ``transformers``' ``Mask2FormerPixelDecoder`` (multi-scale
  deformable-attention encoder on res3..res5 + FPN), built with the reference's *declared* feature strides
  so that it grows the same three FPN levels (docs/method.md §4.2, §9 MF1).
* ``Mask2FormerTransformerModule``: the masked-attention transformer decoder (100 queries, 9 layers plus
  the query-only prediction), used as is; a ``Linear(hidden, num_labels + 1)`` class head on every
  prediction set.
* :func:`mask2former_targets`, :func:`mask2former_set_loss`: the set criterion of docs/method.md §4.3 through
  ``transformers``' ``Mask2FormerLoss`` / ``Mask2FormerHungarianMatcher`` (§9 MF2: all classes as targets).
* :func:`semantic_inference`: docs/method.md §4.4 at full input resolution (not ``transformers``' post-processing,
  which resizes to 384x384).
* :func:`pc_inputs`: what the PC loss sees (§9 MF3).

What matches the reference (Mask2Former's ``MSDeformAttnPixelDecoder`` and
``MultiScaleMaskedTransformerDecoder`` as configured by ``maskformer2_R50_bs16_90k.yaml``):

* pixel decoder: conv/mask dim 256, GroupNorm(32), 1x1 input projections (with bias) + GN for res5, res4,
  res3 (in that order), 6 deformable encoder layers (d_model 256, 8 heads, 4 points per head and level,
  3 levels, FFN 1024 as the reference's hard-coded value, dropout 0, ReLU, post-norm), learned level
  embedding, sine position encoding (128 features per axis, normalised, scale 2π, temperature 10000),
  common stride 4; the FPN lateral (1x1, no bias, GN) and output (3x3, no bias, GN, ReLU) pairs are named
  ``adapter_k`` / ``layer_k`` as in the reference; the mask features are a 1x1 conv with bias on the last
  FPN level.
* transformer decoder: hidden 256, 100 queries, 8 heads, FFN 2048, dropout 0, post-norm, masked cross-
  attention → self-attention → FFN per layer, 9 layers cycling over the 3 encoder levels, learned query
  features / positions and level embedding, identity input projections (256 channels, no enforced
  projection), 3-layer mask MLP, attention masks from the previous prediction bilinearly resized to the
  next level and thresholded at sigmoid < 0.5 with fully-masked rows un-masked.
* criterion: matching cost 2·(−p_class) + 5·BCE + 5·dice on 12544 uniform points shared by an image's
  masks (bilinear point sampling, ``align_corners=False``); CE over num_labels + 1 classes with no-object
  weight 0.1; mask BCE and dice on 12544 importance-sampled points (oversample 3, 75 % most uncertain by
  ``−|logit|`` + 25 % uniform); ``num_masks`` summed over processes / world size, clamped ≥ 1 (:class:`SRHAMask2FormerLoss`; transformers' own
  averages over processes and then divides by the world size again);
  deep supervision on all 10 prediction sets, each with its own matching; weights CE 2 / mask 5 / dice 5.

Deviations (numerically irrelevant or documented):

* Initialisation (:func:`init_mask2former_weights`) follows the reference's scheme (Xavier for attention
  and FFN matrices, Caffe2-Xavier for the FPN and mask convs, the deformable-attention grid init,
  N(0, 1) embeddings, PyTorch's default for the class head and the mask MLP); the random streams differ.
* ``transformers``' self-attention in the decoder is its own ``Mask2FormerAttention`` (separate q/k/v
  projections) instead of ``nn.MultiheadAttention``'s packed ``in_proj``: the same function, a different
  parameter layout (an authors' checkpoint needs splitting ``in_proj_weight`` into q/k/v to convert).
* ``transformers``' deformable encoder layer clamps non-finite activations in training (a no-op for finite
  values; one device synchronisation per layer).
* The semantic scores are computed in float32 with autocast disabled (the reference trains without AMP).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Mask2FormerConfig
from transformers import initialization as init
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerLoss,
    Mask2FormerMaskedAttentionDecoderLayer,
    Mask2FormerPixelDecoder,
    Mask2FormerPixelDecoderEncoderLayer,
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
    Mask2FormerPixelDecoderOutput,
    Mask2FormerPredictionBlock,
    Mask2FormerPreTrainedModel,
    Mask2FormerTransformerModule,
)

from .base import DecodeHead, as_model_output, register_decode_head
from .m2f_shapes import pixel_decoder_forward, use_shape_generic_attention

#: docs/method.md §4.2 / §9 MF1: the strides the reference *declares* for res2..res5 ...
MISDECLARED_STRIDES = (1, 2, 2, 2)
#: ... and the true ones of the OS16 ResNet (standard construction: a single FPN level, on res2).
TRUE_STRIDES = (4, 8, 16, 16)


def mask2former_config(config) -> Mask2FormerConfig:
    """The explicit ``Mask2FormerConfig`` of the head, from the ``m2f_*`` keys of an SRHAConfig.

    ``backbone_config`` is left at ``transformers``' default (a local Swin config object that nothing
    here instantiates); no backbone is named by string, so nothing queries the Hub."""
    return Mask2FormerConfig(
        num_labels=config.num_labels,
        feature_size=config.m2f_conv_dim,
        mask_feature_size=config.m2f_mask_dim,
        hidden_dim=config.m2f_hidden_dim,
        encoder_feedforward_dim=config.m2f_encoder_feedforward_dim,
        activation_function="relu",
        encoder_layers=config.m2f_encoder_layers,
        decoder_layers=config.m2f_decoder_layers + 1,  # transformers counts the query-only prediction
        num_attention_heads=config.m2f_num_heads,
        dropout=0.0,
        dim_feedforward=config.m2f_dim_feedforward,
        pre_norm=False,
        enforce_input_projection=False,
        common_stride=4,
        ignore_value=config.ignore_index,
        num_queries=config.m2f_num_queries,
        no_object_weight=config.m2f_no_object_weight,
        class_weight=config.m2f_class_weight,
        mask_weight=config.m2f_mask_weight,
        dice_weight=config.m2f_dice_weight,
        train_num_points=config.m2f_train_num_points,
        oversample_ratio=config.m2f_oversample_ratio,
        importance_sample_ratio=config.m2f_importance_sample_ratio,
        use_auxiliary_loss=config.m2f_deep_supervision,
        feature_strides=list(MISDECLARED_STRIDES if config.m2f_misdeclared_strides else TRUE_STRIDES),
        output_auxiliary_logits=True,
    )


class SRHAMask2FormerPixelDecoder(Mask2FormerPixelDecoder):
    """``transformers``' ``Mask2FormerPixelDecoder`` with the reference's FPN construction (docs/method.md §9 MF1).

    Both implementations size the FPN as ``n = int(log2(min transformer stride) − log2(common stride))``
    and build one lateral/output pair per entry of ``feature_channels[:n]``. With the reference's declared
    strides ``[1, 2, 2, 2]`` that is ``log2(2) − log2(4) = −1``, and the slice ``[:-1]`` gives **three**
    pairs (``adapter_1/layer_1`` for res2, ``adapter_2/layer_2`` for res3, ``adapter_3/layer_3`` for
    res4), applied from low to high resolution: ``fpn(res4) = out(lat(res4) + up(enc(res3)))`` (a
    *down*-sampling from stride 8 to 16), then ``fpn(res3)``, then ``fpn(res2)``, whose 1x1 projection is the
    mask features at stride 4. The transformer decoder still receives the first three pyramid entries
    ``[enc(res5), enc(res4), enc(res3)]``. So wrapping the upstream module with the declared strides
    reproduces MF1 exactly; this subclass only fixes the strides from the switch and checks the result.
    With ``misdeclared_strides=False`` (true strides ``[4, 8, 16, 16]``) it is the standard single FPN level
    on res2.

    Its forward computes the upstream values with the feature sizes kept symbolic (:mod:`.m2f_shapes`):
    the exported ONNX graph takes any input size.
    """

    def __init__(self, config: Mask2FormerConfig, feature_channels: Sequence[int], misdeclared_strides: bool = True):
        config.feature_strides = list(MISDECLARED_STRIDES if misdeclared_strides else TRUE_STRIDES)
        super().__init__(config, feature_channels=list(feature_channels))
        expected = 3 if misdeclared_strides else 1
        if len(self.lateral_convolutions) != expected:  # guards against an upstream change of the rule
            raise RuntimeError(
                f"transformers' Mask2FormerPixelDecoder built {len(self.lateral_convolutions)} FPN levels, expected {expected}"
            )
        use_shape_generic_attention(self)

    def forward(self, features, return_dict: bool = True) -> Mask2FormerPixelDecoderOutput:
        """The upstream forward's values with the feature sizes kept symbolic (:mod:`.m2f_shapes`), so that
        an exported graph serves any input size."""
        del return_dict  # always the output object, as the head reads it
        return pixel_decoder_forward(self, features)

    @property
    def num_fpn_pairs(self) -> int:
        return len(self.lateral_convolutions)


class Mask2FormerHead(nn.Module):
    """Pixel decoder + masked-attention transformer decoder + class head (docs/method.md §4.2).

    ``forward(features)`` takes the backbone's ``(res2, res3, res4, res5)`` = layer1..layer4 and returns
    ``(class_queries_logits, masks_queries_logits)``: tuples over the prediction sets (the query-only one
    first, the final one last) of ``(N, Q, num_labels + 1)`` and ``(N, Q, h2, w2)`` at the res2 (stride 4)
    resolution.
    """

    def __init__(self, config, in_channels: Sequence[int]):
        super().__init__()
        m2f = mask2former_config(config)
        self.pixel_decoder = SRHAMask2FormerPixelDecoder(m2f, in_channels, config.m2f_misdeclared_strides)
        self.transformer_module = Mask2FormerTransformerModule(in_features=m2f.feature_size, config=m2f)
        self.class_predictor = nn.Linear(m2f.hidden_dim, config.num_labels + 1)
        _tag_init_roles(self)

    def forward(self, features: Sequence[torch.Tensor]) -> Tuple[Tuple[torch.Tensor, ...], Tuple[torch.Tensor, ...]]:
        pixel = self.pixel_decoder(list(features), return_dict=True)
        decoded = self.transformer_module(
            multi_scale_features=pixel.multi_scale_features, mask_features=pixel.mask_features
        )
        classes = tuple(self.class_predictor(h.transpose(0, 1)) for h in decoded.intermediate_hidden_states)
        return classes, tuple(decoded.masks_queries_logits)


# ---------------------------------------------------------------------------------------------------
# Initialisation


def _default_linear_(linear: nn.Linear) -> None:
    """PyTorch's own ``nn.Linear`` initialisation, through the flag-aware ``transformers`` init."""
    init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
    _default_bias_(linear)


def _default_bias_(linear: nn.Linear) -> None:
    """PyTorch's own ``nn.Linear`` bias initialisation, U(±1/√fan_in)."""
    if linear.bias is not None:
        fan_in = linear.weight.shape[1]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(linear.bias, -bound, bound)


def _c2_xavier_(conv: nn.Conv2d) -> None:
    """Caffe2's "Xavier" fill used by detectron2 for FPN convs: kaiming-uniform with a = 1, bias 0."""
    init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        init.zeros_(conv.bias)


def _hf_init(module: nn.Module) -> None:
    """``transformers``' Mask2Former init for one module (used for the deformable attention's grid init).
    The parameter-free base model that carries the init is built per call: a few at model creation."""
    Mask2FormerPreTrainedModel(Mask2FormerConfig())._init_weights(module)


def _tag_init_roles(head: nn.Module) -> None:
    """Mark the parameter-holding modules of the head with their initialisation rule.

    ``transformers`` 5 only calls a custom model's ``_init_weights`` on modules that hold parameters
    themselves, so container modules (an attention block, a decoder layer) cannot initialise their
    children: the rule is attached to each child instead."""
    for module in head.modules():
        if isinstance(module, Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
            # not a registered submodule (no cycle): the offsets layer initialises its whole block
            module.sampling_offsets.__dict__["_m2f_deform_block"] = module
        elif isinstance(module, Mask2FormerPixelDecoderEncoderLayer):
            module.fc1._m2f_role = module.fc2._m2f_role = "xavier_weight"
        elif isinstance(module, Mask2FormerMaskedAttentionDecoderLayer):
            attn = module.self_attn
            for linear in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, module.cross_attn.out_proj):
                linear._m2f_role = "xavier_zero_bias"
            module.fc1._m2f_role = module.fc2._m2f_role = "xavier_weight"
            module.cross_attn._m2f_role = "packed_attention"
        elif isinstance(module, Mask2FormerPredictionBlock):
            module.layers[0]._m2f_role = "torch_default"
    head.class_predictor._m2f_role = "torch_default"


@torch.no_grad()
def init_mask2former_weights(module: nn.Module) -> None:
    """Initialise one module of :class:`Mask2FormerHead` as the reference does.

    Called by ``SRHAPreTrainedModel._init_weights`` for every parameter-holding head module (children
    before parents). Reference rules: Xavier-uniform for every matrix of the deformable encoder and of the
    decoder layers, zero attention biases, the deformable attention's zero offsets with a circular grid
    bias (``transformers``' own rule for that block), Xavier input projections, Caffe2-Xavier FPN and mask
    convs, N(0, 1) level embedding and embeddings, PyTorch's default for the class head and the mask MLP.
    Every write goes through ``transformers.initialization``, which leaves loaded weights alone.
    """
    block = module.__dict__.get("_m2f_deform_block")
    role = getattr(module, "_m2f_role", None)
    if block is not None:
        _hf_init(block)  # the reference's MSDeformAttn._reset_parameters
    elif role == "xavier_weight":  # the reference's _reset_parameters touches matrices only: the bias keeps PyTorch's
        init.xavier_uniform_(module.weight)
        _default_bias_(module)
    elif role == "xavier_zero_bias":
        init.xavier_uniform_(module.weight)
        init.zeros_(module.bias)
    elif role == "packed_attention":
        init.xavier_uniform_(module.in_proj_weight)
        init.zeros_(module.in_proj_bias)
    elif role == "torch_default":
        _default_linear_(module)
    elif isinstance(module, SRHAMask2FormerPixelDecoder):
        init.normal_(module.level_embed)
        for proj in module.input_projections:
            init.xavier_uniform_(proj[0].weight, gain=1.0)
            init.zeros_(proj[0].bias)
        for seq in list(module.lateral_convolutions) + list(module.output_convolutions):
            _c2_xavier_(seq[0])
        _c2_xavier_(module.mask_projection)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight)
    elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
        init.ones_(module.weight)
        init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------------
# Targets, set loss, semantic inference


def mask2former_targets(
    labels: torch.Tensor, num_labels: int = 19, ignore_index: int = 255, absent_class_targets: bool = True
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Per-image target sets of docs/method.md §4.3 from ``(N, H, W)`` train-ID maps.

    ``absent_class_targets=True`` (§9 MF2, faithful): every image gets all ``num_labels`` classes, labels
    ``0..num_labels-1`` and masks ``labels == c`` (absent classes have empty masks; ignore pixels are 0 in
    every mask). ``False``: only the classes present in the image (the standard Mask2Former). Returns
    ``(mask_labels, class_labels)``: lists of ``(K_i, H, W)`` float masks and ``(K_i,)`` int64 labels.
    """
    del ignore_index  # never equal to a class id, so ignore pixels are outside every mask
    classes = torch.arange(num_labels, device=labels.device)
    masks = labels.long()[:, None] == classes[None, :, None, None]  # (N, C, H, W)
    if absent_class_targets:
        masks = masks.float()
        return list(masks.unbind(0)), [classes] * labels.shape[0]
    present = masks.flatten(2).any(-1)  # (N, C)
    return [m[p].float() for m, p in zip(masks, present)], [classes[p] for p in present]


class SRHAMask2FormerLoss(Mask2FormerLoss):
    """``transformers``' set criterion with the reference's mask normaliser (docs/method.md §4.3): ``num_masks`` is
    the number of target masks **summed** over the processes, divided by the world size, clamped to at
    least 1. (The parent averages across processes through Accelerate's ``reduce`` and then divides by
    the world size again, which on ``W`` processes makes ``loss_mask`` and ``loss_dice`` ``W`` times too
    large.) Uses the initialised ``torch.distributed`` group when there is one (Accelerate's, torchrun's)."""

    def get_num_masks(self, class_labels, device) -> torch.Tensor:
        num_masks = torch.as_tensor(float(sum(len(classes) for classes in class_labels)), dtype=torch.float, device=device)
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                num_masks = num_masks.clone()
                torch.distributed.all_reduce(num_masks, op=torch.distributed.ReduceOp.SUM)
        return torch.clamp(num_masks / world, min=1)


def _criterion(config) -> Mask2FormerLoss:
    """``transformers``' ``Mask2FormerLoss`` for this config, kept outside the module tree (its no-object
    class-weight buffer is derived from the config, not a weight to save). It holds no parameters (a
    matcher and a 20-entry weight vector), so it is built per call rather than cached in the module."""
    m2f = mask2former_config(config)
    weights = {"loss_cross_entropy": m2f.class_weight, "loss_mask": m2f.mask_weight, "loss_dice": m2f.dice_weight}
    return SRHAMask2FormerLoss(m2f, weight_dict=weights)


def mask2former_set_loss(
    class_queries_logits: Sequence[torch.Tensor],
    masks_queries_logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    config,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The M2F set loss of docs/method.md §4.3/§4.5: ``Σ_sets (w_ce·CE + w_mask·BCE + w_dice·Dice)``.

    ``class_queries_logits`` / ``masks_queries_logits`` are the prediction sets (query-only first, final
    last; only the final one is used when ``config.m2f_deep_supervision`` is off), ``labels`` ``(N, H, W)``
    one map per row. Each set gets its own Hungarian matching. Computed in float32 with autocast off.
    Returns ``(loss, weighted loss dict)``.
    """
    criterion = _criterion(config)
    device = masks_queries_logits[-1].device
    criterion.to(device)
    with torch.autocast(device_type=device.type, enabled=False):
        mask_labels, class_labels = mask2former_targets(
            labels.to(device), config.num_labels, config.ignore_index, config.m2f_absent_class_targets
        )
        classes = [c.float() for c in class_queries_logits]
        masks = [m.float() for m in masks_queries_logits]
        aux = None
        if config.m2f_deep_supervision:
            aux = [{"masks_queries_logits": m, "class_queries_logits": c} for m, c in zip(masks[:-1], classes[:-1])]
        losses = criterion(masks[-1], classes[-1], mask_labels, class_labels, auxiliary_predictions=aux)
    weighted = {}
    for name, value in losses.items():
        for prefix, weight in criterion.weight_dict.items():
            if name.startswith(prefix):
                weighted[name] = weight * value
    return sum(weighted.values()), weighted


@contextmanager
def _seeded_points(device: torch.device, enabled: bool) -> Iterator[None]:
    """The set loss samples its points from torch's global generator. Outside training (a validation loss)
    they are drawn from seed 0 inside a forked generator, so the loss is a function of the inputs alone and
    the caller's random stream is left as it was; in training they are drawn as the reference draws them."""
    if not enabled:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.random.default_generator.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.manual_seed(0)
        yield


def semantic_inference(
    class_queries_logits: torch.Tensor, masks_queries_logits: torch.Tensor, size, query_chunk: int = 20
) -> torch.Tensor:
    """docs/method.md §4.4: ``semseg = einsum("bqc,bqhw->bchw", softmax(cls)[..., :-1], sigmoid(up(masks)))`` with
    ``up`` the bilinear (``align_corners=False``) upsampling of the final masks to ``size``.

    Returns ``(N, num_labels, H, W)`` float32 scores (non-negative, not logits). Without autograd the
    queries are processed ``query_chunk`` at a time, so a 1024x2048 image never holds all 100 upsampled
    masks at once (same values up to float summation order)."""
    with torch.autocast(device_type=masks_queries_logits.device.type, enabled=False):
        cls = class_queries_logits.float().softmax(-1)[..., :-1]
        masks = masks_queries_logits.float()
        size = tuple(s if isinstance(s, (torch.SymInt, torch.Tensor)) else int(s) for s in size)  # symbolic in export
        if torch.is_grad_enabled() and (masks.requires_grad or cls.requires_grad) or masks.shape[1] <= query_chunk:
            up = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
            return torch.einsum("bqc,bqhw->bchw", cls, up.sigmoid())
        out = None
        for start in range(0, masks.shape[1], query_chunk):
            part = slice(start, start + query_chunk)
            up = F.interpolate(masks[:, part], size=size, mode="bilinear", align_corners=False).sigmoid_()
            term = torch.einsum("bqc,bqhw->bchw", cls[:, part], up)
            out = term if out is None else out.add_(term)
        return out


def pc_inputs(scores: torch.Tensor, on_scores: bool = True) -> torch.Tensor:
    """What the PC loss softmaxes for the M2F head (docs/method.md §4.5, §9 MF3).

    ``on_scores=True`` (faithful): the semantic scores themselves, used as if they were logits.
    ``False``: their logarithm, so that PC's softmax gives the scores normalised over the classes
    (``s_c / Σ_k s_k``), i.e. the class distribution the scores actually express."""
    if on_scores:
        return scores
    return scores.float().clamp_min(1e-12).log()


@register_decode_head("mask2former")
class Mask2FormerDecode(DecodeHead):
    """docs/method.md §4: :class:`Mask2FormerHead` on layer1..4 (the child ``mask2former``), the semantic
    scores of §4.4 at the input size as ``logits``, and the set loss computed in the forward."""

    loss_in_forward = True  # the set loss needs the query predictions, which only the forward has
    no_split_modules = ("Mask2FormerHead",)  # its pixel decoder and transformer exchange features in its forward

    def __init__(self, config, channels: Sequence[int]):
        super().__init__(config, channels)
        self.mask2former = Mask2FormerHead(config, channels[1:5])

    def forward(self, features, size, labels, config, *, with_extras, return_dict, return_loss):
        classes, masks = self.mask2former(features)
        logits = semantic_inference(classes[-1], masks[-1], size)
        loss = None
        if labels is not None and return_loss:
            labels_all = labels
            if labels.shape[0] != logits.shape[0]:  # SRM doubled the batch: both halves share the labels
                labels_all = labels.repeat(logits.shape[0] // labels.shape[0], 1, 1)
            with _seeded_points(logits.device, enabled=not self.mask2former.training):
                loss, _ = mask2former_set_loss(classes, masks, labels_all, config)
        auxiliary = None
        if with_extras:
            auxiliary = tuple({"class_queries_logits": c, "masks_queries_logits": m} for c, m in zip(classes[:-1], masks[:-1]))
        kept = features if with_extras else None
        return as_model_output(return_dict, loss, logits=logits, features=kept, class_queries_logits=classes[-1],
                               masks_queries_logits=masks[-1], auxiliary_predictions=auxiliary)  # fmt: skip

    def training_terms(self, outputs, labels, config):
        return {"m2f": outputs.loss}  # the set loss over both halves, computed in the forward

    def pc_inputs(self, logits, config):
        return pc_inputs(logits, config.m2f_pc_on_scores)

    def init_module(self, module: nn.Module) -> bool:
        """The reference's own scheme for every module of the head (:func:`init_mask2former_weights`)."""
        init_mask2former_weights(module)
        return True
