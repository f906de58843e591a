"""scripts/convert_original_checkpoint.py: the authors' checkpoints (docs/method.md §8.4) -> model folders."""

import json

import numpy as np
import pytest
import torch
from authors_network import authors_checkpoint, randomized
from huggingface_hub import ModelCard
from interop_helpers import load_script
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

import srha_hf  # noqa: F401 - registers the Auto classes
from srha_hf.conversion import CheckpointMismatchError, convert_original_checkpoint, guess_arch

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

BACKBONE = {"r50": "resnet50", "r101": "resnet101", "mobilenetv2": "mobilenetv2", "shufflenetv2": "shufflenetv2"}


@pytest.fixture(scope="module")
def script():
    return load_script("convert_original_checkpoint")


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.integration) for a in ("r50", "r101")] + ["mobilenetv2", "shufflenetv2"])
def test_round_trip_equals_authors_network(arch, tmp_path, script, capsys):
    net = randomized(arch)
    command = f"python -m torch.distributed.launch train.py --arch {arch} --dataset gtav --val_dataset cityscapes"
    ckpt = tmp_path / "last_None_epoch_31_mean-iu_0.00000.pth"
    torch.save(authors_checkpoint(net, epoch=31, mean_iu=0.0, command=command), ckpt)
    out = tmp_path / "converted"
    assert script.main(["--checkpoint", str(ckpt), "--arch", arch, "--output", str(out), "--no_progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["epoch"] == 31 and report["backbone"] == BACKBONE[arch]

    model = AutoModelForSemanticSegmentation.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    assert type(model).__name__ == "SRHAForSemanticSegmentation" and type(processor).__name__ == "SRHAImageProcessor"
    assert model.config.backbone == BACKBONE[arch] and model.config.backbone_pretrained is None
    assert model.config.original_checkpoint["file"] == ckpt.name and model.config.original_checkpoint["command"] == command

    # bit-identical weights: every tensor of the authors' network, nothing else
    saved = load_file(out / "model.safetensors")
    reference = net.state_dict()
    assert set(saved) == set(reference)
    assert all(torch.equal(saved[k], reference[k]) for k in reference)

    # the same eval logits as the authors' network on the same input (a float-rounding tolerance:
    # the two std reductions of style elimination are computed in a different order)
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = net(x), model(pixel_values=x).logits
    assert got.shape == expected.shape == (2, 19, 64, 80)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, scale)

    card = ModelCard.load(out / "README.md")
    for fact in (ckpt.name, "| epoch | 31 |", "| mean_iu | 0.0", "not a score", command.split(" --")[0], f"--arch {arch}"):
        assert fact in card.text, fact
    assert card.data.pipeline_tag == "image-segmentation" and card.data.library_name == "transformers"


@pytest.mark.integration
def test_mismatched_checkpoint_is_refused_with_the_keys(tmp_path, script, capsys):
    ckpt = authors_checkpoint(randomized("shufflenetv2"))
    state = ckpt["state_dict"]
    del state["module.final2.bias"], state["module.layer2.3.branch2.0.weight"]
    state["module.classifier.weight"] = torch.zeros(3)
    state["module.dsn.4.weight"] = torch.zeros(21, 512, 1, 1)  # 21 classes instead of 19
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    out = tmp_path / "out"
    assert script.main(["--checkpoint", str(path), "--arch", "shufflenetv2", "--output", str(out), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "conversion refused" in err and "2 missing key(s)" in err and "1 unexpected key(s)" in err and "1 mis-shaped" in err
    for key in ("final2.bias", "layer2.3.branch2.0.weight", "module.classifier.weight",
                "module.dsn.4.weight: checkpoint (21, 512, 1, 1), model (19, 512, 1, 1)"):  # fmt: skip
        assert key in err, key
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # nothing written, no temporary left

    with pytest.raises(CheckpointMismatchError) as info:
        convert_original_checkpoint(path, "shufflenetv2", out, progress=False)
    assert set(info.value.missing) == {"final2.bias", "layer2.3.branch2.0.weight"}
    assert info.value.unexpected == ["module.classifier.weight"]


def test_wrong_arch_names_the_likely_one(tmp_path, script, capsys):
    path = tmp_path / "mnv2.pth"
    torch.save(authors_checkpoint(randomized("mobilenetv2")), path)
    assert script.main(["--checkpoint", str(path), "--arch", "shufflenetv2", "--output", str(tmp_path / "o"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "does not match the shufflenetv2" in err and "looks like --arch mobilenetv2" in err
    assert guess_arch(torch.load(path, weights_only=True)["state_dict"]) == "mobilenetv2"
    assert script.main(["--checkpoint", str(path), "--arch", "r50_m2f", "--output", str(tmp_path / "o"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "does not match the r50_m2f (resnet50, mask2former) model" in err and "looks like --arch mobilenetv2" in err


def test_sequential_wrappings_numpy_scalars_and_pickles(tmp_path):
    """final2 / MobileNetV2 layer4 as one-module Sequentials (docs/method.md §1.5 leaves them open), mean_iu as a
    numpy scalar, a missing BN counter; an arbitrary pickled object is refused by weights_only."""
    net = randomized("mobilenetv2")
    ckpt = authors_checkpoint(net, mean_iu=np.float64(0.4321))
    state = {}
    for key, value in ckpt["state_dict"].items():
        key = key.replace("module.final2.", "module.final2.0.")
        key = key.replace("module.layer4.0.", "module.layer4.0.0.").replace("module.layer4.1.", "module.layer4.0.1.")
        state[key] = value
    del state["module.dsn.1.num_batches_tracked"]
    ckpt["state_dict"] = state
    path = tmp_path / "wrapped.pth"
    torch.save(ckpt, path)
    report = convert_original_checkpoint(path, "mobilenetv2", tmp_path / "out", progress=False)
    assert report["mean_iu"] == pytest.approx(0.4321)
    assert any("renamed 8 key(s)" in n for n in report["notes"]) and any("num_batches_tracked" in n for n in report["notes"])
    saved = load_file(tmp_path / "out" / "model.safetensors")
    reference = net.state_dict()
    assert all(torch.equal(saved[k], reference[k]) for k in reference if not k.endswith("num_batches_tracked"))

    import argparse

    ckpt["args"] = argparse.Namespace(lr=0.01)  # a pickled object: refused by torch.load(weights_only=True)
    torch.save(ckpt, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_original_checkpoint(tmp_path / "pickled.pth", "mobilenetv2", tmp_path / "out2", progress=False)
    with pytest.raises(FileExistsError):
        convert_original_checkpoint(path, "mobilenetv2", tmp_path / "out", progress=False)
