"""The model: docs/method.md Appendix B shapes, layer0 freezing, dilation edits, save/load, Auto*, ImageNet init."""

import json

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

from srha_hf import BackboneLoadError, SRHAConfig, SRHAForSemanticSegmentation, SRHAImageProcessor
from srha_hf.backbones import build_torchvision_model, torchvision_key_to_stage_key

# docs/method.md Appendix B (768² input): layer0..layer4 (C, side)
APPENDIX_B = {
    "resnet50": [(64, 192), (256, 192), (512, 96), (1024, 48), (2048, 48)],
    "resnet101": [(64, 192), (256, 192), (512, 96), (1024, 48), (2048, 48)],
    "mobilenetv2": [(16, 384), (32, 96), (64, 48), (320, 48), (1280, 48)],
    "shufflenetv2": [(24, 192), (116, 96), (232, 48), (464, 48), (1024, 48)],
}
LOW_LEVEL = {"resnet50": 192, "resnet101": 192, "mobilenetv2": 96, "shufflenetv2": 96}


@pytest.mark.parametrize("backbone", list(APPENDIX_B))
def test_appendix_b_shapes_at_768(backbone):
    # Shapes only: the meta device runs the real module graph without arithmetic.
    with torch.device("meta"):
        model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone)).eval()
        x = torch.empty(1, 3, 768, 768)
        seen = {}
        hooks = [getattr(model, f"layer{i}").register_forward_hook(
            lambda m, i, o, n=f"layer{i}": seen.__setitem__(n, tuple(o.shape[1:]))) for i in range(5)]
        hooks.append(model.aspp.register_forward_hook(lambda m, i, o: seen.__setitem__("aspp", tuple(o.shape[1:]))))
        hooks.append(model.final1.register_forward_pre_hook(lambda m, i: seen.__setitem__("concat", tuple(i[0].shape[1:]))))
        out = model(x, output_features=True)
    for i, (c, side) in enumerate(APPENDIX_B[backbone]):
        assert seen[f"layer{i}"] == (c, side, side), f"layer{i}"
    assert seen["aspp"] == (1280, 48, 48)
    side = LOW_LEVEL[backbone]
    assert seen["concat"] == (304, side, side)
    assert tuple(out.logits.shape) == (1, 19, 768, 768)
    assert tuple(out.aux_logits.shape) == (1, 19, 48, 48)


@pytest.mark.parametrize("backbone", [pytest.param("resnet50", marks=pytest.mark.integration), "mobilenetv2", "shufflenetv2"])
def test_real_forward_eval_and_train(backbone):
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (2, 19, 64, 96) and out.features is None and out.aux_logits is None
    model.train()
    labels = torch.randint(0, 19, (2, 64, 96))
    out = model(x, labels=labels)
    assert out.logits.shape == (4, 19, 64, 96)
    assert out.aux_logits.shape[:2] == (4, 19)
    assert [f.shape[0] for f in out.features] == [4, 4, 4, 4]
    assert torch.isfinite(out.loss)
    assert model(x, labels=labels, return_loss=False).loss is None  # compute_srha_loss computes CE itself
    out.loss.backward()
    assert model.final2.weight.grad is not None and model.dsn[0].weight.grad is not None
    assert all(p.grad is not None for p in model.layer1.parameters())
    assert all(p.grad is None for p in model.layer0.parameters())


def test_layer0_frozen_and_in_eval_mode_after_train():
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2"))
    model.train()
    assert not model.layer0.training and model.layer1.training and model.aspp.training
    assert all(not p.requires_grad for p in model.layer0.parameters())
    before = {k: v.clone() for k, v in model.layer0.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(torch.randn(2, 3, 64, 64), labels=torch.randint(0, 19, (2, 64, 64)))
    out.loss.backward()
    optimizer.step()
    for k, v in model.layer0.state_dict().items():  # weights and BN running stats unchanged
        assert torch.equal(v, before[k]), k
    unfrozen = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", freeze_layer0=False)).train()
    assert unfrozen.layer0.training and all(p.requires_grad for p in unfrozen.layer0.parameters())


@pytest.mark.integration
def test_dilation_edits():
    r50 = SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50"))
    assert [b.conv2.dilation for b in r50.layer4] == [(2, 2)] * 3  # M9: every block
    assert r50.layer4[0].downsample[0].stride == (1, 1) and r50.layer3[0].conv2.stride == (2, 2)
    tv = SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50", resnet_dilate_all_layer4_blocks=False))
    assert [b.conv2.dilation for b in tv.layer4] == [(1, 1), (2, 2), (2, 2)]
    mb = SRHAForSemanticSegmentation(SRHAConfig(backbone="mobilenetv2"))
    dilated = [n for n, m in mb.layer3.named_modules() if isinstance(m, torch.nn.Conv2d) and m.dilation == (2, 2)]
    assert dilated == ["3.conv.1.0"]  # feature 14's depthwise conv only (M10)
    sh = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2"))
    dilated = [n for n, m in sh.layer3.named_modules() if isinstance(m, torch.nn.Conv2d) and m.dilation == (2, 2)]
    assert dilated == ["0.branch1.0", "0.branch2.3"]
    sh_all = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", d16_dilate_only_stride2=False))
    n_dilated = sum(isinstance(m, torch.nn.Conv2d) and m.dilation == (2, 2) for m in sh_all.layer3.modules())
    assert n_dilated > 2


def test_authors_parameter_layout():
    keys = set(SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50")).state_dict())
    for key in ("layer0.0.weight", "layer0.1.running_mean", "layer4.2.conv3.weight", "aspp.img_conv.0.weight",
                "aspp.features.3.0.weight", "bot_fine.0.weight", "bot_aspp.1.weight", "final1.0.weight",
                "final1.3.weight", "final2.weight", "final2.bias", "dsn.0.bias", "dsn.4.weight"):
        assert key in keys, key
    tops = {k.split(".")[0] for k in keys}
    assert tops == {"layer0", "layer1", "layer2", "layer3", "layer4", "aspp", "bot_fine", "bot_aspp", "final1", "final2", "dsn"}


def test_save_load_roundtrip_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="mobilenetv2", srm_concentration=0.5)).eval()
    model.save_pretrained(tmp_path)
    SRHAImageProcessor().save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["config.json", "model.safetensors", "preprocessor_config.json"]
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SRHAForSemanticSegmentation)
    assert loaded.config.srm_concentration == 0.5
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), SRHAImageProcessor)


def test_save_load_keeps_another_class_count(tmp_path):
    # config.json stores id2label, not num_labels: a 20-class model must come back with 20 classes
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", num_labels=20)).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert loaded.config.num_labels == 20 and len(loaded.config.id2label) == 20
    a, b = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert SRHAConfig().num_labels == 19 and SRHAConfig().id2label[18] == "bicycle"


def test_auto_classes_resolve():
    cfg = AutoConfig.for_model("srha", backbone="shufflenetv2")
    assert isinstance(cfg, SRHAConfig) and cfg.id2label[0] == "road" and cfg.id2label[18] == "bicycle"
    assert isinstance(AutoModelForSemanticSegmentation.from_config(cfg), SRHAForSemanticSegmentation)


def test_config_validation_errors():
    with pytest.raises(ValueError, match="backbone='vgg16' is not supported"):
        SRHAConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="teacher_mode"):
        SRHAConfig(teacher_mode="ema")
    with pytest.raises(ValueError, match="ga_weights has 2 entries"):
        SRHAConfig(ga_weights=(1, 1))
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2"))
    with pytest.raises(ValueError, match=r"pixel_values must be \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("backbone", [pytest.param("resnet50", marks=pytest.mark.integration), "mobilenetv2", "shufflenetv2"])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_imagenet_init_from_local_file(tmp_path, backbone, fmt):
    torch.manual_seed(1)
    tv = build_torchvision_model(backbone)
    for m in tv.modules():  # make the BN statistics distinctive as well
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    state = tv.state_dict()
    path = tmp_path / f"weights.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone, backbone_pretrained=str(path)))
    staged = model.state_dict()
    mapped = 0
    for key, value in state.items():
        target = torchvision_key_to_stage_key(backbone, key)
        if target is None:
            assert key.startswith(("fc.", "classifier.")), key
            continue
        assert torch.equal(staged[target], value), key
        mapped += 1
    n_backbone = sum(1 for k in staged if k.startswith("layer"))
    assert mapped == n_backbone
    assert model.config.backbone_pretrained is None and model.config.backbone_pretrained_source == str(path)
    assert not model.layer0.training  # frozen stem in eval mode with the loaded statistics


def test_imagenet_init_from_authors_style_checkpoint(tmp_path):
    # a 'state_dict' wrapper with DDP's module. prefix and staged keys is accepted too
    src = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2"))
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained=str(path)))
    assert torch.equal(model.layer3[0].branch2[3].weight, src.layer3[0].branch2[3].weight)


@pytest.mark.integration
def test_failed_imagenet_loads_raise(tmp_path):
    with pytest.raises(BackboneLoadError, match="neither 'imagenet', 'torchvision', an existing file, nor a Hub repo"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained="/no/such/file.pth"))
    wrong = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(BackboneLoadError, match=r"do not cover the resnet50 backbone: \d+ of \d+ tensors missing or mis-shaped"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50", backbone_pretrained=str(wrong)))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneLoadError, match="could not read ImageNet weights from .*garbage.pth"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained=str(garbage)))
    # offline (HF_HUB_OFFLINE=1) and not in the cache: a clear error, never a random init
    with pytest.raises(BackboneLoadError, match="could not fetch ImageNet weights from Hub repo 'timm/resnet50.tv_in1k'"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50", backbone_pretrained="timm/resnet50.tv_in1k"))


def test_saved_config_requests_no_reload(tmp_path):
    tv = build_torchvision_model("shufflenetv2")
    path = tmp_path / "w.pth"
    torch.save(tv.state_dict(), path)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained=str(path)))
    model.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["backbone_pretrained"] is None and saved["backbone_pretrained_source"] == str(path)
    path.unlink()  # the ImageNet file is gone: loading the trained model must not need it
    SRHAForSemanticSegmentation.from_pretrained(tmp_path / "out")


def test_image_processor_normalises_and_post_processes():
    import numpy as np
    from PIL import Image

    arr = (np.arange(5 * 7 * 3) % 256).astype("uint8").reshape(5, 7, 3)
    proc = SRHAImageProcessor()
    px = proc(Image.fromarray(arr), return_tensors="pt")["pixel_values"]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    expected = (torch.from_numpy(arr).permute(2, 0, 1).float() / 255 - mean) / std
    assert px.shape == (1, 3, 5, 7) and torch.allclose(px[0], expected, atol=1e-5)
    logits = torch.zeros(2, 19, 4, 4)
    logits[0, 3] = 1.0
    logits[1, 7, :, 2:] = 1.0
    maps = proc.post_process_semantic_segmentation(type("O", (), {"logits": logits})(), target_sizes=[(4, 4), (8, 8)])
    assert torch.equal(maps[0], torch.full((4, 4), 3))
    assert maps[1].shape == (8, 8) and (maps[1][:, 5:] == 7).all() and (maps[1][:, :3] == 0).all()
    with pytest.raises(ValueError, match="target_sizes"):
        proc.post_process_semantic_segmentation(logits, target_sizes=[(4, 4)])
