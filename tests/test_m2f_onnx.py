"""Mask2Former at any input size: the shape-generic pixel decoder equals transformers' own forward bit for
bit (values and gradients), and the exported ONNX graph matches PyTorch at sizes it was not traced at
(docs/inference.md "Deploy")."""

import json

import numpy as np
import pytest
import torch
from interop_helpers import load_script, predicted_masks, save_model
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
)

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.heads.m2f_shapes import ShapeGenericDeformableAttention

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

# A slimmed head (same code paths as the paper's sizes); two encoder layers so that a layer's output feeds
# the next one's deformable attention.
TINY = dict(
    decode_head="mask2former", m2f_num_queries=12, m2f_hidden_dim=64, m2f_conv_dim=64, m2f_mask_dim=64,
    m2f_num_heads=4, m2f_dim_feedforward=64, m2f_decoder_layers=3, m2f_encoder_layers=2,
    m2f_encoder_feedforward_dim=64, m2f_train_num_points=64,
)  # fmt: skip


def _upstream_forward(decoder, features):
    """transformers' own Mask2FormerPixelDecoder.forward, with its own deformable attention, on ``decoder``."""
    attentions = [m for m in decoder.modules() if isinstance(m, ShapeGenericDeformableAttention)]
    assert attentions, "the decoder's attention was not re-classed"
    for module in attentions:
        module.__class__ = Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention
    try:
        return Mask2FormerPixelDecoder.forward(decoder, features, return_dict=True)
    finally:
        for module in attentions:
            module.__class__ = ShapeGenericDeformableAttention


def _loss_and_grads(output, inputs):
    loss = (output.mask_features * 0.5).square().sum() + sum(f.square().mean() for f in output.multi_scale_features)
    return loss, torch.autograd.grad(loss, inputs, allow_unused=True)


@pytest.mark.parametrize("misdeclared", [True, False])
def test_shape_generic_pixel_decoder_equals_upstream(misdeclared):
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained=None,
                                                   m2f_misdeclared_strides=misdeclared, **TINY)).train()  # fmt: skip
    decoder = model.decode_head.mask2former.pixel_decoder
    params = list(decoder.parameters())
    for batch, (h, w) in ((2, (4, 5)), (1, (7, 3))):  # res5 sizes; res2..res4 at the OS16 strides
        features = [torch.randn(batch, c, h * s, w * s, requires_grad=True) for c, s in zip(decoder.feature_channels, (4, 2, 1, 1))]
        ours = decoder(features)
        upstream = _upstream_forward(decoder, features)
        assert torch.equal(ours.mask_features, upstream.mask_features)
        assert len(ours.multi_scale_features) == len(upstream.multi_scale_features) == 3
        assert all(torch.equal(a, b) for a, b in zip(ours.multi_scale_features, upstream.multi_scale_features))
        loss_a, grads_a = _loss_and_grads(ours, features + params)
        loss_b, grads_b = _loss_and_grads(upstream, features + params)
        assert torch.equal(loss_a, loss_b)
        for a, b in zip(grads_a, grads_b):
            assert (a is None) == (b is None) and (a is None or torch.equal(a, b))


def test_deformable_attention_refuses_box_reference_points():
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained=None, **TINY)).eval()
    attention = next(m for m in model.modules() if isinstance(m, ShapeGenericDeformableAttention))
    hidden = torch.randn(1, 6, 64)
    with pytest.raises(ValueError, match="2-d, got 4"):
        attention(hidden, encoder_hidden_states=hidden, reference_points=torch.rand(1, 6, 3, 4), spatial_shapes_list=[(2, 1), (1, 2), (1, 1)])


@pytest.mark.integration
def test_mask2former_onnx_any_size_and_predict(tmp_path, capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    folder = tmp_path / "m2f"
    model = save_model(folder, "shufflenetv2", seed=3, backbone_pretrained=None, **TINY)
    out = tmp_path / "m2f.onnx"
    argv = ["--model", str(folder), "--output", str(out), "--trace_size", "128", "160",
            "--check_size", "96", "136", "--check_size", "150", "212", "--threads", "1"]  # fmt: skip
    assert load_script("export_onnx").main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["shape"] for c in report["checks"]] == [[1, 3, 96, 136], [2, 3, 150, 212]]
    assert report["max_abs_diff"] < 1e-4

    proto = onnx.load(str(out))
    ops = {node.op_type for node in proto.graph.node}
    assert "GridSample" in ops and proto.opset_import[0].version >= 16  # deformable attention with standard ops
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["config"])["decode_head"] == "mask2former"

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 200, 72, generator=torch.Generator().manual_seed(1))  # tall: neither traced nor checked
    with torch.inference_mode():
        expected = model(pixel_values=x).logits.numpy()
    got = session.run(None, {"pixel_values": x.numpy()})[0]
    assert got.shape == expected.shape == (1, 19, 200, 72)
    assert np.abs(got - expected).max() < 1e-4

    masks = predicted_masks(tmp_path, {"torch": folder, "onnx": out}, 90, 132)
    assert masks["torch"].shape == masks["onnx"].shape == (90, 132) and (masks["torch"] != masks["onnx"]).mean() < 1e-3

    from srha_hf.browser_demo import SegmentationDemo  # the Gradio page's model runner serves the .onnx too
    from srha_hf.inference import load_segmenter

    demo = SegmentationDemo({"m2f": load_segmenter(out, device="cpu")})
    result = demo.segment(tmp_path / "in" / "a.png")
    assert np.array_equal(result.mask, masks["onnx"]) and "(onnxruntime on cpu)" in result.status
