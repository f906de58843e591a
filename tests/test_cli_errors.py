"""Every tool of srha_hf/cli turns a bad value, file or folder into one ``error:`` line on stderr naming it,
a non-zero exit status and no output left behind; never a traceback."""

from pathlib import Path

import pytest
import torch
from interop_helpers import assert_one_error
from interop_helpers import tool_errors as run  # (exit status, the stderr lines) of a tool run in-process

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.data.synthetic import make_synthetic_benchmark

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model folder, the same with a truncated model.safetensors, with a config.json that is not
    JSON and without config.json; a synthetic benchmark; a plain file to put outputs "inside"."""
    root = tmp_path_factory.mktemp("cli_errors")
    torch.manual_seed(0)
    SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", backbone_pretrained=None)).save_pretrained(root / "model")
    for name in ("truncated", "bad_json"):
        (root / name).mkdir()
        for source in (root / "model").iterdir():
            (root / name / source.name).write_bytes(source.read_bytes())
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (root / "bad_json" / "config.json").write_text("{not json")
    (root / "no_config").mkdir()
    make_synthetic_benchmark(root / "data", num_train=2, num_val=1, size=(160, 88))
    (root / "a_file").write_text("not a folder")
    (root / "list.yaml").write_text("- backbone\n- resnet50\n")
    (root / "broken.yaml").write_text("backbone: [resnet50\n")
    (root / "tiny.yaml").write_text("synthetic_data: true\nbackbone: shufflenetv2\nbackbone_pretrained: null\nreport_to: none\n")
    return root


MODEL_CASES = {
    "missing": ("missing",),
    "no_config": ("no_config", "config.json"),
    "bad_json": ("bad_json/config.json", "not a valid JSON"),
    "truncated": ("truncated/model.safetensors", "truncated"),
}


def model_path(files, case):
    return files / ("no_such_model" if case == "missing" else case)


def needles(files, case):
    path, *rest = MODEL_CASES[case]
    return (files / path if case != "missing" else files / "no_such_model", *rest)


# ---- srha-train ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--backbone", "resnet51"], ["backbone", "resnet51", "resnet50, resnet101"]),
        (["--decode_head", "mask3former"], ["--decode_head", "--model_kwargs"]),
        (["--model_kwargs", "{decode_head: mask3former}"], ["decode_head='mask3former'", "deeplabv3plus"]),
        (["--lr", "abc"], ["lr", "'abc'"]),
        (["--max_iter", "-5"], ["max_iter", "-5"]),
        (["--crop_size", "1.5"], ["crop_size", "1.5"]),
    ],
)
def test_train_bad_values(files, tmp_path, capsys, extra, names):
    out = tmp_path / "run"
    argv = ["--config", files / "tiny.yaml", "--output_dir", out, "--synthetic_root", tmp_path / "syn", *extra]
    assert_one_error(*run("train", argv, capsys), *names)
    assert not list(tmp_path.iterdir())  # no run folder, no synthetic data


def test_train_user_case_with_the_demo_recipe(tmp_path, capsys):
    argv = ["--config", REPO / "configs" / "demo.yaml", "--backbone", "resnet51", "--output_dir", tmp_path / "run",
            "--synthetic_root", tmp_path / "syn"]  # fmt: skip
    assert_one_error(*run("train", argv, capsys), "backbone='resnet51'", "efficientnet_lite0")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("config", ["missing.yaml", "list.yaml", "broken.yaml"])
def test_train_bad_config_file(files, tmp_path, capsys, config):
    assert_one_error(*run("train", ["--config", files / config, "--output_dir", tmp_path / "run"], capsys), files / config)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("checkpoint, names", [("model", ["model folder", "trainer_state.json"]), ("nowhere", ["does not exist"])])
def test_train_resume_from_a_folder_that_is_not_a_checkpoint(files, tmp_path, capsys, checkpoint, names):
    argv = ["--config", files / "tiny.yaml", "--output_dir", tmp_path / "run", "--synthetic_root", tmp_path / "syn",
            "--resume_from_checkpoint", files / checkpoint]  # fmt: skip
    assert_one_error(*run("train", argv, capsys), files / checkpoint, *names)
    assert not list(tmp_path.iterdir())


def test_train_missing_data_root_and_unwritable_output(files, tmp_path, capsys):
    argv = ["--config", files / "tiny.yaml", "--synthetic_data", "false", "--gtav_root", tmp_path / "no_gtav",
            "--val_datasets", "gtav", "--output_dir", tmp_path / "run"]  # fmt: skip
    assert_one_error(*run("train", argv, capsys), "gtav_root", tmp_path / "no_gtav")
    inside = files / "a_file" / "run"
    argv = ["--config", files / "tiny.yaml", "--output_dir", inside, "--synthetic_root", tmp_path / "syn"]
    assert_one_error(*run("train", argv, capsys), "output_dir", inside)
    assert not list(tmp_path.iterdir())


# ---- srha-evaluate ---------------------------------------------------------------------------------


def evaluate_argv(files, out, model=None, data=None):
    return ["--model", model or files / "model", "--dataset", "cityscapes", "--data_root", data or files / "data",
            "--output_json", out, "--synthetic_size", "160", "88", "--cpu", "--no_progress"]  # fmt: skip


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_evaluate_bad_model(files, tmp_path, capsys, case):
    argv = evaluate_argv(files, tmp_path / "eval" / "out.json", model=model_path(files, case))
    assert_one_error(*run("evaluate", argv, capsys), *needles(files, case))
    assert not list(tmp_path.iterdir())


def test_evaluate_bad_data_root_and_output(files, tmp_path, capsys):
    argv = evaluate_argv(files, tmp_path / "eval" / "out.json", data=tmp_path / "no_data")
    assert_one_error(*run("evaluate", argv, capsys), tmp_path / "no_data")
    inside = files / "a_file" / "out.json"
    assert_one_error(*run("evaluate", evaluate_argv(files, inside), capsys), "--output_json", inside)
    argv = evaluate_argv(files, tmp_path / "eval" / "out.json") + ["--save_predictions", files / "a_file"]
    assert_one_error(*run("evaluate", argv, capsys), "--save_predictions", files / "a_file")
    assert not list(tmp_path.iterdir())


# ---- srha-predict, srha-export-onnx, srha-app -------------------------------------------------------------


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_predict_bad_model(files, tmp_path, capsys, case):
    argv = ["--model", model_path(files, case), "--input", files / "data" / "cityscapes", "--output", tmp_path / "out", "--no_progress"]
    assert_one_error(*run("predict", argv, capsys), *needles(files, case))
    assert not list(tmp_path.iterdir())


def test_predict_bad_input_output_and_value(files, tmp_path, capsys):
    base = ["--model", files / "model", "--no_progress"]
    argv = base + ["--input", tmp_path / "no_images", "--output", tmp_path / "out"]
    assert_one_error(*run("predict", argv, capsys), tmp_path / "no_images")
    inside = files / "a_file" / "out"
    assert_one_error(*run("predict", base + ["--input", files / "data", "--output", inside], capsys), "--output", inside)
    argv = base + ["--input", files / "data", "--output", tmp_path / "out", "--batch_size", "two"]
    assert_one_error(*run("predict", argv, capsys), "--batch_size", "'two'")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_export_onnx_bad_model(files, tmp_path, capsys, case):
    pytest.importorskip("onnxruntime")
    argv = ["--model", model_path(files, case), "--output", tmp_path / "model.onnx"]
    assert_one_error(*run("export_onnx", argv, capsys), *needles(files, case))
    assert not list(tmp_path.iterdir())


def test_export_onnx_unwritable_output(files, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    inside = files / "a_file" / "model.onnx"
    assert_one_error(*run("export_onnx", ["--model", files / "model", "--output", inside], capsys), "--output", inside)


@pytest.mark.parametrize("case", ["missing", "truncated"])
def test_app_bad_model(files, capsys, case):
    pytest.importorskip("gradio")
    assert_one_error(*run("app", ["--model", model_path(files, case), "--device", "cpu"], capsys), *needles(files, case))


# ---- srha-convert, srha-check-data, srha-make-synthetic-data -----------------------------------------------


def test_convert_bad_checkpoint_and_output(files, tmp_path, capsys):
    base = ["--arch", "shufflenetv2", "--no_progress"]
    argv = base + ["--checkpoint", tmp_path / "none.pth", "--output", tmp_path / "out"]
    assert_one_error(*run("convert_original_checkpoint", argv, capsys), tmp_path / "none.pth")
    argv = base + ["--checkpoint", files / "model", "--output", tmp_path / "out"]
    assert_one_error(*run("convert_original_checkpoint", argv, capsys), files / "model", ".pth")
    inside = files / "a_file" / "out"
    argv = base + ["--checkpoint", tmp_path / "none.pth", "--output", inside]
    assert_one_error(*run("convert_original_checkpoint", argv, capsys), "--output", inside)
    assert not list(tmp_path.iterdir())


def test_check_data_bad_root_and_json(files, tmp_path, capsys):
    assert_one_error(*run("check_data", [tmp_path / "no_gtav", "--dataset", "gtav"], capsys), tmp_path / "no_gtav", "expected layout")
    inside = files / "a_file" / "report.json"
    argv = [files / "data" / "gtav", "--dataset", "gtav", "--json", inside, "--no-progress"]
    assert_one_error(*run("check_data", argv, capsys), "--json", inside)
    assert_one_error(*run("check_data", [files / "data" / "gtav", "--dataset", "kitti"], capsys), "kitti")


def test_make_synthetic_data_bad_root_and_counts(files, tmp_path, capsys):
    inside = files / "a_file" / "synthetic"
    assert_one_error(*run("make_synthetic_data", [inside, "--num-train", "1", "--num-val", "1"], capsys), inside)
    assert_one_error(*run("make_synthetic_data", [tmp_path / "syn", "--num-train", "0"], capsys), "--num-train", "0")
    assert not list(tmp_path.iterdir())
