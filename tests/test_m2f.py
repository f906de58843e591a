"""The Mask2Former head (docs/method.md §4, §9 MF1-MF4): configuration, shapes, semantic inference, targets, the
SRHA objective, save/load and one real training step. Small inputs and a slimmed head where the
the paper's sizes are not what a test checks."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSemanticSegmentation

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss
from srha_hf.heads.mask2former import (
    mask2former_config,
    mask2former_set_loss,
    mask2former_targets,
    semantic_inference,
)
from srha_hf.losses import prediction_consistency_loss
from srha_hf.training.config import load_config
from srha_hf.training.optim import parameter_groups

ROOT = Path(__file__).resolve().parents[1]

# A slimmed head (same code paths) for the tests that do not check the paper's sizes.
TINY = dict(
    decode_head="mask2former", m2f_num_queries=12, m2f_hidden_dim=64, m2f_conv_dim=64, m2f_mask_dim=64,
    m2f_num_heads=4, m2f_dim_feedforward=64, m2f_decoder_layers=3, m2f_encoder_layers=1,
    m2f_encoder_feedforward_dim=64, m2f_train_num_points=64,
)  # fmt: skip


def labels_with_absent_classes(batch=2, size=64):
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    labels[:, :, size // 2 :] = 13  # road | car, all other classes absent
    labels[0, : size // 4] = 255
    labels[1:, size // 2 :, : size // 2] = 2
    return labels


@pytest.fixture(scope="module")
def r50_m2f():
    """The paper-sized R50 + Mask2Former, built with every network connection refused."""
    original = socket.socket.connect

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"network access while building the model: {args}")

    socket.socket.connect = refuse
    try:
        torch.manual_seed(0)
        model = SRHAForSemanticSegmentation(SRHAConfig(decode_head="mask2former")).eval()
    finally:
        socket.socket.connect = original
    return model


def test_spec_configuration(r50_m2f):
    c = mask2former_config(r50_m2f.config)  # docs/method.md §4.2-4.3
    assert (c.num_queries, c.decoder_layers, c.hidden_dim, c.num_attention_heads, c.dim_feedforward) == (100, 10, 256, 8, 2048)
    assert (c.encoder_layers, c.encoder_feedforward_dim, c.feature_size, c.mask_feature_size, c.common_stride) == (6, 1024, 256, 256, 4)
    assert (c.train_num_points, c.oversample_ratio, c.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert (c.class_weight, c.mask_weight, c.dice_weight, c.no_object_weight) == (2.0, 5.0, 5.0, 0.1)
    assert (c.dropout, c.pre_norm, c.enforce_input_projection, list(c.feature_strides)) == (0.0, False, False, [1, 2, 2, 2])
    head = r50_m2f.mask2former
    decoder = head.transformer_module.decoder
    assert len(decoder.layers) == 9 and head.transformer_module.queries_features.weight.shape == (100, 256)
    assert head.class_predictor.out_features == 20
    pixel = head.pixel_decoder
    assert len(pixel.encoder.layers) == 6 and pixel.encoder.layers[0].fc1.out_features == 1024
    assert [p[0].in_channels for p in pixel.input_projections] == [2048, 1024, 512]
    # MF1: three lateral/output pairs, named as the reference, for res2 / res3 / res4
    assert pixel.num_fpn_pairs == 3
    assert [getattr(pixel, f"adapter_{k}")[0].in_channels for k in (1, 2, 3)] == [256, 512, 1024]
    assert all(getattr(pixel, f"layer_{k}")[0].kernel_size == (3, 3) for k in (1, 2, 3))
    # every head parameter is in the decoder group, the backbone's in the encoder group (docs/method.md §4.6)
    enc, dec = parameter_groups(r50_m2f, 5e-5, 1e-4)
    names = {id(p): n for n, p in r50_m2f.named_parameters()}
    assert {names[id(p)].split(".")[0] for p in dec["params"]} == {"mask2former"}
    assert {names[id(p)].split(".")[0] for p in enc["params"]} == {"layer1", "layer2", "layer3", "layer4"}
    # the reference's initialisation: deformable-attention grid, no uninitialised level embedding
    attn = pixel.encoder.layers[0].self_attn
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0 and attn.sampling_offsets.bias.abs().max() == 4
    assert torch.isfinite(pixel.level_embed).all() and 0.5 < pixel.level_embed.std() < 1.5


def test_r50_shapes_and_pyramid(r50_m2f):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = r50_m2f(x, output_features=True)
        pyramid = r50_m2f.mask2former.pixel_decoder(list(out.features), return_dict=True)
    assert out.logits.shape == (1, 19, 64, 96) and out.logits.min() >= 0
    assert out.class_queries_logits.shape == (1, 100, 20) and out.masks_queries_logits.shape == (1, 100, 16, 24)
    assert out.aux_logits is None and len(out.auxiliary_predictions) == 9 and len(out.features) == 4
    # docs/method.md §4.2: the decoder attends to [enc(res5), enc(res4), enc(res3)] (stride 16, 16, 8); masks at stride 4
    assert [tuple(f.shape[-2:]) for f in pyramid.multi_scale_features] == [(4, 6), (4, 6), (8, 12)]
    assert pyramid.mask_features.shape == (1, 256, 16, 24)
    torch.testing.assert_close(pyramid.mask_features, pyramid.mask_features)


def test_standard_fpn_switch():
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", m2f_misdeclared_strides=False, **TINY))
    pixel = model.mask2former.pixel_decoder
    assert pixel.num_fpn_pairs == 1 and not hasattr(pixel, "adapter_2")
    assert pixel.adapter_1[0].in_channels == 116  # res2 only
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).logits.shape == (1, 19, 64, 64)


def test_semantic_inference_equals_einsum_reference():
    torch.manual_seed(1)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", **TINY)).eval()
    x = torch.randn(2, 3, 72, 96)
    with torch.no_grad():
        out = model(x)
    cls = out.class_queries_logits.double().softmax(-1)[..., :-1]  # drop no-object
    up = F.interpolate(out.masks_queries_logits.double(), size=(72, 96), mode="bilinear", align_corners=False)
    reference = torch.einsum("bqc,bqhw->bchw", cls, up.sigmoid())
    assert out.logits.shape == (2, 19, 72, 96)
    torch.testing.assert_close(out.logits.double(), reference, rtol=1e-5, atol=1e-5)
    # the query-chunked path (no autograd) and the one-shot path agree
    with torch.no_grad():
        chunked = semantic_inference(out.class_queries_logits, out.masks_queries_logits, (72, 96), query_chunk=5)
    one_shot = semantic_inference(out.class_queries_logits, out.masks_queries_logits.requires_grad_(), (72, 96))
    torch.testing.assert_close(chunked, one_shot.detach(), rtol=1e-6, atol=1e-6)


def test_mf2_targets_include_absent_classes():
    labels = labels_with_absent_classes()
    masks, classes = mask2former_targets(labels, 19, 255, absent_class_targets=True)
    assert len(masks) == 2 and all(m.shape == (19, 64, 64) for m in masks)
    assert all(torch.equal(c, torch.arange(19)) for c in classes)
    for m, lab in zip(masks, labels):
        assert torch.equal(m.sum(0), (lab != 255).float())  # 255 pixels are zero in every mask
        for c in range(19):
            assert torch.equal(m[c], (lab == c).float())
    assert masks[0][5].sum() == 0 and masks[0][2].sum() == 0 and masks[1][2].sum() > 0
    masks, classes = mask2former_targets(labels, 19, 255, absent_class_targets=False)
    assert classes[0].tolist() == [0, 13] and classes[1].tolist() == [0, 2, 13]
    assert masks[1].shape == (3, 64, 64) and torch.equal(masks[1][1], (labels[1] == 2).float())


def test_set_loss_deep_supervision_and_num_masks():
    config = SRHAConfig(**TINY)
    torch.manual_seed(2)
    n, q = 2, config.m2f_num_queries
    classes = [torch.randn(n, q, 20, requires_grad=True) for _ in range(4)]
    masks = [torch.randn(n, q, 16, 16, requires_grad=True) for _ in range(4)]
    labels = labels_with_absent_classes()
    loss, parts = mask2former_set_loss(classes, masks, labels, config)
    assert len(parts) == 3 * 4 and torch.isfinite(loss)  # CE, mask, dice on each of the 4 prediction sets
    loss.backward()
    assert all(c.grad.abs().sum() > 0 for c in classes) and all(m.grad.abs().sum() > 0 for m in masks)
    # MF2: 19 targets per image, so CE sees 19 matched queries per image; num_masks = 19·N
    from srha_hf.heads.mask2former import _criterion

    crit = _criterion(config)
    _, class_labels = mask2former_targets(labels, 19, 255, True)
    assert crit.get_num_masks(class_labels, torch.device("cpu")).item() == 19 * n
    no_deep = SRHAConfig(m2f_deep_supervision=False, **TINY)
    _, parts = mask2former_set_loss(classes, masks, labels, no_deep)
    assert sorted(parts) == ["loss_cross_entropy", "loss_dice", "loss_mask"]


@pytest.mark.parametrize("pc_on_scores", [True, False])
def test_srha_objective_terms_and_gradients(pc_on_scores):
    torch.manual_seed(3)
    config = SRHAConfig(backbone="shufflenetv2", m2f_pc_on_scores=pc_on_scores, **TINY)
    student = SRHAForSemanticSegmentation(config).train()
    teacher = build_teacher(student.config)
    x = torch.randn(1, 3, 64, 64)
    labels = labels_with_absent_classes(1)
    gen = torch.Generator().manual_seed(0)
    srm = torch.distributions.Dirichlet(torch.full((20,), 0.5)).sample((1, 20))
    loss, terms = compute_srha_loss(student, teacher, x, labels, srm_weights=srm, generator=gen)
    assert sorted(terms) == ["ga", "la", "m2f", "pc", "ra"]
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values()) and terms["m2f"] > 0
    loss.backward()
    params = dict(student.named_parameters())
    for stage in ("layer1", "layer4"):  # the backbone
        grads = [p.grad for n, p in params.items() if n.startswith(stage + ".")]
        assert all(g is not None and torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0
    for name in (
        "mask2former.pixel_decoder.input_projections.0.0.weight",
        "mask2former.pixel_decoder.encoder.layers.0.self_attn.value_proj.weight",
        "mask2former.pixel_decoder.adapter_3.0.weight", "mask2former.pixel_decoder.mask_projection.weight",
        "mask2former.transformer_module.decoder.layers.0.cross_attn.in_proj_weight",
        "mask2former.transformer_module.decoder.layers.2.fc2.weight",
        "mask2former.transformer_module.queries_features.weight", "mask2former.class_predictor.weight",
    ):  # fmt: skip
        grad = params[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in params.items() if n.startswith("layer0"))
    # PC (docs/method.md §4.5, MF3) on the student's semantic scores of the two halves
    with torch.no_grad():
        out = student(x, labels=labels, srm_weights=srm)
    scores = out.logits
    inputs = scores if pc_on_scores else scores.clamp_min(1e-12).log()
    expected = config.pc_weight * prediction_consistency_loss(inputs[:1], inputs[1:])
    torch.testing.assert_close(terms["pc"], expected, rtol=1e-4, atol=1e-6)


def test_save_load_roundtrip_bit_exact(tmp_path):
    torch.manual_seed(4)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", m2f_absent_class_targets=False, **TINY)).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["decode_head"] == "mask2former" and saved["m2f_num_queries"] == 12 and not saved["m2f_absent_class_targets"]
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SRHAForSemanticSegmentation) and loaded.config.m2f_absent_class_targets is False
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("mask2former.pixel_decoder.adapter_3") for k in a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    # pipeline("image-segmentation") reads the scores' argmax, as for DeepLabV3+
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    from srha_hf import SRHAImageProcessor

    SRHAImageProcessor().save_pretrained(tmp_path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    result = pipeline("image-segmentation", model=str(tmp_path), device="cpu")(image)
    with torch.inference_mode():
        expected = model(SRHAImageProcessor()(image, return_tensors="pt")["pixel_values"]).logits.argmax(1)[0].numpy()
    assert len(result) == len(np.unique(expected))
    for r in result:
        assert np.array_equal(np.array(r["mask"]) == 255, expected == model.config.label2id[r["label"]])


def test_recipe_holds_the_spec_values():
    c = load_config(ROOT / "configs" / "r50_m2f_gtav.yaml")  # docs/method.md §5.2 train_r50m2f_gtav_srha, §4.6
    assert (c.backbone, c.batch_size, c.max_iter, c.source_dataset, c.val_datasets) == (
        "resnet50", 2, 120000, "gtav", ["cityscapes", "bdd100k", "mapillary"]
    )
    assert (c.lr, c.decoder_lr, c.momentum, c.weight_decay, c.poly_power, c.seed) == (5e-5, 1e-4, 0.9, 5e-4, 0.9, 304)
    assert (c.crop_size, c.scale_min, c.scale_max, c.class_uniform_pct, c.class_uniform_tile) == (768, 0.5, 2.0, 0.5, 1024)
    assert c.eval_batch_size == 6 and c.backbone_pretrained == "torchvision" and c.teacher_mode == "faithful"
    mc = c.model_config()
    assert mc.decode_head == "mask2former" and mc.srm and mc.pc_weight == 10 and mc.freeze_layer0
    assert mc.ga_weights == mc.ra_weights == mc.la_weights == [0.4, 0.6, 0.8, 1.0]
    assert mc.m2f_misdeclared_strides and mc.m2f_absent_class_targets and mc.m2f_pc_on_scores
    defaults = SRHAConfig(decode_head="mask2former")
    assert all(getattr(mc, k) == getattr(defaults, k) for k in vars(defaults) if k.startswith("m2f_"))


@pytest.mark.slow  # a subprocess / torchrun test
def test_training_step_through_train_script(tmp_path):
    from srha_hf.data.synthetic import make_synthetic_benchmark

    root = tmp_path / "synthetic"
    make_synthetic_benchmark(root, num_train=4, num_val=2, size=(160, 88))
    tiny = "{" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + "}"
    out_dir = tmp_path / "run"
    args = [
        "--config", "configs/r50_m2f_gtav.yaml", "--synthetic_data", "true", "--synthetic_root", str(root),
        "--synthetic_num_train", "4", "--synthetic_num_val", "2", "--synthetic_size", "[160, 88]",
        "--backbone", "shufflenetv2", "--backbone_pretrained", "null", "--model_kwargs", tiny,
        "--crop_size", "64", "--batch_size", "1", "--total_batch_size", "null", "--class_uniform_tile", "64", "--max_iter", "1",
        "--val_datasets", "cityscapes", "--eval_steps", "0", "--eval_max_images", "1", "--eval_batch_size", "1",
        "--num_workers", "0", "--logging_steps", "1", "--checkpointing_steps", "1", "--report_to", "tensorboard",
        "--output_dir", str(out_dir),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "scripts/train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert json.loads((out_dir / "all_results.json").read_text())["step"] == 1
    assert (out_dir / "checkpoint-1").is_dir()
    model = AutoModelForSemanticSegmentation.from_pretrained(out_dir / "model")
    assert model.config.decode_head == "mask2former" and model.config.m2f_num_queries == 12
    card = (out_dir / "model" / "README.md").read_text()
    assert "Mask2Former on **shufflenetv2**" in card and "DeepLabV3+" not in card
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((out_dir / "logs").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {f"train/{t}" for t in ("loss", "m2f", "ga", "ra", "la", "pc")} <= tags and "train/ce" not in tags


@pytest.mark.slow  # a subprocess / torchrun test
def test_set_loss_on_two_processes_equals_one_process(tmp_path):
    """docs/method.md §4.3: num_masks is the target count summed over processes / world size. Two real CPU
    processes with identical inputs each get exactly the single-process loss (transformers' own
    normaliser would halve num_masks there and double loss_mask and loss_dice)."""
    from eval_helpers import check, torchrun
    from m2f_loss_inputs import set_loss_inputs

    config, classes, masks, labels = set_loss_inputs()
    torch.manual_seed(5)
    single, single_parts = mask2former_set_loss(classes, masks, labels, config)
    check(torchrun(["tests/m2f_dist_worker.py", tmp_path / "rank"], nproc=2))
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank.{rank}.json").read_text())
        assert got["world"] == 2
        assert got["num_masks"] == 19 * 2  # (19·N + 19·N) / 2
        assert got["transformers_num_masks"] == 19  # the parent's mean-then-divide
        assert abs(got["loss"] - single.item()) <= 1e-5 * abs(single.item())
        for name, value in single_parts.items():
            assert abs(got["parts"][name] - value.item()) <= 1e-5 * max(1.0, abs(value.item())), name
