"""scripts/export_onnx.py: dynamic height/width, parity with PyTorch under onnxruntime (CPU)."""

import json

import numpy as np
import pytest
import torch
from interop_helpers import load_script, predicted_masks, save_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from srha_hf.onnx_export import export_onnx  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx") / "model"
    return folder, save_model(folder, "shufflenetv2", seed=7)


def ort_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixel_values": x.numpy()})[0]


@pytest.mark.integration
def test_script_export_and_parity_at_two_sizes(saved, tmp_path, capsys):
    folder, model = saved
    out = tmp_path / "export" / "model.onnx"
    assert load_script("export_onnx").main(["--model", str(folder), "--output", str(out), "--trace_size", "64", "64",
                                            "--check_size", "72", "88", "--threads", "1"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] < 1e-4 and report["checks"][0]["shape"] == [2, 3, 72, 88]  # the last check size runs at batch 2

    proto = onnx.load(str(out))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["id2label"])["0"] == "road" and meta["backbone"] == "shufflenetv2"

    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 64, 96), (2, 3, 90, 120)]:  # neither is the traced size
        x = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            expected = model(pixel_values=x).logits.numpy()
        got = ort_logits(out, x)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.integration
def test_mobilenetv2_export_and_onnx_predictions(saved, tmp_path):
    """Another backbone (MobileNetV2: stride-2 layer0, D16 dilation) through the API, and
    scripts/predict.py with the .onnx file gives the PyTorch masks."""
    torch.manual_seed(0)
    folder = tmp_path / "mnv2"
    model = save_model(folder, "mobilenetv2", seed=8)
    report = export_onnx(model, tmp_path / "mnv2.onnx", trace_size=(64, 64), check_sizes=[(56, 80), (96, 72)], threads=1)
    assert report["max_abs_diff"] < 1e-4 and len(report["checks"]) == 2

    masks = predicted_masks(tmp_path, {"torch": folder, "onnx": tmp_path / "mnv2.onnx"}, 64, 96)
    assert masks["torch"].shape == masks["onnx"].shape == (64, 96) and (masks["torch"] != masks["onnx"]).mean() < 1e-3
    summary = json.loads((tmp_path / "onnx" / "summary.json").read_text())
    assert summary["backend"] == "onnxruntime"
