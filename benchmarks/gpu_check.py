"""CUDA checks and GPU timings in one script (run on a GPU machine; prints JSON lines).

1. SRM on CUDA (float32 and under bf16 autocast) against the float64 per-region loop; the pixel-split
   region sums and RA on CUDA against float64 references.
2. The Dirichlet draws on CUDA: torch's own float32 sampler over n regions against SRHA's restricted
   rows (share of draws with largest weight > 0.9, share of uniform fallbacks), as docs/method.md §2 / §9 M11.
3. compute_srha_loss for ResNet-50 at the recipe's batch 4 and 768 crops under bf16 autocast: finite,
   gradients, teacher unchanged.
Then the SRM / RA / step benchmarks on the GPU are run by the caller.
"""

import json
import sys

import _common  # noqa: F401 - puts tests/ (the reference loops) on sys.path
import torch
from reference_loops import ra_loop, srm_loop

from srha_hf import (
    SRHAConfig,
    SRHAForSemanticSegmentation,
    build_teacher,
    compute_srha_loss,
    regional_alignment_loss,
    sample_mixing_weights,
    semantic_rearrangement,
)
from srha_hf.srm import region_one_hot, sum_over_regions


def report(name, **values):
    print(json.dumps({"check": name, **values}), flush=True)


def main():
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    dev = torch.device("cuda")
    report("env", torch=torch.__version__, gpu=torch.cuda.get_device_name(0))
    gen = torch.Generator().manual_seed(0)

    x = torch.randn(2, 64, 96, 96, generator=gen) * 2 + 1
    labels = torch.randint(0, 12, (2, 384, 384), generator=gen)
    labels[:, :40] = 255
    w = sample_mixing_weights(2, 20, generator=gen)
    ref = srm_loop(x, labels, w, dtype=torch.float64)
    out = semantic_rearrangement(x.to(dev), labels.to(dev), w.to(dev)).cpu().double()
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out_bf = semantic_rearrangement(x.to(dev).bfloat16(), labels.to(dev), w.to(dev))
    rel_bf = ((out_bf.cpu().double() - ref).abs().max() / ref.abs().max()).item()
    report("srm_cuda_vs_loop", rel_err_fp32=rel, rel_err_bf16=rel_bf, bf16_dtype=str(out_bf.dtype), ok=rel < 1e-5 and rel_bf < 2**-7)

    # the pixel-split region sums (the GPU default) and RA on CUDA against the float64 loops
    values = torch.randn(2, 3, 16, 48 * 64, generator=gen, dtype=torch.float64)
    regions = torch.randint(0, 20, (3, 48 * 64), generator=gen)
    one_hot = region_one_hot(regions, 20, torch.float64)
    expected = sum_over_regions(one_hot, values, split_pixels=False)
    split = sum_over_regions(one_hot.float().to(dev), values.float().to(dev)).cpu().double()
    rel_sums = ((split - expected).abs().max() / expected.abs().max()).item()
    s_feat = torch.randn(4, 32, 48, 48, generator=gen)
    t_feat = torch.randn(2, 32, 48, 48, generator=gen)
    ra_labels = torch.randint(0, 19, (2, 192, 192), generator=gen)
    ra_labels[:, :20] = 255
    ra_ref = ra_loop(s_feat.double(), t_feat.double(), ra_labels).item()
    ra_cuda = regional_alignment_loss(s_feat.to(dev), t_feat.to(dev), ra_labels.to(dev)).item()
    rel_ra = abs(ra_cuda - ra_ref) / abs(ra_ref)
    report("region_sums_and_ra_cuda_vs_loop", rel_err_sums=rel_sums, rel_err_ra=rel_ra, ok=rel_sums < 1e-5 and rel_ra < 1e-5)

    n_draws = 200000
    for n in (2, 5, 10, 15):
        direct = torch.distributions.Dirichlet(torch.full((n,), 0.0156, device=dev)).sample((n_draws,))
        feats = torch.randn(1, 1, 4, 8, device=dev).expand(20000, -1, -1, -1)
        lab = (torch.arange(32, device=dev) % n).reshape(1, 4, 8).expand(20000, -1, -1)
        _, used = semantic_rearrangement(feats, lab, return_weights=True)
        rows = used[:, 0, :n]
        report(
            "dirichlet_cuda",
            n=n,
            direct_share_max_gt_0_9=(direct.max(-1).values > 0.9).float().mean().item(),
            direct_share_uniform=((direct - 1.0 / n).abs() < 1e-6).all(-1).float().mean().item(),
            srha_share_max_gt_0_9=(rows.max(-1).values > 0.9).float().mean().item(),
            srha_share_uniform=((rows - 1.0 / n).abs() < 1e-6).all(-1).float().mean().item(),
        )

    torch.manual_seed(0)
    cfg = SRHAConfig(backbone="resnet50")
    student = SRHAForSemanticSegmentation(cfg).to(dev).train()
    teacher = build_teacher(cfg, device=dev)
    before = {k: v.clone() for k, v in teacher.state_dict().items() if not k.endswith("num_batches_tracked")}
    xb = torch.randn(4, 3, 768, 768, device=dev)
    yb = torch.randint(0, 19, (4, 768, 768), device=dev)
    yb[:, :64] = 255
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, terms = compute_srha_loss(student, teacher, xb, yb)
    loss.backward()
    grads_ok = all(torch.isfinite(p.grad).all().item() for p in student.parameters() if p.grad is not None)
    unchanged = all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    report(
        "srha_loss_cuda_bf16_r50_b4_768",
        loss=loss.item(),
        terms={k: v.item() for k, v in terms.items()},
        finite=bool(torch.isfinite(loss).item()),
        grads_finite=grads_ok,
        teacher_unchanged=unchanged,
        max_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
    )


if __name__ == "__main__":
    main()
