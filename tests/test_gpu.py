"""CUDA against the CPU: the correctness checks of the GPU machine (``pytest -m gpu``; benchmarks/gpu_check.sh
runs them with the GPU timings). Skipped where there is no CUDA device, so ``make test`` on a CPU skips them.

1. SRM on CUDA (float32 and under bf16 autocast) against the float64 per-region loop; the pixel-split region
   sums and RA on CUDA against float64 references.
2. The Dirichlet draws on CUDA: torch's own float32 sampler over n regions against SRHA's restricted rows
   (share of draws with largest weight > 0.9, share of uniform fallbacks), as docs/method.md §2 / §9 M11: reported.
3. compute_srha_loss for ResNet-50 at the recipe's batch 4 and 768 crops under bf16 autocast: finite, finite
   gradients, teacher unchanged.
4. ``evaluate_model`` with a deterministic per-pixel model on all five synthetic benchmarks: CUDA confusion
   matrices equal the CPU ones; the metric fed CUDA tensors equals the metric fed numpy arrays; an SRHA model
   (MobileNetV2) on CUDA in fp32 and bf16 against the CPU fp32 result (the share of agreeing pixels: reported).
"""

import json

import numpy as np
import pytest
import torch
from eval_helpers import PaletteModel
from reference_loops import ra_loop, srm_loop

from srha_hf import (
    SRHAConfig,
    SRHAForSemanticSegmentation,
    build_teacher,
    compute_srha_loss,
    evaluate_model,
    regional_alignment_loss,
    sample_mixing_weights,
    semantic_rearrangement,
)
from srha_hf.data import load_benchmark
from srha_hf.data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes
from srha_hf.metrics import load_metric
from srha_hf.srm import region_one_hot, sum_over_regions

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU checks run with pytest -m gpu on a GPU machine"),
]
DEV = torch.device("cuda")


def report(name, **values):
    print(json.dumps({"check": name, **values}), flush=True)


def test_srm_on_cuda_matches_the_float64_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 96, 96, generator=gen) * 2 + 1
    labels = torch.randint(0, 12, (2, 384, 384), generator=gen)
    labels[:, :40] = 255
    w = sample_mixing_weights(2, 20, generator=gen)
    ref = srm_loop(x, labels, w, dtype=torch.float64)
    out = semantic_rearrangement(x.to(DEV), labels.to(DEV), w.to(DEV)).cpu().double()
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out_bf = semantic_rearrangement(x.to(DEV).bfloat16(), labels.to(DEV), w.to(DEV))
    rel_bf = ((out_bf.cpu().double() - ref).abs().max() / ref.abs().max()).item()
    report("srm_cuda_vs_loop", rel_err_fp32=rel, rel_err_bf16=rel_bf, bf16_dtype=str(out_bf.dtype))
    assert rel < 1e-5 and rel_bf < 2**-7


def test_region_sums_and_ra_on_cuda_match_float64():
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(2, 3, 16, 48 * 64, generator=gen, dtype=torch.float64)
    regions = torch.randint(0, 20, (3, 48 * 64), generator=gen)
    one_hot = region_one_hot(regions, 20, torch.float64)
    expected = sum_over_regions(one_hot, values, split_pixels=False)
    split = sum_over_regions(one_hot.float().to(DEV), values.float().to(DEV)).cpu().double()
    rel_sums = ((split - expected).abs().max() / expected.abs().max()).item()
    s_feat = torch.randn(4, 32, 48, 48, generator=gen)
    t_feat = torch.randn(2, 32, 48, 48, generator=gen)
    ra_labels = torch.randint(0, 19, (2, 192, 192), generator=gen)
    ra_labels[:, :20] = 255
    ra_ref = ra_loop(s_feat.double(), t_feat.double(), ra_labels).item()
    ra_cuda = regional_alignment_loss(s_feat.to(DEV), t_feat.to(DEV), ra_labels.to(DEV)).item()
    rel_ra = abs(ra_cuda - ra_ref) / abs(ra_ref)
    report("region_sums_and_ra_cuda_vs_loop", rel_err_sums=rel_sums, rel_err_ra=rel_ra)
    assert rel_sums < 1e-5 and rel_ra < 1e-5


@pytest.mark.parametrize("n", [2, 5, 10, 15])
def test_dirichlet_draws_on_cuda(n):
    n_draws = 200000
    direct = torch.distributions.Dirichlet(torch.full((n,), 0.0156, device=DEV)).sample((n_draws,))
    feats = torch.randn(1, 1, 4, 8, device=DEV).expand(20000, -1, -1, -1)
    lab = (torch.arange(32, device=DEV) % n).reshape(1, 4, 8).expand(20000, -1, -1)
    _, used = semantic_rearrangement(feats, lab, return_weights=True)
    rows = used[:, 0, :n]
    shares = {
        "direct_share_max_gt_0_9": (direct.max(-1).values > 0.9).float().mean().item(),
        "direct_share_uniform": ((direct - 1.0 / n).abs() < 1e-6).all(-1).float().mean().item(),
        "srha_share_max_gt_0_9": (rows.max(-1).values > 0.9).float().mean().item(),
        "srha_share_uniform": ((rows - 1.0 / n).abs() < 1e-6).all(-1).float().mean().item(),
    }
    report("dirichlet_cuda", n=n, **shares)
    assert torch.isfinite(rows).all() and torch.allclose(rows.sum(-1), torch.ones_like(rows[:, 0]), atol=1e-4)


def test_srha_loss_on_cuda_under_bf16_for_resnet50():
    torch.manual_seed(0)
    cfg = SRHAConfig(backbone="resnet50")
    student = SRHAForSemanticSegmentation(cfg).to(DEV).train()
    teacher = build_teacher(cfg, device=DEV)
    before = {k: v.clone() for k, v in teacher.state_dict().items() if not k.endswith("num_batches_tracked")}
    xb = torch.randn(4, 3, 768, 768, device=DEV)
    yb = torch.randint(0, 19, (4, 768, 768), device=DEV)
    yb[:, :64] = 255
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, terms = compute_srha_loss(student, teacher, xb, yb)
    loss.backward()
    grads_ok = all(torch.isfinite(p.grad).all().item() for p in student.parameters() if p.grad is not None)
    unchanged = all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    report("srha_loss_cuda_bf16_r50_b4_768", loss=loss.item(), terms={k: v.item() for k, v in terms.items()},
           max_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))  # fmt: skip
    assert bool(torch.isfinite(loss).item()) and grads_ok and unchanged


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    small = (96, 54)
    roots = make_synthetic_benchmark(tmp_path_factory.mktemp("small"), num_train=1, num_val=5, size=small)
    return {name: load_benchmark(name, roots[name], "val") for name in roots}, synthetic_eval_sizes(small)


def test_evaluation_on_cuda_equals_the_cpu(small_sets):
    sets, sizes = small_sets
    model = PaletteModel()
    cpu = evaluate_model(model, sets, eval_sizes=sizes, progress=False)
    gpu = evaluate_model(model.to(DEV), sets, eval_sizes=sizes, progress=False, batch_size=2)
    assert {k: cpu[k]["confusion_matrix"] == gpu[k]["confusion_matrix"] for k in cpu} == {k: True for k in cpu}


def test_the_metric_fed_cuda_tensors_equals_numpy():
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 19, size=(4, 512, 1024)).astype(np.uint8)
    refs[:, :40] = 255
    preds = rng.integers(0, 19, size=(4, 512, 1024))
    a, b = load_metric(num_labels=19, ignore_index=255), load_metric(num_labels=19, ignore_index=255)
    a.add_batch(predictions=list(preds), references=list(refs))
    b.add_batch(predictions=torch.from_numpy(preds).to(DEV), references=torch.from_numpy(refs).to(DEV))
    ra, rb = a.compute(), b.compute()
    assert all(np.array_equal(ra[k], rb[k], equal_nan=True) for k in ra)


def test_an_srha_model_on_cuda_against_the_cpu(small_sets):
    sets, sizes = small_sets
    torch.manual_seed(0)
    srha = SRHAForSemanticSegmentation(SRHAConfig(backbone="mobilenetv2")).eval()
    ref = evaluate_model(srha, sets, eval_sizes=sizes, progress=False)
    srha.to(DEV)
    for mp in ("no", "bf16"):
        got = evaluate_model(srha, sets, eval_sizes=sizes, progress=False, batch_size=2, mixed_precision=mp)
        same = {k: float(np.minimum(np.array(got[k]["confusion_matrix"]), np.array(ref[k]["confusion_matrix"])).sum()
                         / np.array(ref[k]["confusion_matrix"]).sum()) for k in got}  # fmt: skip
        report("srha_mobilenetv2_cuda_vs_cpu", mixed_precision=mp, confusion_overlap=same,
               miou_cpu={k: ref[k]["mean_iou"] for k in ref}, miou_cuda={k: got[k]["mean_iou"] for k in got})  # fmt: skip
        assert {k: got[k]["num_images"] for k in got} == {k: ref[k]["num_images"] for k in ref}
