"""Checkpoints that srha_hf 0.1.0 wrote (``tests/fixtures/checkpoints_0.1.0``, made by
``tests/fixtures/write_checkpoint_fixtures.py`` before the decode heads became modules and the backbones a
registry) load bit for bit, give the logits they gave then, and every model keeps its parameter names,
shapes and order (the trainer's saved optimizer state is indexed by that order)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints_0.1.0"
LAYOUTS = json.loads((FIXTURES / "layouts.json").read_text())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_parameter_names_shapes_and_order_are_those_of_0_1_0(name):
    expected = LAYOUTS[name]
    model = SRHAForSemanticSegmentation(SRHAConfig(**expected["config"]))
    assert [[n, list(p.shape)] for n, p in model.named_parameters()] == expected["parameters"]
    assert [[n, list(b.shape)] for n, b in model.named_buffers()] == expected["buffers"]


@pytest.mark.parametrize("folder", ["deeplab_shufflenetv2", "m2f_shufflenetv2"])
def test_saved_checkpoint_loads_bit_for_bit(folder):
    path = FIXTURES / folder
    saved = load_file(str(path / "model.safetensors"))
    model = SRHAForSemanticSegmentation.from_pretrained(path).eval()
    state = model.state_dict()
    assert sorted(saved) == sorted(k for k in state if not k.endswith("num_batches_tracked") or k in saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    expected = load_file(str(path / "expected.safetensors"))
    with torch.no_grad():
        logits = model(expected["pixel_values"]).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-5)
