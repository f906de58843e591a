"""SRM: the Semantic Rearrangement Module (docs/method.md §2), vectorized over images and regions.

Every labelled region of the early (layer0) features is re-stylised with a convex combination of the
per-region statistics of the same image. The reference loops over images and classes in Python; here
the region statistics of the whole batch come from batched matmuls against a one-hot region map and the
per-region factors reach the pixels by gathers along the pixel axis, so the cost hardly grows with the
number of regions.

Region layout (DESIGN.md): with ``R = num_labels + 1`` regions, region ``r < num_labels`` holds the
pixels labelled ``r`` and region ``num_labels`` holds the ignore label. Mixing weights are ``(B, R, R)``:
row ``k`` gives the weights with which region ``k`` borrows the statistics of every region.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

# The region helpers live in regions.py (RA uses them too); they stay importable from here.
from .regions import (  # noqa: F401
    check_train_ids,
    labels_to_regions,
    region_one_hot,
    resize_labels_nearest,
    sum_over_regions,
)

#: The reference's ``--concentration_coeff`` default (docs/method.md §2 step 3), ≈ 2**-6.
DEFAULT_CONCENTRATION = 0.0156
#: Added to every standard deviation (not to the variance), docs/method.md §2 step 2 and §1.1 step 3.
STD_EPS = 1e-7


def sample_mixing_weights(
    batch_size: int,
    num_regions: int = 20,
    concentration: float = DEFAULT_CONCENTRATION,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """Draw SRM mixing weights ``(B, R, R)``: every row ~ Dirichlet(concentration * 1_R), float32.

    Uses torch's own Dirichlet sampler (docs/method.md §9 M11), with ``generator`` when given. Restricting a row
    to the ``n`` regions present in an image and renormalising (what :func:`semantic_rearrangement`
    does) yields a draw of Dirichlet(concentration * 1_n), the reference's distribution. In float32 the
    present components of a row can all be negligible against the row's total; renormalising then gives
    uniform weights, as the reference's float32 GPU sampler does when all its draws underflow, at a
    similar rate (about 6 % of rows for n = 2, negligible for n >= 5; see tests/test_srm.py).
    """
    alpha = torch.full((batch_size, num_regions, num_regions), float(concentration), dtype=torch.float32, device=device)
    return torch._sample_dirichlet(alpha, generator=generator)


def _restrict_weights(weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Zero the columns of absent regions and renormalise every row over the present ones.

    A row that is already a distribution over the present regions is unchanged (up to rounding). A row
    with no mass on them falls back to uniform weights over the present regions, so the result never
    holds NaN.
    """
    present_f = present[:, None, :].to(weights.dtype)
    masked = weights * present_f
    total = masked.sum(dim=-1, keepdim=True)
    uniform = present_f / present_f.sum(dim=-1, keepdim=True).clamp_min(1.0)
    return torch.where(total > 0, masked / total.clamp_min(torch.finfo(weights.dtype).tiny), uniform)


def semantic_rearrangement(
    features: torch.Tensor,
    labels: torch.Tensor,
    mixing_weights: Optional[torch.Tensor] = None,
    *,
    num_labels: int = 19,
    ignore_index: int = 255,
    concentration: float = DEFAULT_CONCENTRATION,
    generator: Optional[torch.Generator] = None,
    include_ignore: bool = True,
    unbiased_std: bool = False,
    detach_rearranged: bool = True,
    return_weights: bool = False,
    check_labels: bool = True,
):
    """docs/method.md §2: return ``cat([features, rearranged])`` of shape ``(2B, C, h, w)``.

    Args:
        features: ``(B, C, h, w)`` layer0 output.
        labels: ``(B, H, W)`` or ``(2B, H, W)`` train IDs at any resolution (only the first ``B`` maps
            are used); nearest-resized to ``(h, w)`` as the reference does.
        mixing_weights: optional ``(B, R, R)`` weights, ``R = num_labels + 1``. Only the regions
            present at feature resolution are used; each row is restricted to them and renormalised
            (a no-op for rows that already sum to one over them). Without it, weights are drawn with
            :func:`sample_mixing_weights` on the features' device using ``generator``.
        include_ignore: docs/method.md §9 M5 (faithful ``True``): the ignore region is one more region, both
            re-stylised and used as a style source. ``False`` leaves ignore pixels unchanged and keeps
            them out of every mixture.
        unbiased_std: docs/method.md §9 M7 (faithful ``False``): the region std divides by ``|R_k|``.
        detach_rearranged: docs/method.md §9 M8 (faithful ``True``): the rearranged half is detached and made a
            new leaf requiring grad, so no gradient reaches layer0 through it or through the statistics.
        return_weights: also return the ``(B, R, R)`` weights actually used (restricted, renormalised).
        check_labels: check that ``labels`` hold train IDs (``False`` when the caller already did).

    Statistics are computed in float32 with autocast disabled; the output keeps ``features``' dtype.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, h, w), got shape {tuple(features.shape)}")
    batch, channels, height, width = features.shape
    if labels.shape[0] == 2 * batch:
        labels = labels[:batch]
    elif labels.shape[0] != batch:
        raise ValueError(f"labels batch {labels.shape[0]} matches neither B={batch} nor 2B={2 * batch}")
    num_regions = num_labels + 1

    # Common training case (frozen layer0, float32): both halves are written straight into the output
    # and the rearranged half is computed in place there.
    in_place = detach_rearranged and include_ignore and not features.requires_grad and features.dtype == torch.float32
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = features.float().reshape(batch, channels, height * width)
        regions = labels_to_regions(
            resize_labels_nearest(labels.to(features.device), (height, width)), num_labels, ignore_index, check=check_labels
        ).reshape(batch, height * width)
        index = regions[:, None, :].expand(x.shape)  # (B, C, N) view: every pixel's region, per channel
        one_hot = region_one_hot(regions, num_regions)  # (B, R, N)
        counts = one_hot.sum(dim=-1)  # (B, R)
        present = counts > 0
        if not include_ignore:
            present[:, num_labels] = False
        safe_counts = counts.clamp_min(1.0)[:, None, :]  # (B, 1, R)

        # Two-pass statistics as the reference: region means, then the spread around them (biased by
        # default, M7). Region sums are batched matmuls with the one-hot map; per-region values reach
        # the pixels by a gather along the pixel axis.
        means = sum_over_regions(one_hot, x) / safe_counts  # (B, C, R)
        if in_place:
            out = torch.empty((2 * batch, channels, height, width), dtype=features.dtype, device=features.device)
            out[:batch].copy_(features)
            centred = torch.gather(means, 2, index, out=out[batch:].view(batch, channels, -1))
            torch.sub(x, centred, out=centred)
        else:
            out = None
            centred = x - torch.gather(means, 2, index)  # (B, C, N)
        squares = centred * centred
        sq_sums = sum_over_regions(one_hot, squares)
        denom = (counts - 1.0).clamp_min(1.0)[:, None, :] if unbiased_std else safe_counts
        # clamp: a zero variance (one-pixel or constant region) must not give an infinite sqrt gradient
        stds = (sq_sums / denom).clamp_min(torch.finfo(torch.float32).tiny).sqrt() + STD_EPS  # (B, C, R)

        if mixing_weights is None:
            mixing_weights = sample_mixing_weights(batch, num_regions, concentration, generator, features.device)
        elif tuple(mixing_weights.shape) != (batch, num_regions, num_regions):
            raise ValueError(
                f"mixing_weights must be (B, R, R) = ({batch}, {num_regions}, {num_regions}), "
                f"got {tuple(mixing_weights.shape)}"
            )
        weights = _restrict_weights(mixing_weights.to(device=features.device, dtype=torch.float32), present)
        weights_t = weights.transpose(1, 2)
        target_means = torch.bmm(means, weights_t)  # (B, C, R): row k mixes the columns with w_k
        scale = torch.bmm(stds, weights_t) / stds  # σ̂_k / σ_k
        # x̃ = (x − μ_k) / σ_k · σ̂_k + μ̂_k
        if in_place:  # the squares buffer is free again: it takes the gathered factors in turn
            centred.mul_(torch.gather(scale, 2, index, out=squares))
            centred.add_(torch.gather(target_means, 2, index, out=squares))
        else:
            rearranged = torch.addcmul(torch.gather(target_means, 2, index), centred, torch.gather(scale, 2, index))
            if not include_ignore:  # ignore pixels keep their values
                rearranged = torch.where((regions == num_labels)[:, None, :], x, rearranged)
            rearranged = rearranged.reshape(batch, channels, height, width).to(features.dtype)

    if out is None:
        if detach_rearranged:
            rearranged = rearranged.detach()
            if torch.is_grad_enabled():
                rearranged.requires_grad_(True)
        out = torch.cat([features, rearranged], dim=0)
    if return_weights:
        return out, weights
    return out


class SemanticRearrangement(nn.Module):
    """The SRM as a parameter-free module, configured from an :class:`~srha_hf.SRHAConfig`."""

    def __init__(self, config):
        super().__init__()
        self.num_labels = config.num_labels
        self.ignore_index = config.ignore_index
        self.concentration = config.srm_concentration
        self.include_ignore = config.srm_include_ignore
        self.unbiased_std = config.srm_unbiased_std
        self.detach_rearranged = config.srm_detach_rearranged

    def forward(self, features, labels, mixing_weights=None, generator=None, check_labels: bool = True):
        return semantic_rearrangement(
            features,
            labels,
            mixing_weights,
            num_labels=self.num_labels,
            ignore_index=self.ignore_index,
            concentration=self.concentration,
            generator=generator,
            include_ignore=self.include_ignore,
            unbiased_std=self.unbiased_std,
            detach_rearranged=self.detach_rearranged,
            check_labels=check_labels,
        )

    def extra_repr(self) -> str:
        return f"concentration={self.concentration}, include_ignore={self.include_ignore}"


