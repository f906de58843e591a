"""SGD with the encoder/decoder parameter groups and the per-iteration poly schedule of docs/method.md §5.1."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

ENCODER_STAGES = ("layer1", "layer2", "layer3", "layer4")


def parameter_groups(model: nn.Module, lr: float, decoder_lr: float) -> List[dict]:
    """Group 0 "encoder": trainable parameters whose top-level name is layer1..layer4, at ``lr``;
    group 1 "decoder": every other trainable parameter, at ``decoder_lr``. Frozen ones (layer0) are
    left out, as in the reference."""
    model = getattr(model, "module", model)
    encoder, decoder = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (encoder if name.split(".")[0] in ENCODER_STAGES else decoder).append(param)
    return [
        {"params": encoder, "lr": lr, "initial_lr": lr, "name": "encoder"},
        {"params": decoder, "lr": decoder_lr, "initial_lr": decoder_lr, "name": "decoder"},
    ]


def build_optimizer(model: nn.Module, lr: float, decoder_lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
    """SGD, momentum 0.9, Nesterov off, weight decay on every trainable parameter (docs/method.md §9 T1)."""
    return torch.optim.SGD(
        parameter_groups(model, lr, decoder_lr), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False
    )


def poly_factor(step: int, max_iter: int, power: float = 0.9) -> float:
    """``(1 − step/max_iter)^power`` with ``step`` = iterations done so far (0 for the first)."""
    return max(0.0, 1.0 - step / max_iter) ** power


def set_poly_lr(optimizer, step: int, max_iter: int, power: float = 0.9) -> List[float]:
    """Set every group's lr for iteration ``step`` from its ``initial_lr``; returns the lrs.

    The schedule is a pure function of the global step, so it is the same on every process whatever
    their number, and a resumed run needs no scheduler state."""
    factor = poly_factor(step, max_iter, power)
    lrs = []
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
        lrs.append(group["lr"])
    return lrs
