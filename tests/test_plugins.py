"""Backbones and decode heads are plug-ins: a backbone is one :class:`~srha_hf.backbones.BackboneSpec`
in the registry, a head one registered :class:`~srha_hf.heads.DecodeHead` module held by the model.
A new one of each, written here in a few lines, builds, trains one SRHA step, loads ImageNet weights,
and round-trips through ``save_pretrained``; the built-in heads keep the authors' parameter names."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, compute_srha_loss
from srha_hf.backbones import BACKBONES, BackboneLoadError, BackboneSpec, available_backbones, backbone_spec, register_backbone
from srha_hf.backbones import registry as backbone_registry
from srha_hf.heads import DecodeHead, DeepLabV3PlusDecode, as_model_output, available_decode_heads, register_decode_head
from srha_hf.heads import base as head_registry

NO_HAC = dict(ga_weights=[0.0] * 4, ra_weights=[0.0] * 4, la_weights=[0.0] * 4)


class TinyNet(nn.Module):
    """A network in its own "checkpoint layout": ``stem``, ``blocks.0..3``, ``fc``."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        widths = (8, 12, 16, 20, 24)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2 if i < 2 else 1, padding=1), nn.ReLU()) for i in range(4)
        )
        self.fc = nn.Linear(24, 10)


def tiny_split(net, **switches):
    return (net.stem, *net.blocks)


def tiny_key_map(key):
    if key.startswith("stem."):
        return "layer0." + key[len("stem."):]
    if key.startswith("blocks."):
        index, rest = key[len("blocks."):].split(".", 1)
        return f"layer{int(index) + 1}.{rest}"
    return None


IMAGENET_FILE = {}


def tiny_imagenet(source):
    if source == "torchvision":
        raise BackboneLoadError("no torchvision weights for tiny")
    return IMAGENET_FILE


TINY = BackboneSpec("tiny", TinyNet, tiny_split, (8, 12, 16, 20, 24), (2, 4, 8, 8, 8), tiny_key_map, tiny_imagenet)


class LinearProbeHead(DecodeHead):
    """A 1x1 conv on layer4, bilinearly upsampled; CE only."""

    def __init__(self, config, channels):
        super().__init__(config, channels)
        self.classifier = nn.Conv2d(channels[4], config.num_labels, 1)

    def forward(self, features, size, labels, config, *, with_extras, return_dict, return_loss):
        logits = F.interpolate(self.classifier(features[3]), size=size, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, labels, ignore_index=config.ignore_index) if labels is not None and return_loss else None
        kept = features if with_extras else None
        return as_model_output(return_dict, loss, (logits, kept), logits=logits, features=kept)

    def training_terms(self, outputs, labels, config):
        return {"ce": F.cross_entropy(outputs.logits, labels, ignore_index=config.ignore_index)}


@pytest.fixture
def registries(monkeypatch):
    """TINY and LinearProbeHead registered for one test (the registries are restored after it)."""
    monkeypatch.setattr(backbone_registry, "_REGISTRY", dict(backbone_registry._REGISTRY))
    monkeypatch.setattr(backbone_registry, "_FAMILIES", dict(backbone_registry._FAMILIES))
    monkeypatch.setattr(backbone_registry, "_RESOLVED", dict(backbone_registry._RESOLVED))
    monkeypatch.setattr(head_registry, "_HEADS", dict(head_registry._HEADS))
    register_backbone(TINY)
    register_decode_head("linear_probe_test")(LinearProbeHead)


def test_a_new_backbone_and_head_build_train_and_round_trip(registries, tmp_path):
    assert "tiny" in available_backbones() and "tiny" not in BACKBONES
    assert "linear_probe_test" in available_decode_heads()
    config = SRHAConfig(backbone="tiny", decode_head="linear_probe_test", num_labels=5, pc_weight=1.0, **NO_HAC)
    model = SRHAForSemanticSegmentation(config)
    # stage_runners: weightless GradientCheckpointingLayers that run the stages (modeling_srha.StageRunner)
    assert [n for n, _ in model.named_children()] == ["layer0", "layer1", "layer2", "layer3", "layer4", "srm", "classifier", "stage_runners"]
    assert model.layer3[0].in_channels == 16 and model.decode_head.classifier is model.classifier

    model.train()
    torch.manual_seed(0)
    pixels, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32))
    loss, terms = compute_srha_loss(model, None, pixels, labels, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"ce", "pc"} and torch.isfinite(loss)
    loss.backward()
    assert model.classifier.weight.grad is not None and model.layer1[0].weight.grad is not None

    model.save_pretrained(tmp_path)
    loaded = SRHAForSemanticSegmentation.from_pretrained(tmp_path).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, model.eval()(pixels).logits, rtol=0, atol=0)


def test_a_new_backbone_loads_its_imagenet_weights_through_its_key_map(registries):
    net = TinyNet()
    for p in net.parameters():
        nn.init.normal_(p)
    IMAGENET_FILE.clear()
    IMAGENET_FILE.update(net.state_dict())
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="tiny", decode_head="linear_probe_test", backbone_pretrained="imagenet"))
    assert torch.equal(model.layer2[0].weight, net.blocks[1][0].weight)
    assert torch.equal(model.layer0[1].running_var, net.stem[1].running_var)
    assert model.config.backbone_pretrained_source == "imagenet"
    with pytest.raises(BackboneLoadError, match="no torchvision weights for tiny"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="tiny", decode_head="linear_probe_test", backbone_pretrained="torchvision"))
    del IMAGENET_FILE["blocks.3.0.weight"]
    with pytest.raises(BackboneLoadError, match="1 of .* missing or mis-shaped .*layer4.0.weight"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="tiny", decode_head="linear_probe_test", backbone_pretrained="imagenet"))


def test_registry_errors_name_what_is_known(registries):
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(TINY)
    with pytest.raises(ValueError, match="one entry per stage"):
        register_backbone(BackboneSpec("bad", TinyNet, tiny_split, (8, 12), (2, 4), tiny_key_map, tiny_imagenet))
    with pytest.raises(ValueError, match="unknown backbone 'nope'; expected one of resnet50, .*efficientnet_lite0, tiny"):
        backbone_spec("nope")
    with pytest.raises(ValueError, match="backbone='nope' is not supported; expected one of resnet50"):
        SRHAConfig(backbone="nope")
    with pytest.raises(ValueError, match="decode_head='nope' is not supported; expected one of deeplabv3plus, mask2former, linear_probe_test"):
        SRHAConfig(decode_head="nope")
    with pytest.raises(ValueError, match="already registered as LinearProbeHead"):
        register_decode_head("linear_probe_test")(type("Other", (DecodeHead,), {}))
    with pytest.raises(TypeError, match="takes a DecodeHead subclass"):
        register_decode_head("x")(nn.Conv2d)


def test_a_backbone_family_makes_its_members_on_first_use(registries, tmp_path):
    """``"<prefix>:<name>"`` names a member of a registered family: its spec is made once, by the family's
    function; the model builds, trains a step and round-trips; a member the family refuses, or an unknown
    family, fails naming why."""
    made = []

    def resolve(width):
        if not width.isdigit():
            raise ValueError(f"tinyw:{width}: the name after 'tinyw:' is a width, e.g. tinyw:24")
        made.append(width)
        return dataclasses.replace(TINY, name=f"tinyw:{width}")

    backbone_registry.register_backbone_family("tinyw", resolve, "tinyw:<width>")
    assert backbone_registry.is_backbone_name("tinyw:24") and not backbone_registry.is_backbone_name("tinyw:")
    assert backbone_registry.backbone_families()["tinyw"] == "tinyw:<width>"
    config = SRHAConfig(backbone="tinyw:24", decode_head="linear_probe_test", num_labels=5, **NO_HAC)
    assert made == []  # the config names it; the spec is made when the model is built
    model = SRHAForSemanticSegmentation(config)
    assert backbone_spec("tinyw:24") is backbone_spec("tinyw:24") and made == ["24"]
    model.save_pretrained(tmp_path)
    loaded = SRHAForSemanticSegmentation.from_pretrained(tmp_path)
    assert loaded.config.backbone == "tinyw:24" and made == ["24"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="the name after 'tinyw:' is a width"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="tinyw:wide", decode_head="linear_probe_test"))
    with pytest.raises(ValueError, match="backbone='other:24' is not supported; expected one of resnet50, .*tiny, (.*, )?tinyw:<width>"):
        SRHAConfig(backbone="other:24")
    with pytest.raises(ValueError, match="already registered"):
        backbone_registry.register_backbone_family("tinyw", resolve, "tinyw:<width>")


def test_the_head_is_held_not_registered_and_shares_its_modules():
    config = SRHAConfig(backbone="shufflenetv2", aspp_channels=8, decoder_channels=8, low_level_channels=4, dsn_channels=8)
    model = SRHAForSemanticSegmentation(config)
    head = model.decode_head
    assert isinstance(head, DeepLabV3PlusDecode)
    assert [n for n, _ in model.named_children()][6:] == ["aspp", "bot_aspp", "bot_fine", "final1", "final2", "dsn", "stage_runners"]
    assert all(getattr(model, name) is child for name, child in head.named_children())
    assert not any(name.startswith("decode_head") for name, _ in model.named_parameters())
    ids = [id(p) for p in model.parameters()]
    assert len(ids) == len(set(ids)) and {id(p) for p in head.parameters()} <= set(ids)

    model.to(torch.float64)
    assert head.final2.weight.dtype == torch.float64
    twin = copy.deepcopy(model)
    assert twin.decode_head.aspp is twin.aspp and twin.aspp is not model.aspp
    x = torch.randn(1, 3, 40, 56, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(x).logits, model.eval()(x).logits, rtol=0, atol=0)
