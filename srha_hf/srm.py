"""SRM: the Semantic Rearrangement Module (docs/method.md §2), vectorized over images and regions.

Every labelled region of the early (layer0) features is re-stylised with a convex combination of the
per-region statistics of the same image. The reference loops over images and classes in Python; here
the region statistics of the whole batch come from batched matmuls against a one-hot region map and the
per-region factors reach the pixels by gathers along the pixel axis, so the cost hardly grows with the
number of regions.

Region layout (docs/method.md §2): with ``R = num_labels + 1`` regions, region ``r < num_labels`` holds the
pixels labelled ``r`` and region ``num_labels`` holds the ignore label. Mixing weights are ``(B, R, R)``:
row ``k`` gives the weights with which region ``k`` borrows the statistics of every region.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

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


class _RegionLayout(NamedTuple):
    """Where every pixel of a batch falls among the ``R`` regions (see the module docstring)."""

    regions: torch.Tensor  # (B, N) region index of every pixel
    index: torch.Tensor  # (B, C, N) expanded view of ``regions``: the gather index along the pixel axis
    one_hot: torch.Tensor  # (B, R, N) float32
    counts: torch.Tensor  # (B, R) pixels per region
    present: torch.Tensor  # (B, R) bool: the regions that take part in the mixtures
    safe_counts: torch.Tensor  # (B, 1, R) counts clamped to at least one


def _first_half_labels(labels: torch.Tensor, batch: int) -> torch.Tensor:
    """Keep the first ``B`` label maps of a ``(B, ...)`` or ``(2B, ...)`` batch; anything else is an error."""
    if labels.shape[0] == 2 * batch:
        return labels[:batch]
    if labels.shape[0] != batch:
        raise ValueError(f"labels batch {labels.shape[0]} matches neither B={batch} nor 2B={2 * batch}")
    return labels


def _region_layout(
    labels: torch.Tensor,
    x_shape: torch.Size,
    size: tuple,
    device,
    *,
    num_labels: int,
    ignore_index: int,
    include_ignore: bool,
    check_labels: bool,
) -> _RegionLayout:
    """Resize ``labels`` to the feature ``size`` and lay out their regions for flattened features of ``x_shape``."""
    batch = x_shape[0]
    regions = labels_to_regions(resize_labels_nearest(labels.to(device), size), num_labels, ignore_index, check=check_labels)
    regions = regions.reshape(batch, size[0] * size[1])
    index = regions[:, None, :].expand(x_shape)
    one_hot = region_one_hot(regions, num_labels + 1)
    counts = one_hot.sum(dim=-1)
    present = counts > 0
    if not include_ignore:
        present[:, num_labels] = False
    return _RegionLayout(regions, index, one_hot, counts, present, counts.clamp_min(1.0)[:, None, :])


def _centre_on_region_means(x: torch.Tensor, layout: _RegionLayout, out: Optional[torch.Tensor] = None):
    """Return the region means ``(B, C, R)`` and ``x`` minus its region's mean ``(B, C, N)``.

    With ``out`` (a ``(B, C, N)`` buffer) the centred features are computed there in place.
    """
    means = sum_over_regions(layout.one_hot, x) / layout.safe_counts
    if out is not None:
        centred = torch.gather(means, 2, layout.index, out=out)
        torch.sub(x, centred, out=centred)
    else:
        centred = x - torch.gather(means, 2, layout.index)
    return means, centred


def _region_stds(centred: torch.Tensor, layout: _RegionLayout, unbiased_std: bool):
    """Return the region stds ``(B, C, R)`` (plus :data:`STD_EPS`) and the squares buffer ``(B, C, N)``.

    Second pass of the reference's two-pass statistics: the spread around the region means, biased
    unless ``unbiased_std`` (docs/method.md §9 M7).
    """
    squares = centred * centred
    sq_sums = sum_over_regions(layout.one_hot, squares)
    denom = (layout.counts - 1.0).clamp_min(1.0)[:, None, :] if unbiased_std else layout.safe_counts
    # clamp: a zero variance (one-pixel or constant region) must not give an infinite sqrt gradient
    stds = (sq_sums / denom).clamp_min(torch.finfo(torch.float32).tiny).sqrt() + STD_EPS
    return stds, squares


def _resolve_weights(mixing_weights, present, *, concentration, generator, device) -> torch.Tensor:
    """Draw (when ``None``) or check the ``(B, R, R)`` mixing weights, then restrict them to ``present``."""
    batch, num_regions = present.shape
    if mixing_weights is None:
        mixing_weights = sample_mixing_weights(batch, num_regions, concentration, generator, device)
    elif tuple(mixing_weights.shape) != (batch, num_regions, num_regions):
        raise ValueError(
            f"mixing_weights must be (B, R, R) = ({batch}, {num_regions}, {num_regions}), got {tuple(mixing_weights.shape)}"
        )
    return _restrict_weights(mixing_weights.to(device=device, dtype=torch.float32), present)


def _mixed_statistics(means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor):
    """Return every region's target mean ``μ̂_k`` and the std ratio ``σ̂_k / σ_k``, both ``(B, C, R)``."""
    weights_t = weights.transpose(1, 2)
    target_means = torch.bmm(means, weights_t)  # row k mixes the columns with w_k
    scale = torch.bmm(stds, weights_t) / stds
    return target_means, scale


def _restyle_in_place(centred, squares, scale, target_means, index) -> None:
    """Turn ``centred`` into ``centred · scale_k + μ̂_k`` in place, gathering the factors into ``squares``."""
    centred.mul_(torch.gather(scale, 2, index, out=squares))
    centred.add_(torch.gather(target_means, 2, index, out=squares))


def _restyled(x, centred, scale, target_means, layout: _RegionLayout, include_ignore: bool) -> torch.Tensor:
    """Return ``centred · scale_k + μ̂_k`` as a new ``(B, C, N)`` tensor; ignore pixels keep ``x`` unless ``include_ignore``."""
    rearranged = torch.addcmul(torch.gather(target_means, 2, layout.index), centred, torch.gather(scale, 2, layout.index))
    if not include_ignore:  # ignore pixels keep their values
        ignore_region = layout.one_hot.shape[1] - 1
        rearranged = torch.where((layout.regions == ignore_region)[:, None, :], x, rearranged)
    return rearranged


def _detached_leaf(rearranged: torch.Tensor) -> torch.Tensor:
    """docs/method.md §9 M8: cut the rearranged half from the graph, as a new leaf requiring grad when grad is on."""
    rearranged = rearranged.detach()
    if torch.is_grad_enabled():
        rearranged.requires_grad_(True)
    return rearranged


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
    labels = _first_half_labels(labels, batch)

    # Common training case (frozen layer0, float32): both halves are written straight into the output
    # and the rearranged half is computed in place there.
    in_place = detach_rearranged and include_ignore and not features.requires_grad and features.dtype == torch.float32
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = features.float().reshape(batch, channels, height * width)
        layout = _region_layout(labels, x.shape, (height, width), features.device, num_labels=num_labels,
                                ignore_index=ignore_index, include_ignore=include_ignore, check_labels=check_labels)
        out = None
        if in_place:
            out = torch.empty((2 * batch, channels, height, width), dtype=features.dtype, device=features.device)
            out[:batch].copy_(features)
        # Two-pass statistics as the reference: region means, then the spread around them. Region sums
        # are batched matmuls with the one-hot map; per-region values reach the pixels by gathers.
        means, centred = _centre_on_region_means(x, layout, None if out is None else out[batch:].view(batch, channels, -1))
        stds, squares = _region_stds(centred, layout, unbiased_std)
        weights = _resolve_weights(mixing_weights, layout.present, concentration=concentration, generator=generator, device=features.device)
        target_means, scale = _mixed_statistics(means, stds, weights)
        # x̃ = (x − μ_k) / σ_k · σ̂_k + μ̂_k
        if in_place:  # the squares buffer is free again: it takes the gathered factors in turn
            _restyle_in_place(centred, squares, scale, target_means, layout.index)
        else:
            rearranged = _restyled(x, centred, scale, target_means, layout, include_ignore)
            rearranged = rearranged.reshape(batch, channels, height, width).to(features.dtype)

    if out is None:
        out = torch.cat([features, _detached_leaf(rearranged) if detach_rearranged else rearranged], dim=0)
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


