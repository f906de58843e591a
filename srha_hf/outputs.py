"""The model's output type, shared by the model and its decode heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from transformers.utils import ModelOutput


@dataclass
class SRHASemanticSegmenterOutput(ModelOutput):
    """Output of :class:`SRHAForSemanticSegmentation`.

    Attributes:
        loss: ``CE + aux_weight·CE_aux`` when ``labels`` are given (the segmentation part of docs/method.md §3.4;
            the full SRHA objective is :func:`srha_hf.compute_srha_loss`). Mask2Former: the set loss of
            docs/method.md §4.3 over all prediction sets.
        logits: ``(N, num_labels, H, W)`` at the input resolution; ``N = 2B`` in training with labels
            and SRM (``[original; rearranged]``), else ``B``. Mask2Former: the semantic scores of docs/method.md §4.4
            (non-negative, not logits; their argmax is the prediction).
        aux_logits: ``(N, num_labels, h3, w3)`` dsn logits at the layer3 resolution (training, or
            ``output_features=True``). ``None`` for Mask2Former.
        features: the layer1..layer4 features ``(f1, f2, f3, f4)``, each ``(N, C_l, h_l, w_l)``
            (training, or ``output_features=True``).
        class_queries_logits: Mask2Former only: ``(N, Q, num_labels + 1)`` class logits of the final set.
        masks_queries_logits: Mask2Former only: ``(N, Q, h2, w2)`` mask logits of the final set (stride 4).
        auxiliary_predictions: Mask2Former only (training, or ``output_features=True``): the earlier
            prediction sets, query-only first, each ``{"class_queries_logits", "masks_queries_logits"}``.
        hidden_states: with ``output_hidden_states=True``: the backbone's five stage outputs ``(f0, ..., f4)``
            (layer0..layer4; ``f0`` is layer0's own output, before SRM, so in training it has ``B`` rows
            and the others ``2B``).
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    aux_logits: Optional[torch.FloatTensor] = None
    features: Optional[Tuple[torch.FloatTensor, ...]] = None
    class_queries_logits: Optional[torch.FloatTensor] = None
    masks_queries_logits: Optional[torch.FloatTensor] = None
    auxiliary_predictions: Optional[Tuple[dict, ...]] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None
