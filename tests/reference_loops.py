"""Plain per-image, per-region loops written straight from the method's formulas.

They live with the tests, which own their oracles: the ground truth that the tests compare the
vectorized code against, and the baseline the benchmarks time it against (the benchmark scripts, run from the
repository root, import them as ``tests.reference_loops``) (they loop the way the authors' code does). Never use them on a hot path.
``dtype`` lets tests run them in float64.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from srha_hf.srm import STD_EPS


def _resize(labels: torch.Tensor, size) -> torch.Tensor:
    # Legacy nearest (docs/method.md §2): source index floor(dst * in / out), written out by hand.
    in_h, in_w = labels.shape[-2:]
    out_h, out_w = size
    rows = torch.floor(torch.arange(out_h, dtype=torch.float64) * (in_h / out_h)).long()
    cols = torch.floor(torch.arange(out_w, dtype=torch.float64) * (in_w / out_w)).long()
    return labels[..., rows[:, None], cols[None, :]]


def _region_of(label: int, num_labels: int, ignore_index: int) -> int:
    return num_labels if label == ignore_index else label


def srm_loop(
    features: torch.Tensor,
    labels: torch.Tensor,
    mixing_weights: torch.Tensor,
    num_labels: int = 19,
    ignore_index: int = 255,
    dtype=None,
) -> torch.Tensor:
    """docs/method.md §2, image by image and class by class. ``mixing_weights`` ``(B, R, R)``: the weights of
    present class ``k`` over the present classes ``K`` are row ``r(k)`` at columns ``r(K)``,
    renormalised to sum to one. Returns ``cat([features, rearranged])``."""
    dtype = dtype or features.dtype
    batch = features.shape[0]
    labels = _resize(labels[:batch], features.shape[-2:])
    out = []
    for b in range(batch):
        x = features[b].to(dtype)
        lab = labels[b]
        classes = torch.unique(lab).tolist()  # sorted, includes 255
        means, stds = [], []
        for k in classes:
            region = x[:, lab == k]  # (C, |R_k|)
            mu = region.mean(dim=1)
            sigma = ((region - mu[:, None]) ** 2).mean(dim=1).sqrt() + STD_EPS
            means.append(mu)
            stds.append(sigma)
        M = torch.stack(means)
        S = torch.stack(stds)
        cols = [_region_of(k, num_labels, ignore_index) for k in classes]
        new = x.clone()
        for i, k in enumerate(classes):
            w = mixing_weights[b, cols[i], cols].to(dtype)
            w = w / w.sum()
            mask = lab == k
            new[:, mask] = (x[:, mask] - M[i][:, None]) / S[i][:, None] * (w @ S)[:, None] + (w @ M)[:, None]
        out.append(new)
    return torch.cat([features.to(dtype), torch.stack(out)], dim=0)


def ga_loop(student: torch.Tensor, teacher_original: torch.Tensor) -> torch.Tensor:
    """GA_l with the teacher target ``T = cat([t, t, ...])`` built explicitly."""
    reps = student.shape[0] // teacher_original.shape[0]
    target = torch.cat([teacher_original] * reps)
    return F.mse_loss(student.mean(dim=(2, 3)), target.mean(dim=(2, 3)))


def la_loop(student: torch.Tensor, teacher_original: torch.Tensor) -> torch.Tensor:
    reps = student.shape[0] // teacher_original.shape[0]
    return F.mse_loss(student, torch.cat([teacher_original] * reps))


def ra_loop(
    student: torch.Tensor,
    teacher_original: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = 255,
    include_ignore: bool = True,
    dtype=None,
) -> torch.Tensor:
    """RA_l of docs/method.md §3.2: for each student row and each label in its resized map, area ratio times the
    squared difference of region means, averaged over the P x C entries."""
    dtype = dtype or student.dtype
    reps = student.shape[0] // teacher_original.shape[0]
    target = torch.cat([teacher_original] * reps).to(dtype)
    student = student.to(dtype)
    if labels.shape[0] != student.shape[0]:
        labels = torch.cat([labels] * reps)
    h, w = student.shape[-2:]
    labels = _resize(labels, (h, w))
    total = torch.zeros((), dtype=dtype)
    pairs = 0
    channels = student.shape[1]
    for b in range(student.shape[0]):
        for k in torch.unique(labels[b]).tolist():
            if k == ignore_index and not include_ignore:
                continue
            mask = labels[b] == k
            area = mask.sum().to(dtype) / (h * w)
            s = student[b][:, mask].mean(dim=1)
            t = target[b][:, mask].mean(dim=1)
            total = total + (area * (s - t) ** 2).sum()
            pairs += 1
    if pairs == 0:
        return total
    return total / (pairs * channels)


def pc_loop(logits_original: torch.Tensor, logits_rearranged: torch.Tensor, dtype=None) -> torch.Tensor:
    """JS of docs/method.md §3.3 written as the explicit sum over pixels and classes (0·log 0 = 0)."""
    dtype = dtype or logits_original.dtype
    p = torch.softmax(logits_original.to(dtype), dim=1)
    q = torch.softmax(logits_rearranged.to(dtype), dim=1)
    m = ((p + q) / 2).clamp(1e-7, 1.0)
    rows = p.shape[0] * p.shape[2] * p.shape[3]

    def kl(target):
        term = torch.where(target > 0, target * (torch.log(target) - torch.log(m)), torch.zeros_like(target))
        return term.sum() / rows

    return 0.5 * (kl(q) + kl(p))


def srha_total_loop(
    logits: torch.Tensor,
    aux_logits: torch.Tensor,
    student_features: Sequence[torch.Tensor],
    teacher_targets: Sequence[torch.Tensor],
    labels: torch.Tensor,
    layer_weights=(0.4, 0.6, 0.8, 1.0),
    aux_weight: float = 0.4,
    pc_weight: float = 10.0,
    ignore_index: int = 255,
    dtype=torch.float64,
) -> Dict[str, torch.Tensor]:
    """docs/method.md §3.5's total from the loops above, for the default layers 1..4 and a doubled batch."""
    batch = labels.shape[0]
    labels2 = torch.cat([labels, labels])
    ce = F.cross_entropy(logits.to(dtype), labels2, ignore_index=ignore_index)
    aux_labels = _resize(labels2, aux_logits.shape[-2:])
    aux = F.cross_entropy(aux_logits.to(dtype), aux_labels, ignore_index=ignore_index)
    terms = {"ce": ce, "aux": aux_weight * aux, "ga": 0.0, "ra": 0.0, "la": 0.0}
    for w, s, t in zip(layer_weights, student_features, teacher_targets):
        s, t = s.to(dtype), t.to(dtype)
        terms["ga"] = terms["ga"] + w * ga_loop(s, t)
        terms["ra"] = terms["ra"] + w * ra_loop(s, t, labels2, ignore_index, dtype=dtype)
        terms["la"] = terms["la"] + w * la_loop(s, t)
    terms["pc"] = pc_weight * pc_loop(logits[:batch], logits[batch:], dtype=dtype)
    terms["total"] = sum(terms[k] for k in ("ce", "aux", "ga", "ra", "la", "pc"))
    return terms
