"""Transformers backbones through ``SRHAConfig(backbone_config=...)`` (srha_hf/backbones/hf.py, docs/training.md
"Backbones from transformers"): for a tiny random config of each family the stages are the backbone's own maps,
two SRHA training steps run, the model saves and loads exactly; backbone folders load strictly through the
concrete class; refusals name their reason; and transformers' ResNet holding torchvision's ResNet-50 weights is
the project's own ``resnet50`` at output stride 16, layer0 to layer4."""

import copy
import json
import logging
import os
import re

import pytest
import torch
from transformers import AutoBackbone, AutoModelForSemanticSegmentation, ResNetBackbone, ResNetConfig, ResNetForImageClassification

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.backbones import BackboneLoadError, spec_for_config
from srha_hf.backbones.hf import hf_backbone_spec
from srha_hf.objective import build_teacher, compute_srha_loss
from tests.hf_backbone_configs import EXPECTED_STRIDES, MAIN_FAMILIES, TINY_BACKBONE_CONFIGS

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_HEADS = dict(aspp_channels=8, decoder_channels=8, low_level_channels=4, dsn_channels=8)
SMALL_M2F = dict(m2f_hidden_dim=32, m2f_conv_dim=32, m2f_mask_dim=32, m2f_num_queries=4, m2f_num_heads=2, m2f_dim_feedforward=32,
                 m2f_decoder_layers=1, m2f_encoder_layers=1, m2f_encoder_feedforward_dim=32, m2f_train_num_points=64)  # fmt: skip
STAGES = ("layer0", "layer1", "layer2", "layer3", "layer4")


def tiny(family, **kwargs):
    return SRHAConfig(backbone_config=copy.deepcopy(TINY_BACKBONE_CONFIGS[family]), **{**SMALL_HEADS, **kwargs})


def image(batch=2, size=64, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def labels_for(batch=2, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (batch, size, size), generator=g)
    labels[:, :4] = 255
    return labels


# --- build, layout, the backbone's own maps ---------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(TINY_BACKBONE_CONFIGS))
def test_the_stages_are_the_backbones_own_maps_and_measured(family):
    config = tiny(family, backbone_output_stride=32 if family in ("resnet", "bit") else None)  # native: nothing dilated
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(config).eval()
    spec = spec_for_config(model.config)
    assert model.config.backbone == f"hf:{family}" and spec.name == f"hf:{family}"
    assert spec.strides == (4, 4, 8, 16, 32) and model.config.backbone_output_stride == 32
    # the backbone as transformers builds it, with the same weights: its maps before any output norm
    backbone_config = copy.deepcopy(model.config.backbone_config)
    backbone_config.out_features = list(backbone_config.stage_names)
    backbone = AutoBackbone.from_config(backbone_config).eval()
    staged = {spec.key_map(k): v for k, v in backbone.state_dict().items() if spec.key_map(k)}
    model.backbone_stages().load_state_dict(staged, strict=True)
    x = image()
    with torch.no_grad():
        out = backbone(x, output_hidden_states=True)
        reference = out.feature_maps if family == "swinv2" else out.hidden_states  # swinv2's hidden_states are after merging
        h = x
        for name, ref in zip(STAGES, reference):
            h = getattr(model, name)(h)
            assert torch.equal(h, ref), f"{family} {name} differs from the backbone's own map"
    assert tuple(t.shape[1] for t in reference) == spec.channels


@pytest.mark.parametrize("family", MAIN_FAMILIES)
def test_tiny_backbone_trains_two_srha_steps(family):
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(tiny(family))
    spec = spec_for_config(model.config)
    assert spec.strides == EXPECTED_STRIDES[family] and model.config.backbone_output_stride == EXPECTED_STRIDES[family][4]
    model.train()
    teacher = build_teacher(model.config, student=model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    x, y = image(), labels_for()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(2):
        loss, terms = compute_srha_loss(model, teacher, x, y, generator=torch.Generator().manual_seed(step))
        assert torch.isfinite(loss) and {"ga", "ra", "la", "pc"} <= set(terms)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.layer0.parameters())  # frozen layer0 (docs/method.md §1.4)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.layer4.parameters())
        optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("layer0."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("layer1."))


@pytest.mark.parametrize("family", MAIN_FAMILIES)
def test_save_pretrained_from_pretrained_is_exact(family, tmp_path):
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(tiny(family)).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["backbone"] == f"hf:{family}" and saved["backbone_config"]["model_type"] == family
    assert saved["backbone_output_stride"] == EXPECTED_STRIDES[family][4]
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    a, b = model.config.to_dict(), loaded.config.to_dict()
    assert {k: v for k, v in a.items() if k != "_name_or_path"} == {k: v for k, v in b.items() if k != "_name_or_path"}
    assert SRHAConfig.from_dict(model.config.to_dict()).to_dict() == a
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ua, ub = dict(model.named_non_persistent_buffers()), dict(loaded.named_non_persistent_buffers())
    assert ua.keys() == ub.keys() and all(torch.equal(ua[k], ub[k]) for k in ua)  # e.g. Swin's relative position index
    x = image(batch=1, seed=3)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_output_hidden_states_and_gradient_checkpointing_on_swin():
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(tiny("swin"))
    model.eval()
    with torch.no_grad():
        hidden = model(image(batch=1), output_hidden_states=True).hidden_states
    assert [tuple(h.shape[-2:]) for h in hidden] == [(16, 16), (16, 16), (8, 8), (4, 4), (2, 2)]
    model.activation_checkpointing_enable()
    assert all(r.gradient_checkpointing for r in model.stage_runners)
    inner = [m for name in STAGES for m in getattr(model, name).modules() if hasattr(m, "gradient_checkpointing")]
    assert inner and not any(m.gradient_checkpointing for m in inner)  # Swin's own blocks: the stage runners checkpoint
    model.train()
    loss, _ = compute_srha_loss(model, build_teacher(model.config, student=model), image(), labels_for())
    loss.backward()
    assert all(p.grad is not None for p in model.layer2.parameters())


def test_mask2former_head_on_a_native_stride_32_backbone():
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(tiny("convnext", decode_head="mask2former", **SMALL_M2F)).train()
    loss, terms = compute_srha_loss(model, build_teacher(model.config, student=model), image(), labels_for())
    assert torch.isfinite(loss) and "m2f" in terms
    loss.backward()


def test_deeplab_warns_that_its_aspp_rates_are_the_os16_ones(caplog):
    logger = logging.getLogger("srha_hf")
    logger.addHandler(caplog.handler)  # transformers' logging does not propagate to the root logger
    try:
        with caplog.at_level(logging.WARNING, logger="srha_hf"):
            SRHAForSemanticSegmentation(tiny("convnext"))
            warned = [r.getMessage() for r in caplog.records if "aspp_rates" in r.getMessage()]
            caplog.clear()
            SRHAForSemanticSegmentation(tiny("convnext", aspp_rates=[3, 6, 9]))
            SRHAForSemanticSegmentation(tiny("resnet"))
            assert not [r for r in caplog.records if "aspp_rates" in r.getMessage()]
    finally:
        logger.removeHandler(caplog.handler)
    assert warned and "output stride 32" in warned[0] and "aspp_rates=[3, 6, 9]" in warned[0]


def test_resnet_dilation_follows_the_projects_switch():
    model = SRHAForSemanticSegmentation(tiny("resnet"))
    dilations = [[c.dilation for c in layer.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size[0] > 1] for layer in model.layer4.layers]
    assert dilations == [[(2, 2)], [(2, 2)]]  # faithful: every block's 3x3 (docs/method.md §9 M9)
    assert all(c.stride == (1, 1) for c in model.layer4.modules() if isinstance(c, torch.nn.Conv2d))
    model = SRHAForSemanticSegmentation(tiny("resnet", resnet_dilate_all_layer4_blocks=False))
    dilations = [[c.dilation for c in layer.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size[0] > 1] for layer in model.layer4.layers]
    assert dilations == [[(1, 1)], [(2, 2)]]


# --- weights ---------------------------------------------------------------------------------------------------


def test_backbone_pretrained_reads_a_backbone_folder_through_its_class(tmp_path, no_network):
    backbone_config = ResNetConfig.from_dict({k: v for k, v in TINY_BACKBONE_CONFIGS["resnet"].items() if k != "model_type"})
    torch.manual_seed(5)
    ResNetBackbone(backbone_config).save_pretrained(tmp_path / "backbone")
    reference = ResNetBackbone.from_pretrained(tmp_path / "backbone").state_dict()
    model = SRHAForSemanticSegmentation(tiny("resnet", backbone_pretrained=str(tmp_path / "backbone")))
    spec = spec_for_config(model.config)
    staged = model.state_dict()
    assert all(torch.equal(staged[spec.key_map(k)], v) for k, v in reference.items() if spec.key_map(k))
    assert model.config.backbone_pretrained is None and model.config.backbone_pretrained_source == str(tmp_path / "backbone")
    # an image-classification checkpoint: its head is dropped by name, everything else loads
    torch.manual_seed(6)
    classifier = ResNetForImageClassification(backbone_config)
    classifier.save_pretrained(tmp_path / "classifier")
    model = SRHAForSemanticSegmentation(tiny("resnet", backbone_pretrained=str(tmp_path / "classifier")))
    assert torch.equal(model.layer0.embedder.convolution.weight, classifier.resnet.embedder.embedder.convolution.weight)
    assert torch.equal(model.layer4.layers[1].layer[1].convolution.weight, classifier.resnet.encoder.stages[3].layers[1].layer[1].convolution.weight)


def test_backbone_pretrained_refusals(tmp_path):
    torch.manual_seed(5)
    ResNetBackbone(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 48], depths=[1, 1, 2, 2])).save_pretrained(tmp_path / "other")
    with pytest.raises(BackboneLoadError, match="could not read a ResNetBackbone"):
        SRHAForSemanticSegmentation(tiny("resnet", backbone_pretrained=str(tmp_path / "other")))
    with pytest.raises(BackboneLoadError, match="does not apply to a transformers backbone"):
        SRHAForSemanticSegmentation(tiny("resnet", backbone_pretrained="imagenet"))


# --- refusals ---------------------------------------------------------------------------------------------------


def test_configs_that_are_no_backbone_or_do_not_fit_are_refused_with_the_reason():
    from transformers import HieraConfig, ViTConfig, VitDetConfig

    with pytest.raises(ValueError, match=r"ViTConfig .*not a transformers backbone.*stride-4 stem and four stages"):
        SRHAConfig(backbone_config=ViTConfig())
    assert SRHAConfig(backbone_config={"model_type": "dinov2"}).backbone == "hf:dinov2"  # a ViT, staged by srha_hf.backbones.dinov2
    with pytest.raises(ValueError, match="needs a 'model_type'"):
        SRHAConfig(backbone_config={"depths": [1, 1, 1, 1]})
    with pytest.raises(TypeError, match="nothing is fetched from the Hub"):
        SRHAConfig(backbone_config="microsoft/resnet-50")
    with pytest.raises(ValueError, match="give it as backbone_config"):
        SRHAConfig(backbone="hf:resnet")
    with pytest.raises(ValueError, match="another stride needs a transformers backbone"):
        SRHAConfig(backbone="resnet50", backbone_output_stride=32)
    vitdet = VitDetConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=64, pretrain_image_size=64)
    with pytest.raises(ValueError, match="all at stride 16 .*no feature pyramid"):
        hf_backbone_spec(vitdet)
    with pytest.raises(ValueError, match="fits SRHA .*no stage split for it yet"):
        hf_backbone_spec(HieraConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]))
    first_stage_strided = {**TINY_BACKBONE_CONFIGS["resnet"], "downsample_in_first_stage": True}
    with pytest.raises(ValueError, match=re.escape("stages at strides [8, 16, 32, 64]")):
        hf_backbone_spec(first_stage_strided)
    with pytest.raises(ValueError, match="cannot be dilated here, its native output stride is 32"):
        SRHAForSemanticSegmentation(tiny("convnext", backbone_output_stride=16))


def test_the_model_card_says_the_stride_and_that_the_backbone_is_not_the_papers():
    from srha_hf.hub import render_model_card

    card = render_model_card({}, model_name="m", backbone="hf:convnext", source_dataset="gtav", recipe="r", training={}, output_stride=32)
    assert "(output stride 32)" in str(card) and "not one of the paper's four backbones" in str(card)
    card = render_model_card({}, model_name="m", backbone="resnet50", source_dataset="gtav", recipe="r", training={})
    assert "(output stride 16)" in str(card) and "not one of the paper's" not in str(card)


# --- the cross-implementation proof -----------------------------------------------------------------------------


def torchvision_to_transformers_resnet(state):
    """torchvision's ResNet state dict → transformers' ``ResNetBackbone`` names (the classifier ``fc`` dropped)."""
    out = {}
    for key, value in state.items():
        m = re.match(r"(conv1|bn1)\.(.+)$", key)
        if m:
            out[f"embedder.embedder.{'convolution' if m.group(1) == 'conv1' else 'normalization'}.{m.group(2)}"] = value
            continue
        m = re.match(r"layer(\d)\.(\d+)\.(.+)$", key)
        if not m:
            assert key.startswith("fc."), key
            continue
        stage, block, rest = int(m.group(1)) - 1, m.group(2), m.group(3)
        prefix = f"encoder.stages.{stage}.layers.{block}"
        conv = re.match(r"(conv|bn)(\d)\.(.+)$", rest)
        if conv:
            kind = "convolution" if conv.group(1) == "conv" else "normalization"
            out[f"{prefix}.layer.{int(conv.group(2)) - 1}.{kind}.{conv.group(3)}"] = value
        else:
            down = re.match(r"downsample\.(0|1)\.(.+)$", rest)
            out[f"{prefix}.shortcut.{'convolution' if down.group(1) == '0' else 'normalization'}.{down.group(2)}"] = value
    return out


R50 = ResNetConfig(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], layer_type="bottleneck", hidden_act="relu",
                   downsample_in_first_stage=False, downsample_in_bottleneck=False)  # fmt: skip


@pytest.mark.integration  # two full-size ResNet-50s, twice
@pytest.mark.parametrize("dilate_all", [True, False])
def test_transformers_resnet50_with_torchvision_weights_is_the_projects_resnet50_at_os16(dilate_all, tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(11)
    network = resnet50(weights=None)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    state = network.state_dict()
    torch.save(state, tmp_path / "r50.pth")
    backbone = ResNetBackbone(copy.deepcopy(R50))
    backbone.load_state_dict(torchvision_to_transformers_resnet(state), strict=True)
    backbone.save_pretrained(tmp_path / "r50-transformers")
    heads = dict(SMALL_HEADS, resnet_dilate_all_layer4_blocks=dilate_all)
    ours = SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50", backbone_pretrained=str(tmp_path / "r50.pth"), **heads)).eval()
    theirs = SRHAForSemanticSegmentation(
        SRHAConfig(backbone_config=R50, backbone_pretrained=str(tmp_path / "r50-transformers"), **heads)
    ).eval()
    assert spec_for_config(theirs.config).strides == (4, 4, 8, 16, 16)
    x = image(batch=1, size=96, seed=4)
    with torch.no_grad():
        a = ours(x, output_hidden_states=True).hidden_states
        b = theirs(x, output_hidden_states=True).hidden_states
    diffs = [(p - q).abs().max().item() for p, q in zip(a, b)]
    print(f"cross-implementation max abs difference per stage (dilate_all={dilate_all}): {diffs}")
    assert [tuple(t.shape) for t in a] == [tuple(t.shape) for t in b] == [(1, 64, 24, 24), (1, 256, 24, 24), (1, 512, 12, 12),
                                                                         (1, 1024, 6, 6), (1, 2048, 6, 6)]  # fmt: skip
    scale = max(t.abs().max().item() for t in a)
    assert max(diffs) <= 1e-5 * max(1.0, scale), diffs


# --- the command line and recipes -------------------------------------------------------------------------------


def test_backbone_config_from_the_command_line_and_a_recipe(tmp_path):
    from srha_hf.training import ConfigError, load_config, parse_overrides

    text = json.dumps(TINY_BACKBONE_CONFIGS["convnext"])
    config = load_config(None, parse_overrides(["--backbone_config", text, "--backbone_pretrained", "null"]))
    assert config.backbone_config == TINY_BACKBONE_CONFIGS["convnext"]
    assert config.model_config().backbone == "hf:convnext"
    with pytest.raises(ConfigError, match="--backbone_config: not valid JSON .*model_type"):
        parse_overrides(["--backbone_config", '{"model_type": "convnext",'])
    with pytest.raises(ConfigError, match="expected a JSON object"):
        parse_overrides(["--backbone_config", "[1, 2]"])
    with pytest.raises(ConfigError, match="torchvision's files, which do not fit"):
        load_config(None, parse_overrides(["--backbone_config", text]))  # the recipe default backbone_pretrained: torchvision
    with pytest.raises(ConfigError, match="mapping with a model_type"):
        load_config(None, {"backbone_config": {"depths": [1, 1, 1, 1]}, "backbone_pretrained": None})
    recipe = tmp_path / "swin.yaml"
    recipe.write_text(
        "backbone_pretrained: null\n"
        "backbone_config:\n"
        "  model_type: swin\n  embed_dim: 8\n  depths: [1, 1, 2, 1]\n  num_heads: [1, 1, 1, 1]\n  window_size: 4\n  image_size: 64\n"
        "model_kwargs:\n  aspp_rates: [3, 6, 9]\n"
    )
    model_config = load_config(str(recipe)).model_config()
    assert model_config.backbone == "hf:swin" and model_config.backbone_config.window_size == 4


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("family", MAIN_FAMILIES)
def test_two_training_steps_of_scripts_train_with_backbone_config(family, synthetic_root, tmp_path, monkeypatch):
    from tests.test_train import ROOT, launch

    # the script imports srha_hf from this checkout (not an installed copy elsewhere)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))

    out_dir = tmp_path / "run"
    args = [
        "--synthetic_data", "true", "--synthetic_root", str(synthetic_root), "--synthetic_num_train", "8",
        "--synthetic_num_val", "3", "--synthetic_size", "[160, 88]", "--backbone_config", json.dumps(TINY_BACKBONE_CONFIGS[family]),
        "--backbone_pretrained", "null", "--crop_size", "64", "--batch_size", "2", "--class_uniform_tile", "64",
        "--val_datasets", "cityscapes", "--eval_steps", "0", "--eval_max_images", "2", "--num_workers", "0", "--logging_steps", "1",
        "--report_to", "none", "--max_iter", "2", "--model_kwargs", '{"aspp_channels": 8, "decoder_channels": 8, "aspp_rates": [3, 6, 9]}',
        "--output_dir", str(out_dir),
    ]  # fmt: skip
    launch(args)
    saved = json.loads((out_dir / "model" / "config.json").read_text())
    stride = EXPECTED_STRIDES[family][4]
    assert saved["backbone"] == f"hf:{family}" and saved["backbone_config"]["model_type"] == family
    assert saved["backbone_config"]["depths"] == TINY_BACKBONE_CONFIGS[family]["depths"]
    assert saved["backbone_output_stride"] == stride
    assert f"(output stride {stride})" in (out_dir / "model" / "README.md").read_text()
    loaded = AutoModelForSemanticSegmentation.from_pretrained(out_dir / "model")
    assert loaded.config.backbone_config.model_type == family
