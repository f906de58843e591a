"""scripts/evaluate.py: one process, `accelerate launch`, `torchrun --nproc_per_node 2`; outputs; errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from eval_helpers import REPO, SYNTH, check, child_env, torchrun, write_model_and_benchmark
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

DATASETS = ["cityscapes", "mapillary"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return write_model_and_benchmark(tmp_path_factory.mktemp("eval_script"))


def script_args(root, out, *extra):
    return ["--model", root / "model", "--dataset", *DATASETS, "--data_root", root / "data", "--split", "val",
            "--output_json", out, "--synthetic_size", *SYNTH["size"], "--no_progress", *extra]  # fmt: skip


@pytest.mark.integration
def test_one_process_outputs(setup, script, tmp_path, capsys):
    out = tmp_path / "run" / "results.json"
    assert script.main([str(a) for a in script_args(setup, out, "--num_overlays", "2")]) == 0
    printed = capsys.readouterr().out
    assert "### cityscapes: mIoU" in printed and "| 0 | road |" in printed and "mIoU: cityscapes" in printed
    saved = json.loads(out.read_text())
    assert set(saved["mean_iou"]) == set(DATASETS) and saved["num_processes"] == 1 and saved["split"] == "val"
    for name in DATASETS:
        result = saved["results"][name]
        assert saved["mean_iou"][name] == result["mean_iou"]
        assert list(result["per_category_iou"])[:2] == ["road", "sidewalk"] and len(result["per_category_iou"]) == 19
        assert np.array(result["confusion_matrix"]).shape == (19, 19) and result["num_images"] == SYNTH["num_val"]
        files = saved["files"][name]
        for key in ("per_class_iou_png", "confusion_matrix_png"):
            with Image.open(files[key]) as png:
                assert png.format == "PNG"
        assert len(files["overlays_png"]) == 2 and all((out.parent / f"{name}_overlay_{k}.png").is_file() for k in range(2))
    assert not list(out.parent.glob("*.tmp*"))  # atomic writes leave no temporary files


@pytest.mark.slow  # a subprocess / torchrun test
def test_torchrun_two_processes_equal_accelerate_launch_one(setup, tmp_path):
    """Odd split (5 images): the 2-process run's summed confusion matrices equal the 1-process run's."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "scripts/evaluate.py"]  # fmt: skip
    check(subprocess.run([*launch, *map(str, script_args(setup, one, "--num_overlays", "0"))],
                         cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=240))  # fmt: skip
    proc = check(torchrun(["scripts/evaluate.py", *script_args(setup, two, "--num_overlays", "1")]))
    assert proc.stdout.count("mIoU: cityscapes") == 1  # only the main process reports
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["num_processes"], b["num_processes"]) == (1, 2)
    for name in DATASETS:
        ra, rb = a["results"][name], b["results"][name]
        assert ra["num_images"] == rb["num_images"] == SYNTH["num_val"]
        assert ra["confusion_matrix"] == rb["confusion_matrix"]
        assert ra["per_category_iou"] == rb["per_category_iou"] and ra["mean_iou"] == rb["mean_iou"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--model": "{root}/no_such_model"}, "--model .*no_such_model: directory not found"),
        ({"--model": "{root}/data"}, "no config.json in this directory"),
        ({"--data_root": "{root}/no_such_data"}, "dataset cityscapes: root folder not found: .*no_such_data"),
        ({"--data_root": "{root}/data/bdd100k"}, "dataset cityscapes \\(val\\) at .*bdd100k"),
        ({"--split": "test"}, "no images|not found|unknown split"),
    ],
)
def test_missing_model_or_dataset_fails_before_any_work(setup, script, tmp_path, capsys, change, message):
    out = tmp_path / "never.json"
    args = [str(a) for a in script_args(setup, out)]
    for flag, value in change.items():
        args[args.index(flag) + 1] = value.format(root=setup)
    assert script.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unknown_dataset_name(setup, script, tmp_path, capsys):
    args = [str(a) for a in script_args(setup, tmp_path / "x.json")]
    args[args.index("mapillary")] = "kitti"
    assert script.main(args) == 2
    assert "--dataset kitti: unknown benchmark 'kitti'" in capsys.readouterr().err
