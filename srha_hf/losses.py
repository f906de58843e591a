"""The loss terms of docs/method.md §3, each one layer or one prediction pair, unweighted: exactly the
functions training calls (:func:`srha_hf.objective.alignment_losses` weights and sums them).

* :func:`global_alignment_loss` (GA), :func:`regional_alignment_loss` (RA),
  :func:`local_alignment_loss` (LA) (docs/method.md §3.2); GA and RA accept the layer's
  :func:`~srha_hf.regions.region_sums` so that training reads the features once for both;
* :func:`prediction_consistency_loss`: the plain JS divergence of docs/method.md §3.3;
* :func:`segmentation_losses`: CE on the main logits and on the dsn logits (docs/method.md §3.4).

Student features ``S`` have ``n·B`` rows (``n = 2`` after SRM); the teacher target ``t`` has the ``B``
rows of the original images and stands for ``T = cat([t] * n)`` without being copied.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .regions import region_sums, resize_labels_nearest, rows_view

#: ``(s_sums, t_sums, counts)`` of :func:`~srha_hf.regions.region_sums` for one layer.
RegionSums = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def global_alignment_loss(student: torch.Tensor, teacher: torch.Tensor, *, sums: Optional[RegionSums] = None) -> torch.Tensor:
    """GA_l = MSE(GAP(S_l), GAP(T_l)), the mean over all ``2B·C`` pooled entries.

    ``sums``: the layer's region sums, when the caller has them (training shares them with RA); the
    pooled means are then their totals over the regions and the features are not read again."""
    if sums is not None:
        num_pixels = student.shape[-2] * student.shape[-1]
        pooled_s, pooled_t = sums[0].sum(dim=1) / num_pixels, sums[1].sum(dim=1) / num_pixels
        return (pooled_s - pooled_t).pow(2).mean()
    s, t = rows_view(student.float().mean(dim=(2, 3)), teacher.float().mean(dim=(2, 3)))
    return (s - t).pow(2).mean()


def local_alignment_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """LA_l = MSE(S_l, T_l), the mean over all ``2B·C·h·w`` entries."""
    s, t = rows_view(student.float(), teacher.float())
    return (s - t).pow(2).mean()


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
    sums: Optional[RegionSums] = None,
    check_labels: bool = True,
) -> torch.Tensor:
    """RA_l of docs/method.md §3.2, vectorized over images and regions.

    ``labels`` holds one map per original image (shared by the halves) or one per student row, at any
    resolution; they are nearest-resized to the feature size. With ``a`` the area ratio of a region and
    ``s``/``t`` its student/teacher mean feature, ``RA = Σ a·||s − t||² / (P·C)`` over the ``P``
    (image, region) pairs present, 0 when ``P = 0``. ``include_ignore`` (docs/method.md §9 M5, faithful ``True``)
    counts the ignore label as a region. ``sums``: the layer's region sums when the caller has them
    (``labels`` are then not read again); ``check_labels=False`` skips the train-ID check.
    """
    with torch.autocast(device_type=student.device.type, enabled=False):
        if sums is None:
            sums = region_sums(student, teacher, labels, num_labels=num_labels, ignore_index=ignore_index, check_labels=check_labels)
        return _ra_from_sums(*sums, student.shape[-2] * student.shape[-1], include_ignore)


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
