"""Label maps as regions: the shared ground of SRM and RA (docs/method.md §2, §3.2).

With ``R = num_labels + 1`` regions, region ``r < num_labels`` holds the pixels labelled ``r`` and region
``num_labels`` the ignore label. Here: the reference's nearest resize of label maps, the train-ID check,
labels -> region indices, the one-hot region map, and per-region sums as batched matmuls (every feature
is read once), for one tensor (:func:`sum_over_regions`) or for student rows and their teacher targets
(:func:`region_sums`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def resize_labels_nearest(labels: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Nearest-resize an integer label map ``(N, H, W)`` to ``size`` the way the reference does.

    PyTorch's legacy ``nearest`` on the float-cast map: source index ``floor(dst * in / out)``, so an
    integer factor ``f`` picks pixel ``(f*i, f*j)`` (docs/method.md Appendix B). Returns int64 ``(N, h, w)``.
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be (N, H, W), got shape {tuple(labels.shape)}")
    in_h, in_w = labels.shape[-2:]
    out_h, out_w = size
    if in_h % out_h == 0 and in_w % out_w == 0:
        # Integer factors: floor(dst * f) = dst * f exactly, so the resize is a strided slice.
        return labels[:, :: in_h // out_h, :: in_w // out_w].long()
    resized = F.interpolate(labels[:, None].float(), size=(out_h, out_w), mode="nearest")
    return resized[:, 0].long()


def check_train_ids(labels: torch.Tensor, num_labels: int = 19, ignore_index: int = 255) -> None:
    """Raise ``ValueError`` naming the offending values if ``labels`` holds anything but the train IDs
    ``0..num_labels-1`` and ``ignore_index`` (a label map that was not decoded to train IDs)."""
    bad = ((labels < 0) | (labels >= num_labels)) & (labels != ignore_index)
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:10].tolist()
        raise ValueError(
            f"label map holds values {values} outside the train IDs 0..{num_labels - 1} and the ignore "
            f"label {ignore_index}; decode labels to train IDs first"
        )


def labels_to_regions(labels: torch.Tensor, num_labels: int = 19, ignore_index: int = 255, *, check: bool = True) -> torch.Tensor:
    """Map train IDs to region indices: ``r = label`` for ``0 <= label < num_labels``, ``num_labels`` for
    ignore. Checks the values first (see :func:`check_train_ids`) unless ``check=False``: callers that
    checked the batch once already (``compute_srha_loss``) skip it, as on a GPU it costs a host
    synchronisation per call."""
    regions = labels.long()
    if check:
        check_train_ids(regions, num_labels, ignore_index)
    return torch.where(regions == ignore_index, torch.full_like(regions, num_labels), regions)


def region_one_hot(regions: torch.Tensor, num_regions: int, dtype=torch.float32) -> torch.Tensor:
    """``(N, h, w)`` region indices -> ``(N, R, h*w)`` one-hot membership in ``dtype``."""
    flat = regions.reshape(regions.shape[0], 1, -1)
    one_hot = torch.zeros(regions.shape[0], num_regions, flat.shape[-1], dtype=dtype, device=regions.device)
    one_hot.scatter_(1, flat, 1.0)
    return one_hot


def _pixel_chunks(num_pixels: int, largest: int = 128) -> int:
    """The largest divisor of ``num_pixels`` up to ``largest`` that leaves at least 64 pixels a chunk."""
    for chunks in range(min(largest, num_pixels // 64), 1, -1):
        if num_pixels % chunks == 0:
            return chunks
    return 1


def sum_over_regions(one_hot: torch.Tensor, values: torch.Tensor, split_pixels: Optional[bool] = None) -> torch.Tensor:
    """Per-region sums: ``one_hot`` ``(B, R, N)`` and ``values`` ``(..., B, C, N)`` -> ``(..., B, C, R)``.

    A batched matmul with the one-hot map, deterministic and differentiable. On CPU it is one product
    ``one_hot @ values^T`` (25-30 % faster here than ``values @ one_hot^T``). On a GPU one matmul of
    these shapes (a tiny ``C x R`` output, a long pixel axis) leaves most of the chip idle, so
    ``split_pixels`` (default: on for non-CPU devices) cuts the pixel axis into up to 128 chunks, takes
    each chunk's product as one more batch of the matmul and adds the partial sums (5-9x faster on an
    H200, see benchmarks/README.md).
    """
    if split_pixels is None:
        split_pixels = values.device.type != "cpu"
    chunks = _pixel_chunks(values.shape[-1]) if split_pixels else 1
    if chunks == 1:
        return torch.matmul(one_hot, values.transpose(-1, -2)).transpose(-1, -2)
    batch, num_regions, num_pixels = one_hot.shape
    per_chunk = num_pixels // chunks
    parts = values.reshape(*values.shape[:-1], chunks, per_chunk).transpose(-3, -2)  # (..., B, k, C, M)
    one_hot_parts = one_hot.reshape(batch, num_regions, chunks, per_chunk).permute(0, 2, 3, 1)  # (B, k, M, R)
    return torch.matmul(parts, one_hot_parts).sum(dim=-3)


def rows_view(student: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """View ``student`` (n·B, ...) as (n, B, ...) against ``target`` (B, ...) broadcast as (1, B, ...)."""
    rows = target.shape[0]
    if student.shape[0] % rows or student.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"student features {tuple(student.shape)} do not line up with teacher targets {tuple(target.shape)}"
        )
    return student.reshape(student.shape[0] // rows, *target.shape), target.unsqueeze(0)


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
    s, t = rows_view(student, teacher)
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
