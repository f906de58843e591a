"""DINOv2 and DINOv2 with registers as SRHA backbones (beyond the paper; docs/method.md §1.2, srha_hf/backbones/dinov2.py):
the stages against transformers' own Dinov2Backbone, the strides, token SRM against the plain loop, SRHA training steps
with both heads, freezing, gradient checkpointing, weights from a saved folder, the save/load round trip, the recipe and a
command-line run. Tiny random networks only (hidden 32, 6 blocks, patch 14), offline."""

import copy
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference_loops import srm_loop
from transformers import Dinov2Backbone, Dinov2Config, Dinov2Model, Dinov2WithRegistersBackbone, Dinov2WithRegistersConfig

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss, sample_mixing_weights
from srha_hf.backbones import BackboneLoadError, backbone_spec, dinov2_spec
from srha_hf.backbones.dinov2 import VIT_L_BLOCKS, default_block_indices
from srha_hf.srm import resize_labels_nearest
from srha_hf.training import load_config, parameter_groups

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=32, num_hidden_layers=6, num_attention_heads=2, image_size=56, patch_size=14)
BLOCKS = (1, 2, 3, 5)  # the rule for 6 blocks: floor(6k/24 + 1/2) - 1 for k = 8, 12, 16, 24
SMALL = dict(aspp_channels=16, decoder_channels=16, low_level_channels=8, dsn_channels=16)
SMALL_M2F = dict(
    m2f_hidden_dim=32, m2f_conv_dim=32, m2f_mask_dim=32, m2f_num_queries=8, m2f_num_heads=2, m2f_dim_feedforward=64,
    m2f_decoder_layers=2, m2f_encoder_layers=1, m2f_encoder_feedforward_dim=64, m2f_train_num_points=256,
)  # fmt: skip
SIZE = (56, 84)  # a 4 x 6 token grid: not square, so height and width cannot be swapped unnoticed
MODEL_TYPES = ("dinov2", "dinov2_with_registers")


def backbone_config(model_type="dinov2", **extra):
    return {"model_type": model_type, **TINY, **extra}


def config_from_recipe(values):
    """A Dinov2Config of a recipe's backbone_config (a config object once SRHAConfig holds it, or a dict)."""
    if isinstance(values, Dinov2Config):
        return copy.deepcopy(values)
    return Dinov2Config(**{k: v for k, v in values.items() if k != "model_type"})


def make_model(model_type="dinov2", head="deeplabv3plus", **kwargs):
    torch.manual_seed(0)
    config = SRHAConfig(backbone_config=backbone_config(model_type), decode_head=head, **SMALL, **SMALL_M2F, **kwargs)
    return SRHAForSemanticSegmentation(config)


def batch(rows=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (rows, *SIZE), generator=gen)
    labels[:, :6] = 255
    return torch.randn(rows, 3, *SIZE, generator=gen), labels


# --- block choice --------------------------------------------------------------------------------------------


def test_block_rule_scales_vit_l_choice_to_other_depths():
    assert default_block_indices(24) == VIT_L_BLOCKS == (7, 11, 15, 23)
    assert default_block_indices(12) == (3, 5, 7, 11)
    assert default_block_indices(40) == (12, 19, 26, 39)
    assert default_block_indices(6) == BLOCKS and default_block_indices(4) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="no four distinct feature blocks"):
        default_block_indices(5)
    # out_indices in transformers' stage numbering (stage k = block k-1); its own default [depth] means the rule
    spec = dinov2_spec(backbone_config(out_indices=[2, 3, 5, 6]))
    assert spec.key_map("encoder.layer.3.mlp.fc1.weight") == "layer3.blocks.3.mlp.fc1.weight"  # blocks 1, 2, 4, 5 end the stages
    assert spec.key_map("encoder.layer.5.mlp.fc1.weight") == "layer4.blocks.5.mlp.fc1.weight"
    assert dinov2_spec(backbone_config(out_indices=[6])).key_map("encoder.layer.1.norm1.weight") == "layer1.blocks.1.norm1.weight"
    with pytest.raises(ValueError, match="four increasing stage indices"):
        dinov2_spec(backbone_config(out_indices=[3, 2, 5, 6]))


def test_spec_layout_and_family_names():
    spec = dinov2_spec(backbone_config())
    assert spec.channels == (32,) * 5 and spec.strides == (14, 4, 8, 16, 16) and not spec.paper and not spec.style_elimination
    assert spec.key_map("embeddings.cls_token") == "layer0.embeddings.cls_token"
    assert spec.key_map("dinov2.encoder.layer.2.attention.q_proj.weight") == "layer2.blocks.2.attention.q_proj.weight"
    assert spec.key_map("layernorm.weight") == "layer4.layernorm.weight" and spec.key_map("classifier.weight") is None
    large = backbone_spec("dinov2:large")
    assert large.channels[1] == 1024 and large.num_blocks == 24 and large.name == "dinov2:large"
    assert backbone_spec("dinov2_with_registers:tiny").no_split_modules == ("Dinov2WithRegistersLayer", "Dinov2WithRegistersEmbeddings")
    with pytest.raises(ValueError, match="not a preset"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="dinov2:huge"))


# --- the stages against transformers' backbone, the strides -----------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_stages_equal_transformers_backbone_and_measured_strides(model_type, tmp_path):
    config_class, backbone_class = {
        "dinov2": (Dinov2Config, Dinov2Backbone), "dinov2_with_registers": (Dinov2WithRegistersConfig, Dinov2WithRegistersBackbone),
    }[model_type]  # fmt: skip
    torch.manual_seed(1)
    reference = backbone_class(config_class(**TINY, out_indices=[b + 1 for b in BLOCKS])).eval()
    with torch.no_grad():  # non-trivial position embeddings, CLS and register tokens, LayerScale
        for name, p in reference.named_parameters():
            if "embeddings" in name or "lambda1" in name:
                p.normal_(0, 0.5)
    reference.save_pretrained(tmp_path / "backbone")
    model = make_model(model_type, backbone_pretrained=str(tmp_path / "backbone")).eval()
    assert model.config.backbone_pretrained_source == str(tmp_path / "backbone")
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        features = model.forward_features(x)
        expected = reference(x).feature_maps
    assert model.layer0(x).shape == (2, 32, 4, 6)  # layer0: the patch grid, stride 14
    for f, e, stride in zip(features, expected, (4, 8, 16, 16)):
        size = (math.ceil(SIZE[0] / stride), math.ceil(SIZE[1] / stride))
        assert f.shape == (2, 32, *size)  # measured strides 4 / 8 / 16 / 16 of the input
        resampled = F.interpolate(e, size=size, mode="bilinear", align_corners=False) if e.shape[-2:] != size else e
        torch.testing.assert_close(f, resampled, rtol=0, atol=1e-5)
    # hidden_states: layer0's map, then each block stage's token sequence (CLS + registers + 24 patches)
    with torch.no_grad():
        hidden = model(x, output_hidden_states=True).hidden_states
    prefix = 1 + (4 if model_type == "dinov2_with_registers" else 0)
    assert hidden[0].shape == (2, 32, 4, 6) and all(h.shape == (2, prefix + 24, 32) for h in hidden[1:])


def test_random_init_is_transformers_dinov2_init_and_style_elimination_defaults():
    model = make_model()
    q = model.layer1.blocks["0"].attention.q_proj
    assert abs(q.weight.std().item() - 0.02) < 0.005 and torch.all(q.bias == 0)  # trunc-normal 0.02, not Kaiming
    assert torch.all(model.layer2.blocks["2"].layer_scale1.lambda1 == 1.0)
    assert model.config.style_elimination is None and not model.uses_style_elimination  # off by default for DINOv2
    assert make_model(style_elimination=True).uses_style_elimination
    cnn = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", **SMALL))
    assert cnn.uses_style_elimination  # the CNNs keep the reference's default


# --- token SRM ----------------------------------------------------------------------------------------------


def test_token_srm_in_the_forward_matches_the_plain_loop():
    model = make_model().train()
    x, labels = batch()
    labels[0, 14, 28] = 7  # on the token grid (pixel (14i, 14j)): a one-token region
    labels[1, 15:28, 15:28] = 9  # off the grid: vanishes at token resolution
    grid = resize_labels_nearest(labels, (4, 6))
    assert torch.equal(grid, labels[:, ::14, ::14])  # nearest = the top-left pixel of every 14x14 patch
    assert (grid[0] == 7).sum() == 1 and not (grid[1] == 9).any()
    weights = sample_mixing_weights(2, 20, generator=torch.Generator().manual_seed(3))
    seen = {}
    model.layer1.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0].detach().clone()))
    model(x, labels=labels, srm_weights=weights)
    tokens = model.layer0(x).detach()
    reference = srm_loop(tokens, labels, weights, dtype=torch.float64)
    difference = (seen["x"].double() - reference).abs().max().item()
    assert seen["x"].shape == (4, 32, 4, 6)
    # SRM computes in float32; in a region of two or three tokens the std ratio σ̂/σ_k amplifies the rounding of
    # x - μ_k (here 1.3e-5 at most, in a two-token region, against values up to 1.7; 1e-7 elsewhere)
    assert difference < 1e-4 * reference.abs().max().item(), difference
    assert torch.equal(seen["x"][:2], tokens)  # the original half is layer0's map itself


# --- training -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type,head", [("dinov2", "deeplabv3plus"), ("dinov2_with_registers", "mask2former")])
def test_two_srha_training_steps(model_type, head):
    model = make_model(model_type, head).train()
    teacher = build_teacher(model.config, student=model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    before = copy.deepcopy(model.state_dict())
    for step in range(2):
        x, labels = batch(seed=step)
        loss, terms = compute_srha_loss(model, teacher, x, labels, generator=torch.Generator().manual_seed(step))
        assert torch.isfinite(loss) and {"ga", "ra", "la", "pc"} <= set(terms)
        optimizer.zero_grad()
        loss.backward()
        assert model.layer1.blocks["0"].mlp.fc1.weight.grad is not None
        assert all(p.grad is None for p in model.layer0.parameters())  # layer0 (the patch embedding) frozen
        optimizer.step()
    after = model.state_dict()
    assert not torch.equal(before["layer4.blocks.5.mlp.fc2.weight"], after["layer4.blocks.5.mlp.fc2.weight"])
    assert torch.equal(before["layer0.embeddings.cls_token"], after["layer0.embeddings.cls_token"])
    # the teacher is the same DINOv2, frozen
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items())


def test_freezing_the_first_blocks_or_the_whole_backbone():
    model = make_model(backbone_frozen_blocks=2).train()
    x, labels = batch()
    model(x, labels=labels).loss.backward()
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in getattr(model, stage).blocks.items():
            grads = [p.grad for p in block.parameters()]
            assert all(g is None for g in grads) if int(index) < 2 else all(g is not None for g in grads), (stage, index)
            assert block.training == (int(index) >= 2)  # frozen blocks stay in eval mode
    encoder = parameter_groups(model, 0.1, 0.1)[0]["params"]
    assert not any(p is q for p in encoder for q in model.layer1.blocks["0"].parameters())
    frozen = make_model(backbone_freeze=True).train()
    frozen(x, labels=labels).loss.backward()
    assert all(p.grad is None for name, p in frozen.named_parameters() if name.startswith("layer"))
    assert frozen.aspp.img_conv[0].weight.grad is not None and not frozen.layer3.training
    with pytest.raises(ValueError, match="has 6 transformer blocks"):
        make_model(backbone_frozen_blocks=7)
    with pytest.raises(ValueError, match="has 0 transformer blocks"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_frozen_blocks=1, **SMALL))


@pytest.mark.parametrize("reentrant,frozen_blocks", [(False, 0), (True, 2)])
def test_gradient_checkpointing_gives_the_same_gradients(reentrant, frozen_blocks):
    plain = make_model(backbone_frozen_blocks=frozen_blocks).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    calls = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for block in getattr(checkpointed, stage).blocks.values():
            original = block._gradient_checkpointing_func
            block._gradient_checkpointing_func = lambda fn, *a, original=original, **k: calls.append(1) or original(fn, *a, **k)
    runner_calls = []
    for runner in checkpointed.stage_runners:
        runner._gradient_checkpointing_func = lambda fn, *a, **k: runner_calls.append(1)
    x, labels = batch()
    for model in (plain, checkpointed):
        torch.manual_seed(3)  # dsn's dropout draws the same masks
        model(x, labels=labels, generator=torch.Generator().manual_seed(5)).loss.backward()
    assert len(calls) == 6 - frozen_blocks and not runner_calls  # each trainable block checkpointed once, no stage around them
    grads_a = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
    grads_b = {n: p.grad for n, p in checkpointed.named_parameters() if p.grad is not None}
    assert grads_a.keys() == grads_b.keys() and "layer2.blocks.2.attention.q_proj.weight" in grads_a
    assert ("layer1.blocks.1.norm1.weight" in grads_a) == (frozen_blocks == 0)
    scale = max(g.abs().max().item() for g in grads_a.values())
    assert max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a) <= 1e-6 * scale


# --- weights and the round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type,head", [("dinov2", "mask2former"), ("dinov2_with_registers", "deeplabv3plus")])
def test_save_and_load_round_trip_is_exact(model_type, head, tmp_path):
    model = make_model(model_type, head, backbone_frozen_blocks=1).eval()
    model.save_pretrained(tmp_path)
    loaded = SRHAForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert loaded.config.backbone_config == model.config.backbone_config and loaded.config.backbone == f"hf:{model_type}"
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not loaded.layer1.blocks["0"].norm1.weight.requires_grad and loaded.layer1.blocks["1"].norm1.weight.requires_grad
    assert not any(p.requires_grad for p in loaded.layer0.parameters())  # freeze_layer0 survives from_pretrained too
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_weights_are_refused_when_they_do_not_fit(tmp_path, no_network):
    Dinov2Backbone(Dinov2Config(**{**TINY, "num_attention_heads": 4})).save_pretrained(tmp_path / "heads4")
    with pytest.raises(BackboneLoadError, match="different DINOv2.*num_attention_heads"):
        make_model(backbone_pretrained=str(tmp_path / "heads4"))
    Dinov2Backbone(Dinov2Config(**{**TINY, "num_hidden_layers": 4})).save_pretrained(tmp_path / "shallow")
    with pytest.raises(BackboneLoadError):
        make_model(backbone_pretrained=str(tmp_path / "shallow"))
    Dinov2Backbone(Dinov2Config(**TINY, use_mask_token=False)).save_pretrained(tmp_path / "no_mask_token")
    make_model(backbone_pretrained=str(tmp_path / "no_mask_token"))  # the unused mask token is not required
    with pytest.raises(BackboneLoadError, match="no default checkpoint"):
        make_model(backbone_pretrained="imagenet")
    with pytest.raises(BackboneLoadError, match="could not load"):
        make_model(backbone_pretrained="facebook/dinov2-large")  # offline: refused, not a random init


def test_config_keys_are_validated():
    with pytest.raises(ValueError, match="model_type"):
        SRHAConfig(backbone_config={"model_type": "vit"})
    assert SRHAConfig(backbone="mobilenetv2", backbone_config=backbone_config()).backbone == "hf:dinov2"  # backbone_config decides
    with pytest.raises(ValueError, match="backbone_frozen_blocks must be an integer"):
        SRHAConfig(backbone_frozen_blocks=-1)
    with pytest.raises(ValueError, match="backbone_freeze must be true or false"):
        SRHAConfig(backbone_freeze="yes")
    from_object = SRHAConfig(backbone_config=Dinov2WithRegistersConfig(**TINY))
    assert from_object.backbone == "hf:dinov2_with_registers" and from_object.backbone_config.num_register_tokens == 4


# --- the recipe and a command-line run --------------------------------------------------------------------------


def test_recipe_holds_the_foundation_model_settings():
    c = load_config(ROOT / "configs" / "dinov2_l_m2f_gtav.yaml")
    assert (c.crop_size, c.batch_size, c.max_iter, c.backbone_pretrained) == (512, 4, 40000, "facebook/dinov2-large")
    mc = c.model_config()
    assert mc.decode_head == "mask2former" and mc.backbone == "hf:dinov2" and mc.style_elimination is None
    spec = dinov2_spec(mc.backbone_config)
    assert spec.channels[1] == 1024 and spec.num_blocks == 24
    mc.backbone_pretrained = None
    with torch.device("meta"):  # ViT-L's transformers state dict covers every tensor of the stages (no 300M-parameter allocation)
        model = SRHAForSemanticSegmentation(mc)
        vit_l = Dinov2Model(config_from_recipe(mc.backbone_config))
    mapped = {spec.key_map(k) for k in vit_l.state_dict()} - {None}
    assert set(model.backbone_stages().state_dict()) <= mapped
    assert [(list(model.get_submodule(f"layer{i}").blocks)[0], list(model.get_submodule(f"layer{i}").blocks)[-1]) for i in range(1, 5)] == [
        ("0", "7"), ("8", "11"), ("12", "15"), ("16", "23")]  # fmt: skip
    assert spec.key_map("encoder.layer.7.norm1.weight").startswith("layer1.") and spec.key_map("encoder.layer.8.norm1.weight").startswith("layer2.")


@pytest.mark.slow  # a subprocess test
def test_command_line_training_with_a_tiny_dinov2(synthetic_root, tmp_path, monkeypatch):
    from test_train import launch, run_args

    # the script imports this checkout's srha_hf (not another installed copy)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

    args = run_args(synthetic_root, tmp_path / "run", "--max_iter", "2", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    args[args.index("--backbone") + 1] = "dinov2_with_registers:tiny"
    args += ["--model_kwargs", "{aspp_channels: 16, decoder_channels: 16, low_level_channels: 8, dsn_channels: 16, backbone_frozen_blocks: 1}",
             "--gradient_checkpointing", "true"]
    out = launch(args)
    assert "| cityscapes |" in out.stdout
    model = SRHAForSemanticSegmentation.from_pretrained(tmp_path / "run" / "model")
    assert model.config.backbone == "dinov2_with_registers:tiny" and model.config.backbone_frozen_blocks == 1
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "is DINOv2 (a foundation-model ViT), beyond the paper" in card
