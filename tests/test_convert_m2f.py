"""scripts/convert_original_checkpoint.py --arch r50_m2f: the authors' ResNet-50 + Mask2Former checkpoints.

The checkpoint is built here in the authors' layout from a randomised project model, through this test's
own inverse of the mapping table (project name -> the authors' name, q / k / v concatenated back into the
packed ``in_proj`` tensors), written from the table and not from ``srha_hf.conversion.M2F_RULES``.
"""

import json
import re

import pytest
import torch
from interop_helpers import load_script
from safetensors.torch import load_file
from transformers import AutoModelForSemanticSegmentation

import srha_hf  # noqa: F401 - registers the Auto classes
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.conversion import CheckpointMismatchError, convert_original_checkpoint, guess_arch

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.integration]  # conftest.py: one intra-op thread; R50 + Mask2Former at full size

# project name after "mask2former." -> the authors' name after "m2f_decoder." (one row per table row)
_ENC, _DEC = r"pixel_decoder\.encoder\.layers\.(\d+)\.", r"transformer_module\.decoder\.layers\.(\d+)\."
INVERSE = [
    (r"pixel_decoder\.input_projections\.(\d)\.(\d)\.(\w+)", "pixel_decoder.input_proj.{}.{}.{}"),
    (r"pixel_decoder\.level_embed", "pixel_decoder.transformer.level_embed"),
    (_ENC + r"self_attn\.(\w+)\.(\w+)", "pixel_decoder.transformer.encoder.layers.{}.self_attn.{}.{}"),
    (_ENC + r"self_attn_layer_norm\.(\w+)", "pixel_decoder.transformer.encoder.layers.{}.norm1.{}"),
    (_ENC + r"fc1\.(\w+)", "pixel_decoder.transformer.encoder.layers.{}.linear1.{}"),
    (_ENC + r"fc2\.(\w+)", "pixel_decoder.transformer.encoder.layers.{}.linear2.{}"),
    (_ENC + r"final_layer_norm\.(\w+)", "pixel_decoder.transformer.encoder.layers.{}.norm2.{}"),
    (r"pixel_decoder\.mask_projection\.(\w+)", "pixel_decoder.mask_features.{}"),
    (r"pixel_decoder\.(adapter_\d|layer_\d)\.0\.weight", "pixel_decoder.{}.weight"),
    (r"pixel_decoder\.(adapter_\d|layer_\d)\.1\.(\w+)", "pixel_decoder.{}.norm.{}"),
    (_DEC + r"self_attn\.([qkv])_proj\.(\w+)", "QKV"),  # packed below
    (_DEC + r"self_attn\.out_proj\.(\w+)", "predictor.transformer_self_attention_layers.{}.self_attn.out_proj.{}"),
    (_DEC + r"self_attn_layer_norm\.(\w+)", "predictor.transformer_self_attention_layers.{}.norm.{}"),
    (_DEC + r"cross_attn\.(\w+(?:\.\w+)?)", "predictor.transformer_cross_attention_layers.{}.multihead_attn.{}"),
    (_DEC + r"cross_attn_layer_norm\.(\w+)", "predictor.transformer_cross_attention_layers.{}.norm.{}"),
    (_DEC + r"fc1\.(\w+)", "predictor.transformer_ffn_layers.{}.linear1.{}"),
    (_DEC + r"fc2\.(\w+)", "predictor.transformer_ffn_layers.{}.linear2.{}"),
    (_DEC + r"final_layer_norm\.(\w+)", "predictor.transformer_ffn_layers.{}.norm.{}"),
    (r"transformer_module\.decoder\.layernorm\.(\w+)", "predictor.decoder_norm.{}"),
    (r"transformer_module\.queries_features\.(\w+)", "predictor.query_feat.{}"),
    (r"transformer_module\.queries_embedder\.(\w+)", "predictor.query_embed.{}"),
    (r"transformer_module\.level_embed\.(\w+)", "predictor.level_embed.{}"),
    (r"transformer_module\.decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.(\w+)", "predictor.mask_embed.layers.{}.{}"),
    (r"class_predictor\.(\w+)", "predictor.class_embed.{}"),
]


def authors_m2f_state_dict(model_state):
    """The authors' DDP state dict for the project state dict ``model_state``."""
    out, packed = {}, {}
    for name, value in model_state.items():
        if not name.startswith("mask2former."):
            out[f"module.{name}"] = value.clone()  # the ResNet-50 stages keep their names
            continue
        rest = name[len("mask2former."):]
        hits = [(target, m) for pattern, target in INVERSE if (m := re.fullmatch(pattern, rest))]
        assert len(hits) == 1, (name, hits)
        target, m = hits[0]
        if target == "QKV":
            layer, part, kind = m.groups()
            packed.setdefault((layer, kind), {})[part] = value
        else:
            out["module.m2f_decoder." + target.format(*m.groups())] = value.clone()
    for (layer, kind), parts in packed.items():
        key = f"module.m2f_decoder.predictor.transformer_self_attention_layers.{layer}.self_attn.in_proj_{kind}"
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    out["module.criterion.empty_weight"] = torch.cat([torch.ones(19), torch.tensor([0.1])])
    return out


@pytest.fixture(scope="module")
def m2f_model():
    """An R50 + Mask2Former model where every tensor is distinct (so a misplaced one is caught)."""
    torch.manual_seed(5)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50", decode_head="mask2former", backbone_pretrained=None))
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(77)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def authors_ckpt(m2f_model):
    return {"state_dict": authors_m2f_state_dict(m2f_model.state_dict()), "epoch": 12, "mean_iu": 0.0,
            "command": "python -m torch.distributed.launch train_m2f.py --dataset gtav --val_dataset cityscapes"}  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return load_script("convert_original_checkpoint")


def test_the_authors_layout_has_the_documented_size(authors_ckpt, m2f_model):
    state = authors_ckpt["state_dict"]
    head = [k for k in state if k.startswith("module.m2f_decoder.")]
    assert len(head) == 304  # the mapping document: 304 reference head tensors ...
    assert sum(k.startswith("mask2former.") for k in m2f_model.state_dict()) == 340  # ... become 340 of ours
    assert guess_arch(state) == "r50_m2f"


def test_round_trip(tmp_path, script, capsys, authors_ckpt, m2f_model):
    ckpt = tmp_path / "last_None_epoch_12_mean-iu_0.00000.pth"
    torch.save(authors_ckpt, ckpt)
    out = tmp_path / "converted"
    assert script.main(["--checkpoint", str(ckpt), "--arch", "r50_m2f", "--output", str(out), "--no_progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decode_head"] == "mask2former" and report["backbone"] == "resnet50" and report["num_labels"] == 19
    assert report["epoch"] == 12
    notes = " | ".join(report["notes"])
    assert "mapped 304 m2f_decoder.* tensor(s) to 340 Mask2Former head tensor(s)" in notes
    assert "split 18 packed self-attention in_proj tensor(s)" in notes  # 9 layers x (weight, bias)
    assert "criterion.empty_weight" in notes
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]

    # every tensor where the table says: the saved weights are the project model's, tensor for tensor
    saved = load_file(out / "model.safetensors")
    reference = m2f_model.state_dict()
    assert set(saved) == set(reference)
    assert all(torch.equal(saved[k], reference[k]) for k in reference)
    # the q/k/v split explicitly: thirds of the packed projection, in the order q, k, v
    state = authors_ckpt["state_dict"]
    for layer in (0, 8):
        packed_w = state[f"module.m2f_decoder.predictor.transformer_self_attention_layers.{layer}.self_attn.in_proj_weight"]
        packed_b = state[f"module.m2f_decoder.predictor.transformer_self_attention_layers.{layer}.self_attn.in_proj_bias"]
        for i, part in enumerate("qkv"):
            prefix = f"mask2former.transformer_module.decoder.layers.{layer}.self_attn.{part}_proj."
            assert torch.equal(saved[prefix + "weight"], packed_w[256 * i : 256 * (i + 1)])
            assert torch.equal(saved[prefix + "bias"], packed_b[256 * i : 256 * (i + 1)])
    assert torch.equal(saved["mask2former.class_predictor.weight"], state["module.m2f_decoder.predictor.class_embed.weight"])

    # the converted folder gives the same eval logits as the weights loaded directly
    converted = AutoModelForSemanticSegmentation.from_pretrained(out).eval()
    assert converted.config.decode_head == "mask2former"
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, got = m2f_model(pixel_values=x).logits, converted(pixel_values=x).logits
    assert got.shape == expected.shape and got.shape[:2] == (1, 19)
    assert torch.equal(got, expected)
    card = (out / "README.md").read_text()
    assert "--arch r50_m2f" in card and "Mask2Former" in card and ckpt.name in card


def test_wrong_missing_and_misshaped_keys_are_refused(tmp_path, script, capsys, authors_ckpt):
    state = dict(authors_ckpt["state_dict"])
    del state["module.m2f_decoder.predictor.transformer_self_attention_layers.4.self_attn.in_proj_weight"]
    del state["module.m2f_decoder.pixel_decoder.transformer.encoder.layers.2.linear1.bias"]
    state["module.m2f_decoder.predictor.bogus_head.weight"] = torch.zeros(3)
    state["module.m2f_decoder.pixel_decoder.mask_features.weight"] = torch.zeros(256, 256, 3, 3)
    state["module.m2f_decoder.predictor.transformer_self_attention_layers.1.self_attn.in_proj_bias"] = torch.zeros(767)
    path = tmp_path / "bad.pth"
    torch.save({**authors_ckpt, "state_dict": state}, path)
    out = tmp_path / "out"
    assert script.main(["--checkpoint", str(path), "--arch", "r50_m2f", "--output", str(out), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "does not match the r50_m2f (resnet50, mask2former) model; conversion refused" in err
    assert "4 missing key(s)" in err and "1 unexpected key(s)" in err and "4 mis-shaped" in err
    for key in ("mask2former.transformer_module.decoder.layers.4.self_attn.q_proj.weight",
                "mask2former.transformer_module.decoder.layers.4.self_attn.v_proj.weight",
                "mask2former.pixel_decoder.encoder.layers.2.fc1.bias",
                "module.m2f_decoder.predictor.bogus_head.weight",
                "module.m2f_decoder.pixel_decoder.mask_features.weight: checkpoint (256, 256, 3, 3), model (256, 256, 1, 1)",
                "in_proj_bias[k]: checkpoint (767,), model (256,)"):  # fmt: skip
        assert key in err, key
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # nothing written, no temporary left

    with pytest.raises(CheckpointMismatchError) as info:
        convert_original_checkpoint(path, "r50_m2f", out, progress=False)
    assert info.value.unexpected == ["module.m2f_decoder.predictor.bogus_head.weight"]
    assert "mask2former.pixel_decoder.encoder.layers.2.fc1.bias" in info.value.missing


def test_the_wrong_arch_names_the_likely_one(tmp_path, script, capsys, authors_ckpt):
    path = tmp_path / "m2f.pth"
    torch.save(authors_ckpt, path)
    assert script.main(["--checkpoint", str(path), "--arch", "r50", "--output", str(tmp_path / "o"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "does not match the r50 (resnet50, deeplabv3plus) model" in err and "looks like --arch r50_m2f" in err
    assert not (tmp_path / "o").exists()
