"""timm backbones, ``SRHAConfig(backbone="timm:<model name>")`` (srha_hf/backbones/timm_family.py, the optional
extra ``srha_hf[timm]``; docs/training.md "timm backbones").

What is proven here, offline (``pretrained=False`` only; weights from local files): the stages measured at
output stride 16 for six families and equal to timm's own ``features_only`` outputs; the refusals (with
their reasons) of models timm cannot dilate; the missing-extra error; strict loading of timm checkpoints
(file, ``.pth``, folder, Hub id); two SRHA training steps; the exact save/load round trip; the
cross-implementation proof that timm's ``tf_efficientnet_lite0`` holding the packaged Lite0 checkpoint
computes what our ``efficientnet_lite0`` computes; and a two-step ``scripts/train.py`` run.

The timm tests skip without timm; with ``SRHA_REQUIRE_TIMM`` set (.ci/run) a missing timm fails them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForSemanticSegmentation

from srha_hf import BackboneLoadError, SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.backbones import backbone_spec, registry
from srha_hf.efficientnet_lite import LITE0_BLOCKS, lite0_checkpoint_path
from srha_hf.hub import backbone_note
from srha_hf.objective import build_teacher, compute_srha_loss
from tests.test_roundtrip import SMALL_HEADS, assert_same_model, build, rebuilt_unsaved_buffers, unsaved_buffers

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def timm():
    """timm, or a skip (a failure where ``SRHA_REQUIRE_TIMM`` is set: CI installs the extra)."""
    if os.environ.get("SRHA_REQUIRE_TIMM"):
        import timm

        return timm
    return pytest.importorskip("timm")


# (channels, strides, stage units) of layer0..layer4, measured with timm 1.0.31 at output stride 16
MEMBERS = {
    "resnet18": ((64, 64, 128, 256, 512), (4, 4, 8, 16, 16), [["conv1", "bn1", "act1", "maxpool"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]),
    "tf_efficientnet_lite0": ((16, 24, 40, 112, 320), (2, 4, 8, 16, 16),
                              [["conv_stem", "bn1", "blocks.0"], ["blocks.1"], ["blocks.2"], ["blocks.3", "blocks.4"], ["blocks.5", "blocks.6"]]),
    "convnext_atto": ((40, 40, 80, 160, 320), (4, 4, 8, 16, 16), [["stem.0", "stem.1"], ["stages.0"], ["stages.1"], ["stages.2"], ["stages.3"]]),
    "regnetx_002": ((32, 24, 56, 152, 368), (2, 4, 8, 16, 16), [["stem"], ["s1"], ["s2"], ["s3"], ["s4"]]),
    "mobilenetv3_small_050": ((16, 8, 16, 24, 288), (2, 4, 8, 16, 16),
                              [["conv_stem", "bn1", "act1"], ["blocks.0"], ["blocks.1"], ["blocks.2", "blocks.3"], ["blocks.4", "blocks.5"]]),
    "mobilenetv2_050": ((8, 16, 16, 48, 160), (2, 4, 8, 16, 16),
                        [["conv_stem", "bn1", "blocks.0"], ["blocks.1"], ["blocks.2"], ["blocks.3", "blocks.4"], ["blocks.5", "blocks.6"]]),
}  # fmt: skip


def stage_outputs(stages, x):
    outputs = []
    for stage in stages:
        x = stage(x)
        outputs.append(x)
    return outputs


def with_bn_statistics(module, seed=3):
    """Non-trivial running statistics (fresh ones are 0 and 1), as a trained network has."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


# ------------------------------------------------------------------------------------------------
# The extra


def test_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    monkeypatch.setattr(registry, "_RESOLVED", {})  # no member made earlier in this process
    config = SRHAConfig(backbone="timm:resnet18")  # a name of the family: the config needs no timm
    with pytest.raises(ImportError, match=r'pip install "srha_hf\[timm\]"'):
        SRHAForSemanticSegmentation(config)
    with pytest.raises(ImportError, match=r"srha_hf\[timm\]"):
        backbone_spec("timm:tf_efficientnet_lite0")


@pytest.mark.slow  # a subprocess: a fresh interpreter
def test_importing_srha_hf_does_not_import_timm():
    code = "import sys, srha_hf.backbones; from srha_hf import SRHAConfig; SRHAConfig(backbone='timm:resnet18'); print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_model_card_says_a_timm_backbone_is_not_the_papers():
    assert "not one of the paper's four backbones" in backbone_note("timm:resnet18")
    assert backbone_note("timm:convnext_atto") == backbone_note("timm:resnet18")
    assert backbone_note("resnet50") == "" and "EfficientNet-Lite0" in backbone_note("efficientnet_lite0")


# ------------------------------------------------------------------------------------------------
# Accepted members: measured stages, equal to timm's own feature extractor


@pytest.mark.parametrize("name", list(MEMBERS))
def test_stages_are_measured_at_output_stride_16_and_compute_timms_features(timm, name):
    channels, strides, units = MEMBERS[name]
    spec = backbone_spec(f"timm:{name}")
    assert (spec.channels, spec.strides, spec.paper) == (channels, strides, False)

    torch.manual_seed(0)
    network = spec.build()
    with torch.device("meta"):
        every_feature = tuple(range(len(timm.create_model(name, pretrained=False).feature_info)))
    torch.manual_seed(0)
    features = timm.create_model(name, pretrained=False, features_only=True, output_stride=16, out_indices=every_feature)
    assert [torch.equal(a, b) for a, b in zip(network.state_dict().values(), features.state_dict().values())] == [True] * len(features.state_dict())
    with_bn_statistics(network), with_bn_statistics(features)
    stages = spec.split(network)
    assert [stage.units for stage in stages] == units
    for stage in stages:
        stage.eval()
    features.eval()

    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = stage_outputs(stages, x)
        theirs = features(stages[0].input_conversion(x))  # timm's features take its own normalisation
    assert [(o.shape[1], 64 // o.shape[2], 96 // o.shape[3]) for o in ours] == [(c, s, s) for c, s in zip(channels, strides)]
    for i, (a, b) in enumerate(zip(ours[1:], theirs[-4:]), start=1):
        assert torch.equal(a, b), f"layer{i} differs from timm's feature by {(a - b).abs().max():.3g}"


def test_layer0_converts_imagenet_pixels_to_the_models_normalisation(timm):
    lite = backbone_spec("timm:tf_efficientnet_lite0").split(backbone_spec("timm:tf_efficientnet_lite0").build())[0].input_conversion
    resnet = backbone_spec("timm:resnet18").split(backbone_spec("timm:resnet18").build())[0].input_conversion
    rgb = torch.rand(1, 3, 4, 4)
    mean, std = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    imagenet = (rgb - mean) / std
    assert (lite.target_mean, lite.target_std) == ((0.5,) * 3, (0.5,) * 3)
    assert torch.allclose(lite(imagenet), (rgb - 0.5) / 0.5, atol=1e-6)
    assert torch.equal(resnet(imagenet), imagenet)  # ImageNet's own normalisation: scale 1, shift 0 exactly


def test_the_keys_are_timms_under_the_stage_and_the_classifier_is_dropped_by_name(timm):
    spec = backbone_spec("timm:tf_efficientnet_lite0")
    assert spec.key_map("blocks.1.0.conv_pw.weight") == "layer1.blocks.1.0.conv_pw.weight"
    assert spec.key_map("blocks.6.0.bn3.running_var") == "layer4.blocks.6.0.bn3.running_var"
    assert spec.key_map("conv_stem.weight") == "layer0.conv_stem.weight"
    assert [spec.key_map(k) for k in ("classifier.weight", "conv_head.weight", "bn2.weight")] == [None] * 3
    resnet = backbone_spec("timm:resnet18")
    assert resnet.key_map("layer1.0.conv1.weight") == "layer1.layer1.0.conv1.weight" and resnet.key_map("fc.bias") is None


# ------------------------------------------------------------------------------------------------
# Refused members


@pytest.mark.parametrize("name", ["swin_tiny_patch4_window7_224", "vit_small_patch16_224", "hgnetv2_b0"])
def test_models_timm_cannot_dilate_are_refused_with_the_reason(timm, name):
    """timm 1.0.31 rejects ``output_stride`` for these (a TypeError from the constructor)."""
    with pytest.raises(ValueError, match=rf"backbone 'timm:{name}' is refused: timm cannot build it as a feature extractor at output_stride=16 "
                                         r"\(TypeError: .*output_stride"):  # fmt: skip
        SRHAForSemanticSegmentation(SRHAConfig(backbone=f"timm:{name}"))


def test_a_model_that_ignores_output_stride_is_refused_by_its_measured_strides(timm, monkeypatch):
    """A model that would take ``output_stride`` and ignore it (as the issue saw Swin and HGNetV2 do) stays at
    stride 32: the forward that measures the strides refuses it."""
    from srha_hf.backbones import timm_family

    monkeypatch.setattr(timm_family, "_create_features", lambda timm, name, out_indices: timm.create_model(
        name, pretrained=False, features_only=True, out_indices=out_indices))  # fmt: skip
    monkeypatch.setattr(registry, "_RESOLVED", {})
    with pytest.raises(ValueError, match=r"measure strides \(4, 8, 16, 32\) at output_stride=16, not \(4, 8, 16, 16\)"):
        backbone_spec("timm:resnet18")


def test_unknown_timm_models_are_refused(timm):
    with pytest.raises(ValueError, match=r"timm cannot build 'no_such_net': RuntimeError: Unknown model"):
        backbone_spec("timm:no_such_net")


# ------------------------------------------------------------------------------------------------
# Weights: timm checkpoints, strictly


def test_timm_checkpoints_load_strictly_from_files_folders_and_the_hub(timm, tmp_path, monkeypatch, no_network):
    torch.manual_seed(5)
    checkpoint = with_bn_statistics(timm.create_model("resnet18", pretrained=False)).state_dict()  # timm's full model, fc included
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, tmp_path / "resnet18.safetensors")
    torch.save(checkpoint, tmp_path / "resnet18.pth")
    (tmp_path / "folder").mkdir()
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, tmp_path / "folder" / "model.safetensors")

    from srha_hf.backbones import loading

    fetched = []
    monkeypatch.setattr(loading, "_hub_state_dict", lambda repo: fetched.append(repo) or dict(checkpoint))
    for source in (tmp_path / "resnet18.safetensors", tmp_path / "resnet18.pth", tmp_path / "folder", "timm/resnet18.a1_in1k", "imagenet"):
        config = SRHAConfig(backbone="timm:resnet18", backbone_pretrained=str(source), **SMALL_HEADS)
        model = SRHAForSemanticSegmentation(config)
        state = model.state_dict()
        for key, value in checkpoint.items():
            if key.startswith("fc."):
                assert not any(k.endswith(key) for k in state), key
            elif not key.endswith("num_batches_tracked"):
                staged = f"layer{next(i for i, s in enumerate(MEMBERS['resnet18'][2]) if key.split('.')[0] in s)}.{key}"
                assert torch.equal(state[staged], value), (source, key)
        assert model.config.backbone_pretrained_source == str(source)
    assert fetched == ["timm/resnet18.a1_in1k", "timm/resnet18.a1_in1k"]  # "imagenet": the Hub repo of timm's pretrained_cfg

    incomplete = {k: v.contiguous() for k, v in checkpoint.items() if k != "layer3.1.conv2.weight"}
    save_file(incomplete, tmp_path / "incomplete.safetensors")
    with pytest.raises(BackboneLoadError, match=r"1 of \d+ tensors missing or mis-shaped \(first: layer3\.layer3\.1\.conv2\.weight\)"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="timm:resnet18", backbone_pretrained=str(tmp_path / "incomplete.safetensors")))
    with pytest.raises(BackboneLoadError, match="no torchvision weights"):
        SRHAForSemanticSegmentation(SRHAConfig(backbone="timm:resnet18", backbone_pretrained="torchvision"))


# ------------------------------------------------------------------------------------------------
# Training, saving, loading


@pytest.mark.parametrize("name", ["resnet18", "tf_efficientnet_lite0"])
def test_two_srha_training_steps(timm, name):
    torch.manual_seed(0)
    config = SRHAConfig(backbone=f"timm:{name}", **SMALL_HEADS)
    student = SRHAForSemanticSegmentation(config).train()
    teacher = build_teacher(config, student=student)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    layer0 = {k: v.clone() for k, v in student.layer0.state_dict().items()}
    layer1 = {k: v.clone() for k, v in student.layer1.state_dict().items()}
    g = torch.Generator().manual_seed(2)
    x, labels = torch.randn(2, 3, 64, 64, generator=g), torch.randint(0, 19, (2, 64, 64), generator=g)
    for _ in range(2):
        optimizer.zero_grad()
        loss, terms = compute_srha_loss(student, teacher, x, labels, generator=g)
        loss.backward()
        assert torch.isfinite(loss) and {"ce", "aux", "ga", "ra", "la", "pc"} <= set(terms)
        assert all(p.grad is not None for p in student.layer4.parameters())
        optimizer.step()
    assert all(torch.equal(v, layer0[k]) for k, v in student.layer0.state_dict().items()), "the frozen layer0 changed"
    assert not all(torch.equal(v, layer1[k]) for k, v in student.layer1.state_dict().items())


ROUND_TRIPS = [("resnet18", "deeplabv3plus", "random"), ("resnet18", "deeplabv3plus", "imagenet"), ("resnet18", "mask2former", "imagenet"),
               ("tf_efficientnet_lite0", "deeplabv3plus", "imagenet")]  # fmt: skip


@pytest.mark.parametrize("name,head,init", ROUND_TRIPS)
def test_save_pretrained_from_pretrained_is_exact(timm, name, head, init, tmp_path, no_network):
    """tests/test_roundtrip.py's check for members of the family (its enumeration reads the registry's named
    backbones; "imagenet" there is a local file of the network in timm's checkpoint layout, offline)."""
    model = build(f"timm:{name}", head, init, tmp_path)
    if init == "imagenet":
        assert model.config.backbone_pretrained is None and model.config.backbone_pretrained_source.endswith("_imagenet.pth")
    model.save_pretrained(tmp_path / "model")
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, SRHAForSemanticSegmentation) and loaded.config.backbone == f"timm:{name}"
    assert "layer0.input_conversion.scale" in unsaved_buffers(loaded)
    assert_same_model(model, loaded, torch.randn(1, 3, 72, 104, generator=torch.Generator().manual_seed(1)))


def test_a_model_built_on_the_meta_device_gets_its_input_conversion_from_init_weights(timm):
    got, reference = rebuilt_unsaved_buffers(SRHAConfig(backbone="timm:tf_efficientnet_lite0", **SMALL_HEADS))
    assert got.keys() == reference.keys() == {"layer0.input_conversion.scale", "layer0.input_conversion.shift"}
    assert all(torch.equal(got[k], reference[k]) for k in got)


# ------------------------------------------------------------------------------------------------
# Cross-implementation proof: timm's tf_efficientnet_lite0 against our efficientnet_lite0, same checkpoint


def lite0_checkpoint_in_timms_names(state):
    """The packaged Lite0 checkpoint (``_blocks.N._expand_conv``...) under timm's ``tf_efficientnet_lite0`` names."""
    position = [(group, i) for group, (_, _, _, _, repeats) in enumerate(LITE0_BLOCKS) for i in range(repeats)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}  # block 0: no expansion
    inner = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            group, i = position[int(parts[1])]
            names = first if int(parts[1]) == 0 else inner
            renamed[".".join(["blocks", str(group), str(i), names[parts[2]], *parts[3:]])] = value
        else:
            renamed[".".join([top[parts[0]], *parts[1:]])] = value
    return renamed


def test_timms_lite0_with_the_packaged_checkpoint_computes_our_lite0(timm, tmp_path, no_network):
    """Our layer0 (stem + block 0, /2), layer1 (blocks 1-4, /8) and layer2 (blocks 5-7, /16) against the same
    points of timm's network: its layer0, layer2 and block group 3 (the start of its layer3), undilated in
    both. Measured (timm 1.0.31, torch CPU, a smooth random 96x128 image):

    * the same input into both stems (the input conversions bypassed): max abs difference 0 on all three
      (bit-identical, asserted ≤ 1e-5);
    * the same ImageNet-normalised pixels, each network converting them to its own input (timm:
      ``(r − 0.5)/0.5``, ours: ``(255r − 127)/128``; they differ by ``(1 − r)/128`` ≤ 0.0078): max abs
      differences 0.281 / 0.389 / 0.182 (layer0 / layer1 / layer2; mean abs 0.025 / 0.027 / 0.026) on
      outputs whose max abs is 34.5 / 36.6 / 30.5, i.e. 0.8 % / 1.1 % / 0.6 % of it (asserted between 0.01 %
      and 2 %); and exactly (within 1e-5) the normalisation's own effect: our Lite0 fed timm's input instead
      of its own moves by the same amounts.
    """
    checkpoint = torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    in_timm = lite0_checkpoint_in_timms_names(checkpoint)
    timm.create_model("tf_efficientnet_lite0", pretrained=False).load_state_dict(in_timm, strict=True)  # every tensor, and only those
    save_file({k: v.contiguous() for k, v in in_timm.items()}, tmp_path / "tf_efficientnet_lite0.safetensors")

    theirs = SRHAForSemanticSegmentation(SRHAConfig(
        backbone="timm:tf_efficientnet_lite0", backbone_pretrained=str(tmp_path / "tf_efficientnet_lite0.safetensors"), **SMALL_HEADS)).eval()
    ours = SRHAForSemanticSegmentation(SRHAConfig(backbone="efficientnet_lite0", backbone_pretrained="imagenet", **SMALL_HEADS)).eval()

    rgb = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(4)), size=(96, 128), mode="bicubic")
    rgb = rgb.clamp(0, 1)
    mean, std = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    pixels = (rgb - mean) / std

    def timm_points(x):
        t0 = theirs.layer0(x)
        t2 = theirs.layer2(theirs.layer1(t0))
        return [t0, t2, theirs.layer3.get_submodule("blocks.3")(t2)]

    def our_points(x, convert=True):
        conversion = ours.layer0.to_lite_input
        if not convert:
            ours.layer0.to_lite_input = torch.nn.Identity()
        try:
            l0 = ours.layer0(x)
        finally:
            ours.layer0.to_lite_input = conversion
        l1 = ours.layer1(l0)
        return [l0, l1, ours.layer2(l1)]

    with torch.no_grad():
        timm_input = theirs.layer0.input_conversion(pixels)
        assert torch.allclose(timm_input, (rgb - 0.5) / 0.5, atol=1e-5)
        assert 0.005 < (ours.layer0.to_lite_input(pixels) - timm_input).abs().max() <= 1 / 128 + 1e-5
        t = timm_points(pixels)
        same_input = our_points(timm_input, convert=False)
        own_input = our_points(pixels)
    exact = [(a - b).abs().max().item() for a, b in zip(t, same_input)]
    assert max(exact) <= 1e-5, f"same input: layer0-2 differ by {exact}"
    normalisation = [(a - b).abs().max().item() for a, b in zip(t, own_input)]
    own_effect = [(a - b).abs().max().item() for a, b in zip(same_input, own_input)]
    assert all(abs(n - e) <= 1e-5 for n, e in zip(normalisation, own_effect)), (normalisation, own_effect)
    scale = [a.abs().max().item() for a in t]
    assert all(1e-4 * m < n < 0.02 * m for n, m in zip(normalisation, scale)), f"normalisations' difference: {normalisation} of {scale}"


# ------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.slow  # a subprocess
def test_two_training_steps_of_scripts_train_on_a_timm_backbone(timm, synthetic_root, tmp_path):
    from tests.test_train import launch, run_args

    out_dir = tmp_path / "run"
    args = run_args(synthetic_root, out_dir, "--max_iter", "2", "--checkpointing_steps", "0", "--val_datasets", "cityscapes")
    args[args.index("--backbone") + 1] = "timm:resnet18"
    launch(args)
    model = AutoModelForSemanticSegmentation.from_pretrained(out_dir / "model")
    assert model.config.backbone == "timm:resnet18" and model.layer4.units == ["layer4"]
    card = (out_dir / "model" / "README.md").read_text()
    assert "timm:resnet18" in card and "not one of the paper's four backbones" in card
