"""GA, RA, LA, PC, the segmentation losses and the full SRHA objective against loops written from the method's formulas (docs/method.md §3)."""

import copy

import pytest
import torch
from reference_loops import ga_loop, la_loop, pc_loop, ra_loop, srha_total_loop

from srha_hf import (
    SRHAConfig,
    SRHAForSemanticSegmentation,
    build_teacher,
    compute_srha_loss,
    global_alignment_loss,
    local_alignment_loss,
    pc_warmup_factor,
    prediction_consistency_loss,
    regional_alignment_loss,
    sample_mixing_weights,
    segmentation_losses,
    update_teacher_ema,
)


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return (abs(a - b) / abs(b)).item()


def labels_with_edge_cases(gen, batch=2, size=64):
    labels = torch.randint(0, 5, (batch, size, size), generator=gen)
    labels[:, -12:] = 255
    labels[0, 2::8, 3::8] = 9  # off the /8 grid: vanishes at feature resolution
    return labels


def test_ga_and_la_match_loops(rng):
    s = torch.randn(4, 6, 8, 8, generator=rng)
    t = torch.randn(2, 6, 8, 8, generator=rng)
    assert rel(global_alignment_loss(s, t), ga_loop(s.double(), t.double())) < 1e-5
    assert rel(local_alignment_loss(s, t), la_loop(s.double(), t.double())) < 1e-5
    with pytest.raises(ValueError, match="do not line up"):
        local_alignment_loss(s, t[:, :5])


@pytest.mark.parametrize("include_ignore", [True, False])
def test_ra_matches_loop_with_vanished_and_ignore_regions(rng, include_ignore):
    s = torch.randn(4, 16, 8, 8, generator=rng)
    t = torch.randn(2, 16, 8, 8, generator=rng)
    labels = labels_with_edge_cases(rng)
    doubled = torch.cat([labels, labels])
    got = regional_alignment_loss(s, t, doubled, include_ignore=include_ignore)
    ref = ra_loop(s, t, doubled, include_ignore=include_ignore, dtype=torch.float64)
    assert rel(got, ref) < 1e-5
    # labels for the original half only are repeated to the doubled batch
    assert torch.allclose(regional_alignment_loss(s, t, labels, include_ignore=include_ignore), got)


def test_ra_with_a_different_map_per_student_row_matches_loop(rng):
    s = torch.randn(4, 16, 8, 8, generator=rng)
    t = torch.randn(2, 16, 8, 8, generator=rng)
    rows = torch.cat([labels_with_edge_cases(rng), torch.randint(0, 19, (2, 64, 64), generator=rng)])
    got = regional_alignment_loss(s, t, rows)
    assert rel(got, ra_loop(s, t, rows, dtype=torch.float64)) < 1e-5


def test_ra_region_weighting_by_hand():
    # one image, one channel, 2x2 features, two regions: areas 3/4 and 1/4
    s = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]]])
    t = torch.zeros(1, 1, 2, 2)
    labels = torch.tensor([[[0, 0], [0, 255]]])
    expected = (0.75 * 2.0**2 + 0.25 * 10.0**2) / (2 * 1)
    assert rel(regional_alignment_loss(s, t, labels), expected) < 1e-6
    assert rel(regional_alignment_loss(s, t, labels, include_ignore=False), 0.75 * 4.0) < 1e-6
    assert regional_alignment_loss(s, t, torch.full((1, 2, 2), 255), include_ignore=False) == 0


def test_pc_matches_loop_and_has_no_stop_gradient(rng):
    lo = torch.randn(2, 19, 12, 10, generator=rng, requires_grad=True)
    lr = torch.randn(2, 19, 12, 10, generator=rng, requires_grad=True)
    got = prediction_consistency_loss(lo, lr)
    assert rel(got, pc_loop(lo.detach(), lr.detach(), dtype=torch.float64)) < 1e-5
    got.backward()
    assert lo.grad.abs().sum() > 0 and lr.grad.abs().sum() > 0
    # identical predictions: JS = 0 (up to the 1e-7 clamp)
    assert prediction_consistency_loss(lo.detach(), lo.detach()).abs() < 1e-6


def test_pc_valid_mask_switch(rng):
    lo = torch.randn(1, 19, 4, 4, generator=rng)
    lr = torch.randn(1, 19, 4, 4, generator=rng)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    assert rel(prediction_consistency_loss(lo, lr, mask), pc_loop(lo[:, :, :2], lr[:, :, :2], dtype=torch.float64)) < 1e-5


def test_segmentation_losses_downsample_aux_labels(rng):
    logits = torch.randn(4, 19, 32, 32, generator=rng)
    aux = torch.randn(4, 19, 4, 4, generator=rng)
    labels = torch.randint(0, 19, (2, 32, 32), generator=rng)
    labels[:, :3] = 255
    ce, ce_aux = segmentation_losses(logits, labels, aux)
    doubled = torch.cat([labels, labels])
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, doubled, ignore_index=255))
    assert torch.allclose(ce_aux, torch.nn.functional.cross_entropy(aux, doubled[:, ::8, ::8], ignore_index=255))
    zero, _ = segmentation_losses(logits, torch.full((2, 32, 32), 255))
    assert zero == 0


def tiny_config(**kw):
    return SRHAConfig(backbone="mobilenetv2", **kw)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    student = SRHAForSemanticSegmentation(tiny_config())
    teacher = build_teacher(tiny_config())
    return student, teacher


def srha_batch(rng):
    """A batch of 2 images (64x64), labels with the edge cases, and the student's and teacher's SRM
    mixing weights (20 regions), drawn from ``rng`` in that order."""
    x = torch.randn(2, 3, 64, 64, generator=rng)
    labels = labels_with_edge_cases(rng)
    w_s = sample_mixing_weights(2, 20, generator=rng)
    w_t = sample_mixing_weights(2, 20, generator=rng)
    return x, labels, w_s, w_t


def test_compute_srha_loss_matches_loop_total(pair, rng):
    student, teacher = pair
    student.train()
    x, labels, w_s, w_t = srha_batch(rng)
    torch.manual_seed(7)  # the dsn dropout
    loss, terms = compute_srha_loss(student, teacher, x, labels, srm_weights=w_s, teacher_srm_weights=w_t)
    torch.manual_seed(7)
    with torch.no_grad():
        out = student(x, labels=labels, srm_weights=w_s, output_features=True)
        targets = teacher(x, labels=labels, srm_weights=w_t)
    ref = srha_total_loop(out.logits, out.aux_logits, out.features, targets, labels)
    for name in ("ce", "aux", "ga", "ra", "la", "pc"):
        assert rel(terms[name], ref[name]) < 1e-5, name
    assert rel(loss.detach(), ref["total"]) < 1e-5
    assert set(terms) == {"ce", "aux", "ga", "ra", "la", "pc"}


def test_teacher_never_updates_and_gets_no_gradients(pair, rng):
    student, teacher = pair
    student.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(2, 3, 64, 64, generator=rng)
    labels = labels_with_edge_cases(rng)
    loss, _ = compute_srha_loss(student, teacher, x, labels, generator=rng)
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, before[k]), k


def test_teacher_modes(rng):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=rng)
    labels = labels_with_edge_cases(rng)
    faithful = build_teacher(tiny_config())
    teacher_train = faithful.model.layer1.training
    assert teacher_train and not faithful.model.layer0.training
    faithful.eval()  # cannot be switched out of its mode
    assert faithful.model.layer1.training
    w1, w2 = sample_mixing_weights(2, 20, generator=rng), sample_mixing_weights(2, 20, generator=rng)
    a = faithful(x, labels, w1)
    b = faithful(x, labels, w2)
    assert a[0].shape[0] == 2
    # M1: the teacher's own rearranged half moves the originals' targets through batch-stat BN
    assert not torch.allclose(a[3], b[3])

    lean = build_teacher(tiny_config(teacher_mode="lean"))
    lean.model.load_state_dict(faithful.model.state_dict())
    c = lean(x, labels, w1)
    d = lean(x, labels, w2)
    assert not lean.model.layer1.training
    assert all(torch.equal(u, v) for u, v in zip(c, d))
    with torch.no_grad():
        plain = lean.model.eval().forward_features(x)
    assert torch.equal(c[3], plain[3])


def test_student_without_srm_aligns_b_rows(rng):
    student = SRHAForSemanticSegmentation(tiny_config(srm=False)).train()
    teacher = build_teacher(tiny_config(srm=False, teacher_mode="lean"))
    x = torch.randn(2, 3, 64, 64, generator=rng)
    labels = labels_with_edge_cases(rng)
    loss, terms = compute_srha_loss(student, teacher, x, labels)
    assert torch.isfinite(loss) and "pc" not in terms  # no rearranged half: no PC term at all
    assert set(terms) == {"ce", "aux", "ga", "ra", "la"}


def test_layer_weights_zero_skip_and_switches(rng):
    cfg = tiny_config(ga_weights=(0, 0, 0, 0), ra_weights=(0, 0, 0, 1.0), la_weights=(0, 0, 0, 0), pc_weight=0)
    student = SRHAForSemanticSegmentation(cfg).train()
    teacher = build_teacher(cfg)
    x = torch.randn(2, 3, 64, 64, generator=rng)
    labels = labels_with_edge_cases(rng)
    _, terms = compute_srha_loss(student, teacher, x, labels, generator=rng)
    # terms whose weights are all zero are not computed (not reported as zeros)
    assert set(terms) == {"ce", "aux", "ra"} and terms["ra"] > 0


def test_ema_update_rule():
    student = SRHAForSemanticSegmentation(tiny_config())
    teacher = build_teacher(tiny_config())
    name, p_t = next((n, p) for n, p in teacher.model.named_parameters() if n.startswith("layer2"))
    p_s = dict(student.named_parameters())[name]
    original = p_t.clone()
    update_teacher_ema(teacher, student, step=5, alpha=1.0)  # faithful: no EMA
    assert torch.equal(p_t, original)
    update_teacher_ema(teacher, student, step=0, alpha=0.99)  # step 0 copies the student
    assert torch.equal(p_t, p_s)
    with torch.no_grad():
        p_s.add_(1.0)
    update_teacher_ema(teacher, student, step=3, alpha=0.99)  # a = min(1 - 1/4, 0.99) = 0.75
    assert torch.allclose(p_t, 0.75 * (p_s - 1.0) + 0.25 * p_s, atol=1e-6)


def test_loss_rejects_mismatched_labels(pair, rng):
    student, teacher = pair
    with pytest.raises(ValueError, match="labels batch 1 does not match pixel_values batch 2"):
        compute_srha_loss(student, teacher, torch.randn(2, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long))


def test_teacher_config_records_imagenet_source(tmp_path):
    import torchvision

    tv = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mbv2.pth"
    torch.save(tv.state_dict(), path)
    cfg = tiny_config(backbone_pretrained=str(path))
    student = SRHAForSemanticSegmentation(cfg)
    assert student.config.backbone_pretrained is None
    assert student.config.backbone_pretrained_source == str(path)
    # a saved student's config still tells build_teacher where the ImageNet weights are
    teacher = build_teacher(copy.deepcopy(student.config))
    assert torch.equal(teacher.model.layer3[0].conv[0][0].weight, tv.features[11].conv[0][0].weight)


def test_pc_warmup_factor_hand_values():
    # min(1, step / N); N = 0 (the default) is the reference: full weight from step 0
    assert [pc_warmup_factor(s, 0) for s in (0, 1, 299)] == [1.0, 1.0, 1.0]
    assert [pc_warmup_factor(s, 4) for s in (0, 1, 2, 3, 4, 5, 1000)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert pc_warmup_factor(75, 150) == 0.5 and pc_warmup_factor(149, 150) == 149 / 150 and pc_warmup_factor(150, 150) == 1.0
    assert pc_warmup_factor(100, 300) == 1 / 3
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        pc_warmup_factor(-1, 10)
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0, got 2.5"):
        pc_warmup_factor(3, 2.5)
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0, got True"):
        pc_warmup_factor(3, True)


def test_pc_scale_zero_is_the_loss_without_pc_and_scales_pc_linearly(pair, rng):
    student, teacher = pair
    student.train()
    x, labels, w_s, w_t = srha_batch(rng)

    def run(**kw):
        student.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # the dsn dropout
        loss, terms = compute_srha_loss(student, teacher, x, labels, srm_weights=w_s, teacher_srm_weights=w_t, **kw)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        return loss.detach(), terms, grads

    full, full_terms, _ = run()
    one, _, _ = run(pc_scale=1.0)
    assert torch.equal(one, full)  # the default is the reference's full weight
    half, half_terms, _ = run(pc_scale=0.5)
    assert rel(half_terms["pc"], 0.5 * full_terms["pc"]) < 1e-6 and full_terms["pc"] > 0
    zero, zero_terms, zero_grads = run(pc_scale=0.0)
    assert zero_terms["pc"].item() == 0.0 and set(zero_terms) == set(full_terms)  # reported, as 0
    assert not torch.equal(zero, full)
    weight = student.config.pc_weight
    student.config.pc_weight = 0.0  # the same objective without PC
    try:
        no_pc, no_pc_terms, no_pc_grads = run()
    finally:
        student.config.pc_weight = weight
    assert "pc" not in no_pc_terms
    assert torch.equal(zero, no_pc)
    assert zero_grads.keys() == no_pc_grads.keys()
    for name, grad in no_pc_grads.items():
        assert torch.equal(zero_grads[name], grad), name
    for bad in (-0.5, float("nan"), True):
        with pytest.raises(ValueError, match="pc_scale must be a number >= 0"):
            compute_srha_loss(student, teacher, x, labels, srm_weights=w_s, pc_scale=bad)


def test_pc_stop_gradient_switch(pair, rng):
    """docs/method.md §9 M6: by default PC's gradient reaches both halves; with pc_stop_gradient the
    originals' logits are a fixed target. Same loss value either way; the gradients are those of the
    loss without PC plus 10 * JS with (or without) the originals detached, computed by hand."""
    student, teacher = pair
    student.train()
    x, labels, w_s, w_t = srha_batch(rng)
    config = student.config

    def grads_of(loss):
        student.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}

    def objective(**switches):
        saved = {k: getattr(config, k) for k in switches}
        for k, v in switches.items():
            setattr(config, k, v)
        try:
            torch.manual_seed(7)  # the dsn dropout
            loss, terms = compute_srha_loss(student, teacher, x, labels, srm_weights=w_s, teacher_srm_weights=w_t)
        finally:
            for k, v in saved.items():
                setattr(config, k, v)
        return loss, terms

    def pc_by_hand(detach: bool):
        torch.manual_seed(7)
        logits = student(x, labels=labels, srm_weights=w_s, output_features=True).logits
        original = logits[:2].detach() if detach else logits[:2]
        return config.pc_weight * prediction_consistency_loss(original, logits[2:])

    dropouts = [m for m in student.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    rates = [m.p for m in dropouts]
    for m in dropouts:  # the by-hand forward must see exactly the objective's logits
        m.p = 0.0
    try:
        check_pc_stop_gradient(student, objective, grads_of, pc_by_hand)
    finally:
        for m, rate in zip(dropouts, rates):
            m.p = rate
    assert SRHAConfig().pc_stop_gradient is False


def check_pc_stop_gradient(student, objective, grads_of, pc_by_hand):
    faithful_loss, faithful_terms = objective()
    faithful = grads_of(faithful_loss)
    stopped_loss, stopped_terms = objective(pc_stop_gradient=True)
    stopped = grads_of(stopped_loss)
    assert torch.equal(stopped_terms["pc"], faithful_terms["pc"]) and torch.equal(stopped_loss.detach(), faithful_loss.detach())
    no_pc = grads_of(objective(pc_weight=0.0)[0])
    pc_full, pc_stopped = grads_of(pc_by_hand(False)), grads_of(pc_by_hand(True))

    def close(a, b, tol=1e-3):  # relative to the gradient's norm (float32 sums in another order), plus
        return (a - b).norm() <= tol * b.norm() + 1e-4  # float noise of ~1e-6 (e.g. conv biases before a BN)

    differs = 0
    for name, grad in faithful.items():
        expected_faithful = no_pc[name] + pc_full.get(name, torch.zeros_like(grad))
        expected_stopped = no_pc[name] + pc_stopped.get(name, torch.zeros_like(grad))
        assert close(grad, expected_faithful), name
        assert close(stopped[name], expected_stopped), name
        differs += not close(grad, stopped[name], 1e-1)
    assert differs > 0  # the switch changes the gradients of the trained parameters
