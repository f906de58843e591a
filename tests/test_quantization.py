"""srha-export-onnx --quantize int8 (ONNX Runtime's static and dynamic quantisation), the record it leaves
in the file, the int8 model through srha-predict and srha-evaluate, and the errors of its flags."""

import json
import sys

import numpy as np
import pytest
import torch
from eval_helpers import write_model_and_benchmark
from interop_helpers import assert_one_error, random_image, run_tool, save_model, tool_errors

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from srha_hf.quantization import CalibrationError, calibration_images, quantization_record, quantize_onnx  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random ShuffleNetV2 model, its float ONNX export and 6 calibration images (two sizes)."""
    from srha_hf.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("quant")
    model = save_model(root / "model", "shufflenetv2", seed=5)
    export_onnx(model, root / "fp32.onnx", trace_size=(64, 96), check=False)
    for i in range(6):
        random_image(root / "calib" / f"{i:02d}.png", 72 if i % 2 else 64, 96, seed=i)
    return root, model


def ops(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.integration
def test_static_int8_export_records_and_predicts(exported, tmp_path, capsys):
    root, model = exported
    out = tmp_path / "int8.onnx"
    argv = ["--model", root / "model", "--output", out, "--quantize", "int8", "--calibration", root / "calib",
            "--num_calibration", "5", "--no_progress", "--trace_size", "64", "96", "--check_size", "72", "88", "--threads", "1"]  # fmt: skip
    status, stdout, _ = run_tool("export_onnx", argv, capsys)
    assert status == 0
    report = json.loads(stdout)
    assert report["float"]["max_abs_diff"] < 1e-4  # the float export was checked against PyTorch first
    record = report["quantization"]
    assert record["mode"] == "static" and record["format"] == "QDQ" and record["calibration_images"] == 5
    assert record["calibration_method"] == "minmax" and record["per_channel"] and record["weight_type"] == "int8"
    assert quantization_record(out) == record  # the file says how it was made
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["id2label"])["0"] == "road" and json.loads(meta["config"])["backbone"] == "shufflenetv2"
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(out)
    assert report["size_mb"] < 0.5 * (root / "fp32.onnx").stat().st_size / 2**20  # int8 weights
    compared = report["against_float"]
    assert compared["inputs"] == "images" and len(compared["checks"]) == 4  # the first 4 calibration images
    assert 0.0 <= compared["pixel_agreement"] <= 1.0 and compared["checks"][0]["shape"] == [1, 3, 64, 96]

    from srha_hf.segmenters import load_segmenter

    segmenter = load_segmenter(out, device="cpu")
    x = torch.randn(1, 3, 80, 120, generator=torch.Generator().manual_seed(0))  # any size
    assert segmenter.predict(x, (80, 120)).shape == (1, 80, 120)


@pytest.mark.integration
def test_quantize_an_existing_float_file_and_refuse_twice(exported, tmp_path, capsys):
    root, _ = exported
    out = tmp_path / "int8.onnx"
    argv = ["--model", root / "fp32.onnx", "--output", out, "--quantize", "int8", "--calibration", root / "calib"]
    status, stdout, _ = run_tool("export_onnx", argv, capsys)
    assert status == 0 and json.loads(stdout)["float"] == {"model": str(root / "fp32.onnx")}
    with pytest.raises(ValueError, match="already quantised"):
        quantize_onnx(out, tmp_path / "again.onnx", mode="dynamic")
    assert not (tmp_path / "again.onnx").exists()


@pytest.mark.integration
def test_dynamic_int8_without_images(exported, tmp_path, capsys):
    root, _ = exported
    out = tmp_path / "dyn.onnx"
    status, stdout, err = run_tool("export_onnx", ["--model", root / "fp32.onnx", "--output", out, "--quantize", "int8"], capsys)
    assert status == 0 and any("dynamic quantisation" in line for line in err)
    report = json.loads(stdout)
    assert report["quantization"]["mode"] == "dynamic" and "calibration_images" not in report["quantization"]
    assert report["against_float"]["inputs"] == "random"
    assert "DynamicQuantizeLinear" in ops(out) and quantization_record(out)["mode"] == "dynamic"


def test_calibration_images_order_and_errors(tmp_path):
    for name in ("b.png", "a.jpg", "sub/c.png"):
        random_image(tmp_path / "calib" / name, 8, 8, 0)
    (tmp_path / "calib" / "notes.txt").write_text("not an image")
    assert [p.name for p in calibration_images(tmp_path / "calib", 2)] == ["a.jpg", "b.png"]
    assert [p.name for p in calibration_images(tmp_path / "calib", None)] == ["a.jpg", "b.png", "c.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no images found"):
        calibration_images(tmp_path / "empty")
    with pytest.raises(CalibrationError, match="not a folder"):
        calibration_images(tmp_path / "none")


def test_quantize_option_errors(exported, tmp_path, capsys, monkeypatch):
    root, _ = exported
    base = ["--model", root / "fp32.onnx", "--output", tmp_path / "q.onnx"]
    assert_one_error(*tool_errors("export_onnx", base + ["--quantize", "int8", "--quantize_mode", "static"], capsys), "--calibration DIR")
    assert_one_error(*tool_errors("export_onnx", base + ["--calibration", root / "calib"], capsys), "--quantize int8")
    assert_one_error(*tool_errors("export_onnx", base + ["--quantize", "int8", "--calibration", tmp_path / "nope"], capsys), "nope", "not a folder")
    assert_one_error(*tool_errors("export_onnx", ["--model", root / "fp32.onnx", "--output", tmp_path / "x.onnx"], capsys), "already an ONNX file")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    assert_one_error(*tool_errors("export_onnx", base + ["--quantize", "int8", "--calibration", tmp_path / "bad"], capsys), "broken.png")
    import srha_hf.onnx_export

    def no_export(*args, **kwargs):
        raise AssertionError("exported before the calibration images were checked")

    monkeypatch.setattr(srha_hf.onnx_export, "export_onnx", no_export)  # from a model folder: found before the export
    argv = ["--model", root / "model", "--output", tmp_path / "q.onnx", "--quantize", "int8", "--calibration", tmp_path / "bad"]
    assert_one_error(*tool_errors("export_onnx", argv, capsys), "broken.png")
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "x.onnx").exists()


def test_missing_onnxruntime_is_named(exported, tmp_path, capsys, monkeypatch):
    root, _ = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    argv = ["--model", root / "model", "--output", tmp_path / "q.onnx", "--quantize", "int8", "--no_check"]
    assert_one_error(*tool_errors("export_onnx", argv, capsys), "onnxruntime")


@pytest.mark.integration
def test_evaluate_runs_onnx_files_like_the_model(tmp_path, capsys):
    """srha-evaluate --model file.onnx: the float export scores what the PyTorch model scores."""
    from srha_hf.onnx_export import export_onnx
    from srha_hf.segmenters import load_segmenter

    write_model_and_benchmark(tmp_path)
    export_onnx(load_segmenter(tmp_path / "model", device="cpu").model, tmp_path / "model.onnx",
                processor=load_segmenter(tmp_path / "model", device="cpu").processor, check=False)  # fmt: skip
    scores = {}
    for name, model in (("torch", tmp_path / "model"), ("onnx", tmp_path / "model.onnx")):
        argv = ["--model", model, "--dataset", "cityscapes", "--data_root", tmp_path / "data", "--synthetic_size", "96", "64",
                "--output_json", tmp_path / f"{name}.json", "--no_progress"]  # fmt: skip
        assert run_tool("evaluate", argv, capsys)[0] == 0
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    a, b = (scores[k]["results"]["cityscapes"] if "results" in scores[k] else scores[k]["cityscapes"] for k in ("torch", "onnx"))
    confusion_a, confusion_b = np.array(a["confusion_matrix"]), np.array(b["confusion_matrix"])
    assert confusion_a.sum() == confusion_b.sum() > 0
    assert np.abs(confusion_a - confusion_b).sum() <= 2 * 1e-4 * confusion_a.sum()  # float32 ties at most
    assert abs(a["mean_iou"] - b["mean_iou"]) < 1e-3
    assert scores["onnx"]["backend"] == "onnxruntime" and scores["onnx"]["quantization"] is None  # a float file
    assert "backend" not in scores["torch"]

    quantize_onnx(tmp_path / "model.onnx", tmp_path / "int8.onnx", mode="dynamic")
    argv = ["--model", tmp_path / "int8.onnx", "--dataset", "cityscapes", "--data_root", tmp_path / "data",
            "--synthetic_size", "96", "64", "--output_json", tmp_path / "int8.json", "--no_progress"]  # fmt: skip
    assert run_tool("evaluate", argv, capsys)[0] == 0
    assert json.loads((tmp_path / "int8.json").read_text())["quantization"]["mode"] == "dynamic"  # the results say what ran


@pytest.mark.integration
def test_quantizing_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference fails on Lite0's padding and leaves its model (a 55 MB
    external-data file per run) in the working directory; the quantiser runs it inside its own temp folder."""
    from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
    from srha_hf.onnx_export import export_onnx

    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="efficientnet_lite0", backbone_pretrained=None)).eval()
    export_onnx(model, tmp_path / "lite0.onnx", trace_size=(64, 64), check=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    record = quantize_onnx(tmp_path / "lite0.onnx", tmp_path / "lite0_int8.onnx", mode="dynamic")
    assert "symbolic inference failed" in record["preprocessing"]  # the case that used to leave files behind
    assert sorted(p.name for p in (tmp_path / "cwd").iterdir()) == []
    assert quantization_record(tmp_path / "lite0_int8.onnx")["mode"] == "dynamic"
