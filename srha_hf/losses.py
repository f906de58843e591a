"""HAC, PC and the segmentation losses of docs/method.md §3, and the full SRHA objective.

* :func:`global_alignment_loss` (GA), :func:`regional_alignment_loss` (RA),
  :func:`local_alignment_loss` (LA): one layer each, unweighted (docs/method.md §3.2).
* :func:`prediction_consistency_loss`: the plain JS divergence of docs/method.md §3.3 (unweighted).
* :func:`segmentation_losses`: CE on the main logits and on the dsn logits (docs/method.md §3.4).
* :func:`build_teacher` and :func:`compute_srha_loss`: docs/method.md §3.1 and §3.5.

Student features ``S`` have ``n·B`` rows (``n = 2`` after SRM); the teacher target ``t`` has the ``B``
rows of the original images and stands for ``T = cat([t] * n)`` without being copied.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .srm import (
    check_train_ids,
    labels_to_regions,
    region_one_hot,
    resize_labels_nearest,
    sum_over_regions,
)


def _rows_view(student: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """View ``student`` (n·B, ...) as (n, B, ...) against ``target`` (B, ...) broadcast as (1, B, ...)."""
    rows = target.shape[0]
    if student.shape[0] % rows or student.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"student features {tuple(student.shape)} do not line up with teacher targets {tuple(target.shape)}"
        )
    return student.reshape(student.shape[0] // rows, *target.shape), target.unsqueeze(0)


def global_alignment_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """GA_l = MSE(GAP(S_l), GAP(T_l)), the mean over all ``2B·C`` pooled entries."""
    s, t = _rows_view(student.float().mean(dim=(2, 3)), teacher.float().mean(dim=(2, 3)))
    return (s - t).pow(2).mean()


def local_alignment_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """LA_l = MSE(S_l, T_l), the mean over all ``2B·C·h·w`` entries."""
    s, t = _rows_view(student.float(), teacher.float())
    return (s - t).pow(2).mean()


def region_sums(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_labels: int = 19,
    ignore_index: int = 255,
    check_labels: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-region feature sums of the student rows and of their teacher targets, and region sizes.

    ``student`` is ``(n·B, C, h, w)``, ``teacher`` ``(B, C, h, w)`` (standing for ``T = cat([t] * n)``),
    ``labels`` one map per original image (``B``, shared by all ``n`` halves) or one per student row
    (``n·B``), at any resolution. Returns ``(s_sums, t_sums, counts)`` of shapes ``(n·B, R, C)``,
    ``(n·B, R, C)`` and ``(n·B, R)`` with ``R = num_labels + 1`` (the last region is the ignore label).
    Each sum is a batched matmul against the one-hot region map (:func:`~srha_hf.srm.sum_over_regions`),
    reading every feature once; when the halves share their labels the teacher sums are computed once
    and reused.
    """
    s, t = _rows_view(student, teacher)
    n_rep, batch, channels, height, width = s.shape
    if labels.shape[0] not in (batch, n_rep * batch):
        raise ValueError(f"labels batch {labels.shape[0]} matches neither B={batch} nor the {n_rep * batch} student rows")
    regions = labels_to_regions(
        resize_labels_nearest(labels.to(student.device), (height, width)), num_labels, ignore_index, check=check_labels
    )
    one_hot = region_one_hot(regions, num_labels + 1)  # (B or nB, R, N)
    s_flat = s.float().reshape(n_rep, batch, channels, height * width)
    t_flat = t.float().reshape(batch, channels, height * width)
    if labels.shape[0] == batch:
        s_sums = sum_over_regions(one_hot, s_flat).reshape(n_rep * batch, channels, -1)
        t_sums = sum_over_regions(one_hot, t_flat).repeat(n_rep, 1, 1)
        counts = one_hot.sum(dim=-1).repeat(n_rep, 1)
    else:  # one map per student row: the teacher rows are summed once per half, with its maps
        s_sums = sum_over_regions(one_hot, s_flat.reshape(n_rep * batch, channels, -1))
        t_sums = torch.cat([sum_over_regions(one_hot[k * batch : (k + 1) * batch], t_flat) for k in range(n_rep)])
        counts = one_hot.sum(dim=-1)
    # (n·B, C, R) -> (n·B, R, C)
    return s_sums.transpose(1, 2), t_sums.transpose(1, 2), counts


def _ra_from_sums(s_sums, t_sums, counts, num_pixels: int, include_ignore: bool) -> torch.Tensor:
    if not include_ignore:
        s_sums, t_sums, counts = s_sums[:, :-1], t_sums[:, :-1], counts[:, :-1]
    num_pairs = (counts > 0).sum()
    safe = counts.clamp_min(1.0)[:, :, None]
    mean_diff = s_sums / safe - t_sums / safe  # (n·B, R, C); absent regions give 0
    area = counts / float(num_pixels)
    # P = 0 leaves the sum at 0: dividing by max(P, 1) returns 0 without a host synchronisation
    return (area[:, :, None] * mean_diff.pow(2)).sum() / (num_pairs.clamp_min(1) * s_sums.shape[-1])


def regional_alignment_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_labels: int = 19,
    ignore_index: int = 255,
    include_ignore: bool = True,
) -> torch.Tensor:
    """RA_l of docs/method.md §3.2, vectorized over images and regions.

    ``labels`` holds one map per original image (shared by the halves) or one per student row, at any
    resolution; they are nearest-resized to the feature size. With ``a`` the area ratio of a region and
    ``s``/``t`` its student/teacher mean feature, ``RA = Σ a·||s − t||² / (P·C)`` over the ``P``
    (image, region) pairs present, 0 when ``P = 0``. ``include_ignore`` (docs/method.md §9 M5, faithful ``True``)
    counts the ignore label as a region.
    """
    with torch.autocast(device_type=student.device.type, enabled=False):
        s_sums, t_sums, counts = region_sums(student, teacher, labels, num_labels=num_labels, ignore_index=ignore_index)
        return _ra_from_sums(s_sums, t_sums, counts, student.shape[-2] * student.shape[-1], include_ignore)


def prediction_consistency_loss(
    logits_original: torch.Tensor,
    logits_rearranged: torch.Tensor,
    valid_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """JS(p, q) of docs/method.md §3.3: ``½[KL(q‖m) + KL(p‖m)]`` per pixel with ``m = clamp((p+q)/2, 1e-7, 1)``,
    "batchmean" over the ``B·H·W`` pixel rows, no stop-gradient (both halves get gradients).

    ``valid_mask`` (``(B, H, W)`` bool) restricts the mean to those pixels (docs/method.md §9 M6's alternative);
    the faithful default is ``None``: every pixel counts, ignore-labelled ones included.
    """
    with torch.autocast(device_type=logits_original.device.type, enabled=False):
        p = F.softmax(logits_original.float(), dim=1)
        q = F.softmax(logits_rearranged.float(), dim=1)
        if valid_mask is not None:  # pixels as rows, restricted to the valid ones
            num_classes = p.shape[1]
            keep = valid_mask.reshape(-1).to(p.device)
            p = p.permute(0, 2, 3, 1).reshape(-1, num_classes)[keep]
            q = q.permute(0, 2, 3, 1).reshape(-1, num_classes)[keep]
            rows = p.shape[0]
        else:  # "batchmean" over the B·H·W pixel rows: sum over every entry / rows, in NCHW directly
            rows = p.shape[0] * p.shape[2] * p.shape[3]
        log_m = ((p + q) / 2).clamp(1e-7, 1.0).log()
        js = 0.5 * (F.kl_div(log_m, q, reduction="sum") + F.kl_div(log_m, p, reduction="sum"))
        return js / max(rows, 1)


def segmentation_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    aux_logits: Optional[torch.Tensor] = None,
    ignore_index: int = 255,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """docs/method.md §3.4: CE on the main logits at label resolution and CE on the dsn logits against the labels
    nearest-downsampled to the dsn resolution. ``labels`` may hold one map per image of the original
    half and is repeated to the logits' batch. A batch without any valid pixel gives 0 rather than NaN.
    """
    if labels.shape[0] != logits.shape[0]:
        if logits.shape[0] % labels.shape[0]:
            raise ValueError(f"labels batch {labels.shape[0]} does not divide logits batch {logits.shape[0]}")
        labels = labels.repeat(logits.shape[0] // labels.shape[0], 1, 1)
    labels = labels.long().to(logits.device)

    def _ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the "mean" reduction over non-ignored pixels, written as sum / count so that a batch without
        # any valid pixel gives 0 (not NaN) without a host synchronisation
        total = F.cross_entropy(out.float(), target, ignore_index=ignore_index, reduction="sum")
        return total / (target != ignore_index).sum().clamp_min(1)

    ce = _ce(logits, labels)
    aux = None
    if aux_logits is not None:
        aux = _ce(aux_logits, resize_labels_nearest(labels, tuple(aux_logits.shape[-2:])))
    return ce, aux


# ---------------------------------------------------------------------------------------------------
# Teacher and the full objective


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
    from .modeling_srha import SRHAForSemanticSegmentation

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
        if config.ra_weights[i] > 0:
            # One pass over the features gives the region sums; GA's pooled means are their totals.
            with torch.autocast(device_type=device.type, enabled=False):
                sums = region_sums(s, t, labels, num_labels=config.num_labels, ignore_index=config.ignore_index, check_labels=False)
                num_pixels = s.shape[-2] * s.shape[-1]
                totals["ra"] = totals["ra"] + config.ra_weights[i] * _ra_from_sums(
                    *sums, num_pixels, config.ra_include_ignore
                )
                if config.ga_weights[i] > 0:
                    pooled_s = sums[0].sum(dim=1) / num_pixels
                    pooled_t = sums[1].sum(dim=1) / num_pixels
                    totals["ga"] = totals["ga"] + config.ga_weights[i] * (pooled_s - pooled_t).pow(2).mean()
        elif config.ga_weights[i] > 0:
            totals["ga"] = totals["ga"] + config.ga_weights[i] * global_alignment_loss(s, t)
        if config.la_weights[i] > 0:
            totals["la"] = totals["la"] + config.la_weights[i] * local_alignment_loss(s, t)
    return totals


def compute_srha_loss(
    student: nn.Module,
    teacher: Optional[SRHATeacher],
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    srm_weights: Optional[torch.Tensor] = None,
    teacher_srm_weights: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
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
    """
    model = getattr(student, "module", student)
    config = model.config
    batch = pixel_values.shape[0]
    if labels.shape[0] != batch:
        raise ValueError(f"labels batch {labels.shape[0]} does not match pixel_values batch {batch}")
    aligned = uses_teacher(config)
    if aligned and teacher is None:
        raise ValueError("the config has positive GA/RA/LA weights but no teacher was given (build_teacher)")

    check_train_ids(labels, config.num_labels, config.ignore_index)  # once per batch; SRM and RA then skip it
    outputs = student(
        pixel_values,
        labels=labels,
        srm_weights=srm_weights,
        generator=generator,
        output_features=aligned,
        return_loss=config.decode_head == "mask2former",  # DeepLabV3+: CE and aux are computed below
        check_labels=False,
    )
    targets = None
    if aligned:
        targets = teacher(pixel_values, labels=labels, srm_weights=teacher_srm_weights, generator=generator, check_labels=False)
    n_rep = outputs.logits.shape[0] // batch
    labels_all = labels.repeat(n_rep, 1, 1) if n_rep > 1 else labels

    pc_logits = outputs.logits
    if config.decode_head == "mask2former":
        from .heads.mask2former import pc_inputs

        ce = outputs.loss  # the set loss over both halves, computed in the student's forward
        terms = {"m2f": ce}
        pc_logits = pc_inputs(outputs.logits, config.m2f_pc_on_scores)
    else:
        ce, aux = segmentation_losses(outputs.logits, labels_all, outputs.aux_logits, config.ignore_index)
        terms = {"ce": ce, "aux": config.aux_weight * aux if aux is not None else torch.zeros_like(ce)}
    if aligned:
        terms.update(alignment_losses(config, outputs.features, targets, labels))
    if n_rep == 2 and config.pc_weight > 0:
        valid = (labels.to(ce.device) != config.ignore_index) if config.pc_mask_ignore else None
        terms["pc"] = config.pc_weight * prediction_consistency_loss(pc_logits[:batch], pc_logits[batch:], valid)
    loss = sum(terms.values())
    return loss, {name: value.detach() for name, value in terms.items()}
