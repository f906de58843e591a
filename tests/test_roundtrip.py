"""A published model is the model that was trained: for every registered backbone x decode head, random and
ImageNet-initialised, ``save_pretrained`` -> ``from_pretrained`` gives the same weights, the same unsaved buffers and
the same eval logits; a model built on the meta device gets its unsaved buffers back from ``_init_weights``; the
same through ``push_to_hub`` (to a local folder standing in for the Hub) and through ONNX exported from a reloaded
model. The enumeration reads the registries, so a backbone or head registered later is covered as it lands."""

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoModelForSemanticSegmentation

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.backbones import available_backbones, backbone_spec
from srha_hf.backbones.hf import FAMILIES
from srha_hf.heads import available_decode_heads
from tests.hf_backbone_configs import TINY_BACKBONE_CONFIGS

pytestmark = pytest.mark.usefixtures("one_thread")

# Small heads (the backbones are the real, full-size networks): sizes do not change what is saved or loaded.
SMALL_HEADS = dict(
    aspp_channels=16, decoder_channels=16, low_level_channels=8, dsn_channels=16,
    m2f_hidden_dim=32, m2f_conv_dim=32, m2f_mask_dim=32, m2f_num_queries=8, m2f_num_heads=2, m2f_dim_feedforward=64,
    m2f_decoder_layers=2, m2f_encoder_layers=1, m2f_encoder_feedforward_dim=64,
)  # fmt: skip
COMBINATIONS = list(itertools.product(available_backbones(), available_decode_heads()))
# transformers backbones (backbone_config, srha_hf/backbones/hf.py): every family with a stage split, tiny and random
HF_COMBINATIONS = list(itertools.product(sorted(FAMILIES), available_decode_heads()))
TOLERANCE = 1e-5  # transformers' own save/load test allows 1e-5 (test_save_load)


def offline_imagenet(backbone: str, tmp_path: Path) -> str:
    """A ``backbone_pretrained`` value that loads offline through the real loading path: the backbone's own
    ImageNet weights where they install with a package (Lite0's ``"imagenet"``), otherwise a local file of
    the network in its checkpoint layout (a seeded random draw, as a downloaded torchvision file would be)."""
    try:
        backbone_spec(backbone).imagenet("imagenet")
        return "imagenet"
    except Exception:  # noqa: BLE001 - torchvision's files need the network: a local file instead
        torch.manual_seed(7)
        path = tmp_path / f"{backbone}_imagenet.pth"
        torch.save(backbone_spec(backbone).build().state_dict(), path)
        return str(path)


def build(backbone: str, head: str, init: str, tmp_path: Path) -> SRHAForSemanticSegmentation:
    torch.manual_seed(0)
    pretrained = offline_imagenet(backbone, tmp_path) if init == "imagenet" else None
    config = SRHAConfig(backbone=backbone, decode_head=head, backbone_pretrained=pretrained, **SMALL_HEADS)
    model = SRHAForSemanticSegmentation(config)
    with torch.no_grad():  # non-trivial BN statistics, as a trained model has (fresh ones are 0 and 1)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def unsaved_buffers(model):
    return dict(model.named_non_persistent_buffers())


def assert_same_model(trained, loaded, x):
    a, b = trained.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"saved tensors changed on reload: {different[:5]}"
    ua, ub = unsaved_buffers(trained), unsaved_buffers(loaded)
    assert ua.keys() == ub.keys()
    assert all(torch.equal(ua[k], ub[k]) for k in ua), "an unsaved buffer came back different"
    with torch.no_grad():
        expected, got = trained(x).logits, loaded.eval()(x).logits
    diff = (expected - got).abs().max().item()
    assert diff <= TOLERANCE, f"eval logits differ by {diff:.3g} after the round trip"


def test_the_enumeration_covers_every_registered_combination():
    assert len(COMBINATIONS) == len(available_backbones()) * len(available_decode_heads()) >= 10
    assert "efficientnet_lite0" in available_backbones()
    assert set(TINY_BACKBONE_CONFIGS) == set(FAMILIES), "a transformers backbone family without a tiny test config"


def build_hf(family: str, head: str) -> SRHAForSemanticSegmentation:
    torch.manual_seed(0)
    config = SRHAConfig(backbone_config=dict(TINY_BACKBONE_CONFIGS[family]), decode_head=head, **SMALL_HEADS)
    model = SRHAForSemanticSegmentation(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("family,head", HF_COMBINATIONS)
def test_transformers_backbone_save_pretrained_from_pretrained_is_exact(family, head, tmp_path):
    """The same contract for ``backbone_config`` models: the nested config, the weights, the unsaved buffers
    (Swin's relative position index) and the logits come back exactly."""
    model = build_hf(family, head)
    model.save_pretrained(tmp_path / "model")
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, SRHAForSemanticSegmentation)
    drop = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert drop(loaded.config.to_dict()) == drop(model.config.to_dict())
    assert_same_model(model, loaded, torch.randn(1, 3, 72, 104, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_transformers_backbone_built_on_the_meta_device_gets_its_unsaved_buffers_from_init_weights(family):
    config = SRHAConfig(backbone_config=dict(TINY_BACKBONE_CONFIGS[family]), **SMALL_HEADS)
    with torch.device("meta"):
        model = SRHAForSemanticSegmentation(config)
    model.to_empty(device="cpu")
    for buffer in unsaved_buffers(model).values():
        buffer.fill_(-1)
    model.init_weights()
    reference = unsaved_buffers(SRHAForSemanticSegmentation(config))
    got = unsaved_buffers(model)
    assert got.keys() == reference.keys()
    assert all(torch.equal(got[k], reference[k]) for k in got), [k for k in got if not torch.equal(got[k], reference[k])]


@pytest.mark.integration
@pytest.mark.parametrize("init", ["random", "imagenet"])
@pytest.mark.parametrize("backbone,head", COMBINATIONS)
def test_save_pretrained_from_pretrained_is_exact(backbone, head, init, tmp_path):
    model = build(backbone, head, init, tmp_path)
    if init == "imagenet":
        assert model.config.backbone_pretrained is None and model.config.backbone_pretrained_source
    model.save_pretrained(tmp_path / "model")
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, SRHAForSemanticSegmentation)
    assert_same_model(model, loaded, torch.randn(1, 3, 72, 104, generator=torch.Generator().manual_seed(1)))


def rebuilt_unsaved_buffers(config) -> tuple:
    """``(unsaved buffers of a model built on the meta device, then NaN-filled and re-made by init_weights,
    those of a model built normally)``."""
    with torch.device("meta"):
        model = SRHAForSemanticSegmentation(config)
    model.to_empty(device="cpu")
    for buffer in unsaved_buffers(model).values():
        buffer.fill_(float("nan"))
    model.init_weights()
    return unsaved_buffers(model), unsaved_buffers(SRHAForSemanticSegmentation(config))


@pytest.mark.parametrize("backbone,head", COMBINATIONS)
def test_a_model_built_on_the_meta_device_gets_its_unsaved_buffers_from_init_weights(backbone, head):
    """The transformers contract: what the state dict does not hold is re-created by ``_init_weights``."""
    got, reference = rebuilt_unsaved_buffers(SRHAConfig(backbone=backbone, decode_head=head, **SMALL_HEADS))
    assert got.keys() == reference.keys()
    assert all(torch.equal(got[k], reference[k]) for k in got), [k for k in got if not torch.equal(got[k], reference[k])]


def test_lite0_reloaded_was_wrong_before_init_weights_recreated_its_input_conversion(tmp_path):
    """The regression this file guards: Lite0's input conversion is unsaved; skipping its re-creation (as
    before) leaves the loaded model with garbage constants and different logits."""
    from srha_hf.efficientnet_lite import ImageNetToLiteInput

    model = build("efficientnet_lite0", "deeplabv3plus", "imagenet", tmp_path)
    model.save_pretrained(tmp_path / "model")
    original = ImageNetToLiteInput.reset_constants
    try:
        ImageNetToLiteInput.reset_constants = lambda self: self.scale.fill_(0.0)  # as if nothing re-created them
        broken = SRHAForSemanticSegmentation.from_pretrained(tmp_path / "model").eval()
    finally:
        ImageNetToLiteInput.reset_constants = original
    with pytest.raises(AssertionError, match="unsaved buffer"):
        assert_same_model(model, broken, torch.randn(1, 3, 64, 64))


class LocalHub:
    """``HfApi.create_repo`` / ``create_commit`` / ``upload_folder`` writing to a local folder: what
    ``push_to_hub`` (a commit) or ``srha_hf.hub.push_model_folder`` (a folder upload) would send lands in
    ``root/<repo_id>`` exactly as sent (every file, under its path in the repo)."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        hub = self

        def create_repo(api, repo_id, **kwargs):
            (hub.root / repo_id).mkdir(parents=True, exist_ok=True)
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def create_commit(api, repo_id, operations, **kwargs):
            for op in operations:
                target = hub.root / repo_id / op.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                source = op.path_or_fileobj
                target.write_bytes(Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else source.read())
            return type("CommitInfo", (), {"commit_url": f"local://{repo_id}"})()

        def upload_folder(api, repo_id, folder_path, **kwargs):
            for path in Path(folder_path).rglob("*"):
                if path.is_file():
                    target = hub.root / repo_id / path.relative_to(folder_path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(path.read_bytes())
            return type("CommitInfo", (), {"commit_url": f"local://{repo_id}"})()

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


@pytest.mark.integration
def test_push_to_hub_folder_reloads_exactly(tmp_path, monkeypatch):
    from transformers.utils import hub as transformers_hub

    from srha_hf.hub import push_model_folder

    hub = LocalHub(tmp_path / "hub", monkeypatch)
    monkeypatch.setattr(transformers_hub, "create_and_tag_model_card", lambda repo_id, tags=None, **k: _card(repo_id))
    model = build("efficientnet_lite0", "deeplabv3plus", "imagenet", tmp_path)
    model.push_to_hub("someone/srha-lite0")
    x = torch.randn(1, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    assert_same_model(model, SRHAForSemanticSegmentation.from_pretrained(hub.root / "someone/srha-lite0"), x)
    # the trainer's own upload (srha_hf.hub.push_model_folder) of a published folder
    folder = tmp_path / "published"
    model.save_pretrained(folder)
    (folder / "README.md").write_text("card")
    push_model_folder(folder, "someone/srha-lite0-run")
    assert_same_model(model, SRHAForSemanticSegmentation.from_pretrained(hub.root / "someone/srha-lite0-run"), x)


def _card(repo_id):
    from huggingface_hub import ModelCard

    return ModelCard(f"# {repo_id}")


@pytest.mark.integration
def test_onnx_of_a_reloaded_model_matches_the_trained_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from srha_hf.onnx_export import export_onnx

    model = build("efficientnet_lite0", "deeplabv3plus", "imagenet", tmp_path)
    model.save_pretrained(tmp_path / "model")
    reloaded = SRHAForSemanticSegmentation.from_pretrained(tmp_path / "model")
    x = torch.randn(1, 3, 77, 109, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x).logits.numpy()  # the model that was trained, not the reloaded one
    # float32 rounding relative to the logits' size (a random head on ImageNet features gives logits ~100)
    atol = max(1e-4, 1e-5 * float(np.abs(expected).max()))
    export_onnx(reloaded, tmp_path / "model.onnx", check_sizes=[(61, 93)], atol=atol)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"pixel_values": x.numpy()})[0]
    assert np.abs(got - expected).max() < atol
