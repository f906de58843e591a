"""The conventions that transformers users and tools rely on: config keys set after construction survive a
save/load while a constructor typo still fails; ``output_hidden_states``; unknown forward keywords are refused;
no phantom ``base_model_prefix``; ``_no_split_modules`` for ``device_map="auto"``; gradient checkpointing that
gives the same gradients and the same BatchNorm statistics as an ordinary step."""

import copy
import json
import logging

import pytest
import torch
from transformers import AutoConfig

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(aspp_channels=16, decoder_channels=16, low_level_channels=8, dsn_channels=16)
SMALL_M2F = dict(
    m2f_hidden_dim=32, m2f_conv_dim=32, m2f_mask_dim=32, m2f_num_queries=8, m2f_num_heads=2, m2f_dim_feedforward=64,
    m2f_decoder_layers=2, m2f_encoder_layers=1, m2f_encoder_feedforward_dim=64, m2f_train_num_points=256,
)  # fmt: skip


@pytest.fixture(scope="module")
def shufflenet():
    torch.manual_seed(0)
    return SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", **SMALL)).eval()


# --- the config --------------------------------------------------------------------------------------------


def test_keys_a_tool_sets_after_construction_survive_save_and_load(tmp_path):
    config = SRHAConfig(backbone="shufflenetv2")
    config.use_cache = False
    config.tie_word_embeddings = False
    config.my_tool_flag = {"a": 1}
    config.save_pretrained(tmp_path)
    for loaded in (SRHAConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path), SRHAConfig.from_json_file(tmp_path / "config.json")):
        assert (loaded.use_cache, loaded.tie_word_embeddings, loaded.my_tool_flag, loaded.backbone) == (False, False, {"a": 1}, "shufflenetv2")
    # and through a model folder
    model = SRHAForSemanticSegmentation(config)
    model.save_pretrained(tmp_path / "model")
    assert SRHAForSemanticSegmentation.from_pretrained(tmp_path / "model").config.use_cache is False


def test_a_typo_at_construction_still_fails_naming_the_key_meant():
    with pytest.raises(ValueError, match=r"unknown key 'pc_wieght'; did you mean 'pc_weight'\?"):
        SRHAConfig(pc_wieght=5)
    with pytest.raises(ValueError, match="did you mean 'srm_concentration'"):
        AutoConfig.for_model("srha", srm_concentraton=0.5)


def test_a_typo_inside_a_config_json_is_kept_with_a_warning_naming_the_key_meant(tmp_path, caplog):
    SRHAConfig(backbone="shufflenetv2").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["pc_wieght"] = 5.0
    (tmp_path / "config.json").write_text(json.dumps(saved))
    logger = logging.getLogger("srha_hf")
    logger.addHandler(caplog.handler)  # transformers' logging does not propagate to the root logger
    try:
        with caplog.at_level(logging.WARNING, logger="srha_hf"):
            config = SRHAConfig.from_pretrained(tmp_path)
    finally:
        logger.removeHandler(caplog.handler)
    assert config.pc_wieght == 5.0 and config.pc_weight == 10.0  # kept, and it changed nothing
    warned = [r.getMessage() for r in caplog.records if "pc_wieght" in r.getMessage()]
    assert warned and "did you mean 'pc_weight'" in warned[0]
    config.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["pc_wieght"] == 5.0  # not lost on a re-save


# --- the forward ---------------------------------------------------------------------------------------------


def test_an_unknown_forward_keyword_raises_type_error(shufflenet):
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(TypeError, match="output_hiden_states"):
        shufflenet(x, output_hiden_states=True)


@pytest.mark.parametrize("head", ["deeplabv3plus", "mask2former"])
def test_output_hidden_states_returns_the_five_stage_outputs(head):
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", decode_head=head, **SMALL, **SMALL_M2F)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        plain = model(x)
        stages = [x]
        for name in ("layer0", "layer1", "layer2", "layer3", "layer4"):
            inp = stages[-1]
            if name == "layer1":  # style elimination sits between layer0 and layer1 (docs/method.md §1.1)
                from srha_hf.modeling_srha import style_elimination

                inp = style_elimination(inp)
            stages.append(getattr(model, name)(inp))
        as_tuple = model(x, output_hidden_states=True, return_dict=False)
    assert plain.hidden_states is None
    assert len(out.hidden_states) == 5
    assert [tuple(h.shape[1:2]) for h in out.hidden_states] == [(24,), (116,), (232,), (464,), (1024,)]
    for got, expected in zip(out.hidden_states, stages[1:]):
        assert torch.equal(got, expected)
    assert torch.equal(out.logits, plain.logits)
    # return_dict=False: the same tensors, hidden_states last, as ModelOutput.to_tuple() orders them
    assert len(as_tuple) == len(out.to_tuple())
    assert all(torch.equal(h, g) for h, g in zip(as_tuple[-1], out.hidden_states))
    assert torch.equal(as_tuple[0], out.logits)
    # the config's default, as transformers' models read it
    model.config.output_hidden_states = True
    with torch.no_grad():
        assert len(model(x).hidden_states) == 5


def test_training_hidden_states_carry_the_rearranged_half_after_layer0():
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", **SMALL)).train()
    out = model(torch.randn(2, 3, 64, 64), labels=torch.randint(0, 19, (2, 64, 64)), output_hidden_states=True)
    # layer0's own output, then [original; rearranged] from layer1 on, like the logits
    assert [h.shape[0] for h in out.hidden_states] == [2, 4, 4, 4, 4]
    assert out.logits.shape[0] == 4


def test_selected_hidden_states_keep_only_the_indices_asked_for(shufflenet):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        every = shufflenet(x, output_hidden_states=True).hidden_states
        some = shufflenet(x, output_hidden_states=[0, -1]).hidden_states
    assert len(some) == 5 and some[1] is None and some[2] is None and some[3] is None
    assert torch.equal(some[0], every[0]) and torch.equal(some[4], every[4])


# --- transformers' class attributes ---------------------------------------------------------------------------


def test_base_model_prefix_names_no_phantom_submodule(shufflenet):
    prefix = type(shufflenet).base_model_prefix
    assert prefix == "" or hasattr(shufflenet, prefix)
    assert shufflenet.base_model is shufflenet  # no base model, as transformers' UperNet


@pytest.mark.parametrize("backbone,head,blocks", [
    ("resnet50", "deeplabv3plus", {"Bottleneck", "ASPP"}),
    ("mobilenetv2", "deeplabv3plus", {"InvertedResidual", "ASPP"}),
    ("efficientnet_lite0", "mask2former", {"MBConvBlock", "Mask2FormerHead"}),
])  # fmt: skip
def test_device_map_auto_keeps_blocks_whole(backbone, head, blocks):
    from transformers.integrations.accelerate import infer_auto_device_map  # what from_pretrained(device_map=...) uses

    with torch.device("meta"):
        model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone, decode_head=head, **SMALL, **SMALL_M2F))
    assert set(model._no_split_modules) == blocks
    assert blocks <= {type(m).__name__ for m in model.modules()}
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    # three "devices" of a third of the model each force the map to cut the network in several places
    device_map = infer_auto_device_map(model, max_memory={0: size // 3, 1: size // 3, "cpu": size * 2},
                                       no_split_module_classes=model._no_split_modules)  # fmt: skip
    assert len(set(device_map.values())) >= 2
    for name, module in model.named_modules():
        if type(module).__name__ in blocks:  # every parameter of a block on one device
            placed = {device for key, device in device_map.items() if name == key or name.startswith(key + ".") or key.startswith(name + ".")}
            assert len(placed) == 1, f"{name} is split over {placed}"


# --- gradient checkpointing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone,freeze_layer0,reentrant", [
    ("shufflenetv2", False, False), ("efficientnet_lite0", False, False), ("shufflenetv2", True, True), ("efficientnet_lite0", True, False),
])  # fmt: skip
def test_gradient_checkpointing_gives_the_same_gradients_and_bn_statistics(backbone, freeze_layer0, reentrant):
    torch.manual_seed(0)
    plain = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone, freeze_layer0=freeze_layer0, **SMALL)).train()
    checkpointed = copy.deepcopy(plain)
    assert SRHAForSemanticSegmentation.supports_gradient_checkpointing
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    assert checkpointed.is_gradient_checkpointing
    calls = []
    for runner in checkpointed.stage_runners:
        original = runner._gradient_checkpointing_func
        runner._gradient_checkpointing_func = lambda fn, *a, original=original, **k: calls.append(1) or original(fn, *a, **k)
    x, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    for model in (plain, checkpointed):
        generator = torch.Generator().manual_seed(5)
        torch.manual_seed(3)  # dsn's dropout draws the same masks
        model(x, labels=labels, generator=generator).loss.backward()
    assert len(calls) == (4 if freeze_layer0 else 5)  # every trainable stage ran under the checkpoint, a frozen one did not
    grads_a = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
    grads_b = {n: p.grad for n, p in checkpointed.named_parameters() if p.grad is not None}
    assert grads_a.keys() == grads_b.keys() and any(n.startswith("layer1.") for n in grads_a)
    assert any(n.startswith("layer0.") for n in grads_a) != freeze_layer0
    worst = max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a)
    scale = max(g.abs().max().item() for g in grads_a.values())
    assert worst <= 1e-6 * scale, (worst, scale)  # float rounding: the recomputation may sum in another order
    # the recomputation in the backward did not update the running statistics a second time
    bufs_a, bufs_b = dict(plain.named_buffers()), dict(checkpointed.named_buffers())
    assert all(torch.equal(bufs_a[k], bufs_b[k]) for k in bufs_a), [k for k in bufs_a if not torch.equal(bufs_a[k], bufs_b[k])][:3]
    checkpointed.activation_checkpointing_disable()
    assert not checkpointed.is_gradient_checkpointing


def test_gradient_checkpointing_is_inactive_in_eval_and_without_gradients(shufflenet):
    model = copy.deepcopy(shufflenet)
    model.activation_checkpointing_enable()
    calls = []
    for runner in model.stage_runners:
        runner._gradient_checkpointing_func = lambda fn, *a, **k: calls.append(1)
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 64, 64))
    assert not calls


def test_stage_runners_add_nothing_to_the_state_dict(shufflenet):
    assert not any(k.startswith("stage_runners") for k in shufflenet.state_dict())
    assert [r.stage for r in shufflenet.stage_runners] == [getattr(shufflenet, f"layer{i}") for i in range(5)]
    clone = copy.deepcopy(shufflenet)
    assert [r.stage for r in clone.stage_runners] == [getattr(clone, f"layer{i}") for i in range(5)]


def test_a_forward_adds_no_attribute_to_the_stage_runners(shufflenet):
    """torch.compile guards on the modules' attributes: one that a forward creates (the class default of
    ``gradient_checkpointing`` written back as an instance attribute) recompiled the model on its 2nd call."""
    model = copy.deepcopy(shufflenet).eval()
    before = [set(vars(runner)) for runner in model.stage_runners]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert [set(vars(runner)) for runner in model.stage_runners] == before
