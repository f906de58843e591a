"""The SRHA objective (docs/method.md §3.1, §3.5): the frozen teacher, its EMA, and the total loss.

* :class:`SRHATeacher`, :func:`build_teacher`, :func:`uses_teacher`, :func:`update_teacher_ema`: the
  teacher network whose layer features the student is aligned to;
* :func:`alignment_losses`: Σ_l w_l GA_l, RA_l, LA_l over the alignment layers, sharing one pass of
  region sums per layer between GA and RA;
* :func:`compute_srha_loss`: CE + aux (or the Mask2Former set loss), HAC and PC for one batch;
* :func:`pc_warmup_factor`: the opt-in linear warm-up of the PC weight (``pc_warmup_steps``).

The per-term functions themselves (GA, RA, LA, PC, CE) are in :mod:`srha_hf.losses`.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .losses import (
    global_alignment_loss,
    local_alignment_loss,
    prediction_consistency_loss,
    regional_alignment_loss,
)
from .modeling_srha import SRHAForSemanticSegmentation
from .regions import check_train_ids, region_sums


class SRHATeacher(nn.Module):
    """The frozen ImageNet teacher of docs/method.md §3.1, producing the alignment targets.

    ``forward(pixel_values, labels, srm_weights=None, generator=None)`` returns, for each alignment
    layer, the teacher features of the ``B`` original images (detached). In ``"faithful"`` mode the
    network runs in train mode (batch-statistics BN over ``[original; teacher-rearranged]`` with its own
    SRM draws, layer0 frozen in eval mode); the BN momentum is set to 0 so its running statistics stay
    the ImageNet ones. In ``"lean"`` mode it runs in eval mode without SRM on the originals only. The
    teacher's decode heads are never run: only backbone features are targets.
    """

    def __init__(self, model: nn.Module, mode: Optional[str] = None):
        super().__init__()
        self.model = model
        self.mode = mode or model.config.teacher_mode
        for param in self.model.parameters():
            param.requires_grad_(False)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.0
        self._set_mode()

    def _set_mode(self) -> None:
        nn.Module.train(self, False)
        self.model.train(self.mode == "faithful")

    def train(self, mode: bool = True):  # the teacher's mode is fixed by ``self.mode``
        self._set_mode()
        return self

    @torch.no_grad()
    def forward(self, pixel_values, labels=None, srm_weights=None, generator=None, check_labels: bool = True) -> List[torch.Tensor]:
        self._set_mode()
        batch = pixel_values.shape[0]
        use_srm = self.mode == "faithful" and labels is not None
        features = self.model.forward_features(
            pixel_values,
            labels=labels if use_srm else None,
            srm_weights=srm_weights if use_srm else None,
            generator=generator,
            check_labels=check_labels,
        )
        layers = self.model.config.alignment_layers
        return [features[int(name[-1]) - 1][:batch].detach() for name in layers]


def build_teacher(
    config,
    student: Optional[nn.Module] = None,
    backbone_pretrained: Optional[str] = None,
    mode: Optional[str] = None,
    device=None,
) -> SRHATeacher:
    """Build the frozen teacher: the same architecture as the student, starting from the student's
    initial weights (docs/method.md §3.1: both start from the same ImageNet backbone).

    With ``student`` (what the trainer passes, before the first step), the teacher's weights are a copy
    of the student's, parameters and BN buffers alike: with ImageNet (or stand-in) weights this is the
    same file loaded once, and without any the teacher is the student's own random draw rather than an
    unrelated one. ``student`` may be wrapped (DDP). Without it, ``backbone_pretrained`` (default:
    ``config.backbone_pretrained``, or for a config saved by a trained model its recorded
    ``backbone_pretrained_source``) is loaded into a fresh network; ``None`` everywhere means a random
    teacher, only useful for tests. ``mode`` defaults to ``config.teacher_mode``.
    """
    cfg = copy.deepcopy(config)
    source = backbone_pretrained or cfg.backbone_pretrained or cfg.backbone_pretrained_source
    if student is not None:
        source_model = getattr(student, "module", student)
        cfg.backbone_pretrained = None  # the weights come from the student, not from a second load
        cfg.backbone_pretrained_source = source
        network = SRHAForSemanticSegmentation(cfg)
        try:
            network.load_state_dict(source_model.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"the student does not match the teacher's config: {exc}") from None
    else:
        cfg.backbone_pretrained = source
        network = SRHAForSemanticSegmentation(cfg)
    teacher = SRHATeacher(network, mode=mode)
    if device is not None:
        teacher.to(device)
    return teacher


def uses_teacher(config) -> bool:
    """Whether any alignment term (GA, RA or LA) has a positive layer weight: only then does the
    objective need a teacher (the plain DeepLabV3+ and SRM-only ablation rows run without one)."""
    return any(w > 0 for w in (*config.ga_weights, *config.ra_weights, *config.la_weights))


@torch.no_grad()
def update_teacher_ema(teacher: SRHATeacher, student: nn.Module, step: int, alpha: float) -> None:
    """docs/method.md §3.1 EMA (off by default, ``alpha = 1``): at step 0 copy the student's parameters, then
    ``θ_t ← a·θ_t + (1 − a)·θ_s`` with ``a = min(1 − 1/(step + 1), alpha)``. Parameters only, not BN
    buffers, as the reference. The trainer calls it, as the reference does, *before* step ``step``'s
    forward: step 0 copies the initial student, step 1 blends in the student after one update."""
    if alpha >= 1.0:
        return
    a = 0.0 if step == 0 else min(1.0 - 1.0 / (step + 1), alpha)
    student_params = dict(student.named_parameters())
    for name, param in teacher.model.named_parameters():
        param.mul_(a).add_(student_params[name].detach().to(param.dtype), alpha=1.0 - a)


def alignment_losses(
    config,
    student_features: Sequence[torch.Tensor],
    teacher_targets: Sequence[torch.Tensor],
    labels: torch.Tensor,
) -> Dict[str, torch.Tensor]:
    """Σ_l w_l GA_l, Σ_l w_l RA_l and Σ_l w_l LA_l over ``config.alignment_layers`` (weights <= 0 skip).

    A term whose layer weights are all <= 0 is absent from the result (not a zero). ``labels`` are the
    original images' maps (shared by both halves) or one per student row.
    """
    device = student_features[0].device
    totals = {
        key: torch.zeros((), device=device)
        for key, weights in (("ga", config.ga_weights), ("ra", config.ra_weights), ("la", config.la_weights))
        if any(w > 0 for w in weights)
    }
    for i, name in enumerate(config.alignment_layers):
        s = student_features[int(name[-1]) - 1]
        t = teacher_targets[i]
        sums = None
        if config.ra_weights[i] > 0:  # one pass over the features gives the region sums RA and GA both use
            with torch.autocast(device_type=device.type, enabled=False):
                sums = region_sums(s, t, labels, num_labels=config.num_labels, ignore_index=config.ignore_index, check_labels=False)
            ra = regional_alignment_loss(s, t, labels, include_ignore=config.ra_include_ignore, sums=sums)
            totals["ra"] = totals["ra"] + config.ra_weights[i] * ra
        if config.ga_weights[i] > 0:
            totals["ga"] = totals["ga"] + config.ga_weights[i] * global_alignment_loss(s, t, sums=sums)
        if config.la_weights[i] > 0:
            totals["la"] = totals["la"] + config.la_weights[i] * local_alignment_loss(s, t)
    return totals


def pc_warmup_factor(step: int, warmup_steps: int) -> float:
    """The factor on ``pc_weight`` at global step ``step`` of a run with ``pc_warmup_steps = warmup_steps``
    (docs/method.md §3.5): ``min(1, step / warmup_steps)``, and ``1`` for ``warmup_steps = 0``.

    ``step`` is the 0-based index of the step being computed (the trainer's step count before the
    update), so the first step has no PC at all, step ``warmup_steps`` and later have the full weight. It
    depends on the step alone, so a resumed run uses the same factors as an uninterrupted one. With the
    default ``warmup_steps = 0`` PC has its full weight from the first step, as the reference.
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"pc_warmup_factor: {name} must be an integer >= 0, got {value!r}")
    if warmup_steps == 0:
        return 1.0
    return min(1.0, step / warmup_steps)


def compute_srha_loss(
    student: nn.Module,
    teacher: Optional[SRHATeacher],
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    srm_weights: Optional[torch.Tensor] = None,
    teacher_srm_weights: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    pc_scale: float = 1.0,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The SRHA objective of docs/method.md §3.5 (DeepLabV3+) or §4.5 (Mask2Former) for one batch.

    ``L = CE + aux_weight·CE_aux + Σ w_l (GA_l + RA_l + LA_l) + pc_weight·JS``, with CE on both halves of
    the SRM-doubled batch against the same labels. For ``config.decode_head == "mask2former"`` the
    segmentation part is the student's Mask2Former set loss (``terms["m2f"]``, no ``ce``/``aux``) and PC
    compares the semantic scores of the two halves (§9 MF3: ``config.m2f_pc_on_scores``). ``student`` must
    be in train mode; it may be wrapped (DDP); its config is read from the unwrapped model. ``srm_weights`` are the student's SRM mixing
    weights ``(B, R, R)`` (drawn with ``generator`` when ``None``); the teacher draws its own
    (``teacher_srm_weights``) independently. Returns ``(loss, terms)`` where ``terms`` holds the weighted
    ``ce``, ``aux``, ``ga``, ``ra``, ``la`` and ``pc`` (detached); ``m2f``, ``ga``, ``ra``, ``la`` and ``pc``
    for Mask2Former.

    Only the terms that are switched on are computed and reported: ``ga``/``ra``/``la`` when some layer
    weight is positive (:func:`uses_teacher`; without any the teacher is not run and may be ``None``),
    ``pc`` when ``pc_weight > 0`` and SRM doubled the batch. So the ablation's plain DeepLabV3+ row
    (``srm=False``, alignment and PC weights 0) is exactly ``CE + aux_weight·CE_aux`` on ``B`` images.

    ``pc_scale`` multiplies ``pc_weight`` (the trainer passes :func:`pc_warmup_factor`; default 1, the
    reference). With ``pc_scale = 0`` the ``pc`` term is still computed and reported, as 0, and the loss
    equals the loss without PC.
    """
    if isinstance(pc_scale, bool) or not isinstance(pc_scale, (int, float)) or not pc_scale >= 0:
        raise ValueError(f"compute_srha_loss: pc_scale must be a number >= 0, got {pc_scale!r}")
    model = getattr(student, "module", student)
    config = model.config
    batch = pixel_values.shape[0]
    if labels.shape[0] != batch:
        raise ValueError(f"labels batch {labels.shape[0]} does not match pixel_values batch {batch}")
    aligned = uses_teacher(config)
    if aligned and teacher is None:
        raise ValueError("the config has positive GA/RA/LA weights but no teacher was given (build_teacher)")

    head = model.decode_head
    check_train_ids(labels, config.num_labels, config.ignore_index)  # once per batch; SRM and RA then skip it
    outputs = student(
        pixel_values,
        labels=labels,
        srm_weights=srm_weights,
        generator=generator,
        output_features=aligned,
        return_loss=head.loss_in_forward,  # otherwise (DeepLabV3+) the head's terms are computed below
        check_labels=False,
    )
    targets = None
    if aligned:
        targets = teacher(pixel_values, labels=labels, srm_weights=teacher_srm_weights, generator=generator, check_labels=False)
    n_rep = outputs.logits.shape[0] // batch
    labels_all = labels.repeat(n_rep, 1, 1) if n_rep > 1 else labels

    terms = head.training_terms(outputs, labels_all, config)  # CE + aux, or the Mask2Former set loss
    pc_logits = head.pc_inputs(outputs.logits, config)
    if aligned:
        terms.update(alignment_losses(config, outputs.features, targets, labels))
    if n_rep == 2 and config.pc_weight > 0:
        valid = (labels.to(pc_logits.device) != config.ignore_index) if config.pc_mask_ignore else None
        original = pc_logits[:batch].detach() if config.pc_stop_gradient else pc_logits[:batch]
        terms["pc"] = (pc_scale * config.pc_weight) * prediction_consistency_loss(original, pc_logits[batch:], valid)
    loss = sum(terms.values())
    return loss, {name: value.detach() for name, value in terms.items()}
