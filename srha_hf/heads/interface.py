"""One interface for the decode heads: what the model and the objective need from a head.

A :class:`DecodeHead` builds its modules on the model (under the parameter names of the authors'
checkpoints, so state dicts stay compatible), runs the forward from the backbone features to the
model's output, says whether its loss is computed in that forward, turns the output into the
objective's segmentation terms, and gives the inputs of prediction consistency (PC). The model and
:func:`srha_hf.compute_srha_loss` look the head up once with :func:`decode_head_for` and never branch on
its name.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from ..losses import segmentation_losses
from ..outputs import SRHASemanticSegmenterOutput
from .deeplabv3plus import ASPP, AuxiliaryHead, conv_bn_relu, final_block
from .mask2former import Mask2FormerHead, mask2former_set_loss, pc_inputs, semantic_inference


def _as_output(return_dict: bool, loss, values: Sequence, **fields):
    if return_dict:
        return SRHASemanticSegmenterOutput(loss=loss, **fields)
    out = tuple(v for v in values if v is not None)
    return ((loss,) + out) if loss is not None else out


class DecodeHead:
    """The contract of a decode head (stateless: its modules live on the model)."""

    #: ``compute_srha_loss`` asks the forward for the loss (``return_loss=True``) when this is set, and
    #: otherwise computes the segmentation terms itself from the outputs.
    loss_in_forward: bool = False

    def build(self, model: nn.Module, config, channels: Sequence[int]) -> None:
        """Register the head's modules on ``model``; ``channels`` are layer0..layer4's widths."""
        raise NotImplementedError

    def forward(self, model, pixel_values, labels, features, *, with_extras: bool, return_dict: bool, return_loss: bool):
        """From the layer1..4 ``features`` to the model's output (``loss`` with ``labels`` and ``return_loss``)."""
        raise NotImplementedError

    def training_terms(self, outputs, labels: torch.Tensor, config) -> Dict[str, torch.Tensor]:
        """The objective's segmentation terms for ``outputs`` of a training forward (``labels`` one map per row)."""
        raise NotImplementedError

    def pc_inputs(self, logits: torch.Tensor, config) -> torch.Tensor:
        """What PC's softmaxes act on, from the output's ``logits``."""
        return logits


class DeepLabV3PlusDecode(DecodeHead):
    """docs/method.md §1.3: ASPP + decoder on layer4 and layer1, the ``dsn`` auxiliary head on layer3."""

    modules = ("aspp", "bot_aspp", "bot_fine", "final1", "final2", "dsn")

    def build(self, model, config, channels):
        model.aspp = ASPP(channels[4], config.aspp_channels, config.aspp_rates)
        model.bot_aspp = conv_bn_relu(config.aspp_channels * (2 + len(config.aspp_rates)), config.decoder_channels, 1)
        model.bot_fine = conv_bn_relu(channels[1], config.low_level_channels, 1)
        model.final1 = final_block(config.low_level_channels + config.decoder_channels, config.decoder_channels)
        model.final2 = nn.Conv2d(config.decoder_channels, config.num_labels, kernel_size=1, bias=True)
        model.dsn = AuxiliaryHead(channels[3], config.num_labels, config.dsn_channels, config.dsn_dropout)
        for name in self.modules:
            for module in getattr(model, name).modules():
                module._srha_head = True  # Kaiming fan_in init (SRHAPreTrainedModel._init_weights)

    def forward(self, model, pixel_values, labels, features, *, with_extras, return_dict, return_loss):
        f1, _, f3, f4 = features
        logits = model.decode(f1, f4, pixel_values.shape[-2:])
        aux_logits = model.dsn(f3) if with_extras else None
        loss = None
        if labels is not None and return_loss:
            ce, aux = segmentation_losses(logits, labels, aux_logits, model.config.ignore_index)
            loss = ce if aux is None else ce + model.config.aux_weight * aux
        kept = features if with_extras else None
        return _as_output(return_dict, loss, (logits, aux_logits, kept), logits=logits, aux_logits=aux_logits, features=kept)

    def training_terms(self, outputs, labels, config):
        ce, aux = segmentation_losses(outputs.logits, labels, outputs.aux_logits, config.ignore_index)
        return {"ce": ce, "aux": config.aux_weight * aux if aux is not None else torch.zeros_like(ce)}


class Mask2FormerDecode(DecodeHead):
    """docs/method.md §4: the Mask2Former head on layer1..4, semantic scores at the input size, the set loss."""

    loss_in_forward = True  # the set loss needs the query predictions, which only the forward has

    def build(self, model, config, channels):
        model.mask2former = Mask2FormerHead(config, channels[1:5])
        for module in model.mask2former.modules():
            module._srha_m2f = True  # the reference's own init (SRHAPreTrainedModel._init_weights)

    def forward(self, model, pixel_values, labels, features, *, with_extras, return_dict, return_loss):
        classes, masks = model.mask2former(features)
        logits = semantic_inference(classes[-1], masks[-1], pixel_values.shape[-2:])
        loss = None
        if labels is not None and return_loss:
            labels_all = labels
            if labels.shape[0] != logits.shape[0]:  # SRM doubled the batch: both halves share the labels
                labels_all = labels.repeat(logits.shape[0] // labels.shape[0], 1, 1)
            loss, _ = mask2former_set_loss(classes, masks, labels_all, model.config)
        auxiliary = None
        if with_extras:
            auxiliary = tuple({"class_queries_logits": c, "masks_queries_logits": m} for c, m in zip(classes[:-1], masks[:-1]))
        kept = features if with_extras else None
        return _as_output(return_dict, loss, (logits, kept), logits=logits, features=kept, class_queries_logits=classes[-1],
                          masks_queries_logits=masks[-1], auxiliary_predictions=auxiliary)  # fmt: skip

    def training_terms(self, outputs, labels, config):
        return {"m2f": outputs.loss}  # the set loss over both halves, computed in the forward

    def pc_inputs(self, logits, config):
        return pc_inputs(logits, config.m2f_pc_on_scores)


DECODE_HEADS: Dict[str, DecodeHead] = {"deeplabv3plus": DeepLabV3PlusDecode(), "mask2former": Mask2FormerDecode()}


def decode_head_for(config) -> DecodeHead:
    """The :class:`DecodeHead` of ``config.decode_head``."""
    try:
        return DECODE_HEADS[config.decode_head]
    except KeyError:
        raise ValueError(f"decode_head={config.decode_head!r}; expected one of {', '.join(DECODE_HEADS)}") from None
