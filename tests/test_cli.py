"""The command-line tools: installed as console scripts (setup.cfg), runnable as modules (``accelerate
launch -m srha_hf.cli.train``), and kept as scripts/*.py, which re-export the tool's names; running
scripts/evaluate.py leaves the `evaluate` library unshadowed."""

import configparser
import importlib
import subprocess
import sys

import pytest
from interop_helpers import REPO, load_script

TOOLS = {
    "srha-train": "train", "srha-evaluate": "evaluate", "srha-predict": "predict", "srha-convert": "convert_original_checkpoint",
    "srha-export-onnx": "export_onnx", "srha-check-data": "check_data", "srha-app": "app", "srha-make-synthetic-data": "make_synthetic_data",
}  # fmt: skip


def test_console_scripts_point_at_each_tools_main():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = [line.strip() for line in parser["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    declared = dict(line.replace(" ", "").split("=") for line in lines)
    assert declared == {tool: f"srha_hf.cli.{module}:main" for tool, module in TOOLS.items()}
    for target in declared.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


@pytest.mark.parametrize("module", sorted(set(TOOLS.values()) - {"app"}))  # app needs gradio, checked in test_app.py
def test_scripts_are_the_tools(module):
    script = load_script(module)
    tool = importlib.import_module(f"srha_hf.cli.{module}")
    assert script.main is tool.main
    assert (REPO / "scripts" / "_bootstrap.py").exists() is False


@pytest.mark.slow  # subprocesses
def test_evaluate_script_runs_without_shadowing_the_library_and_train_runs_as_a_module():
    probe = (
        "import runpy, sys; sys.argv = ['evaluate.py', '--help']\n"
        "try:\n    runpy.run_path(sys.argv_path, run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
        "import evaluate; print('library', hasattr(evaluate, 'Metric'), code)\n"
    ).replace("sys.argv_path", repr(str(REPO / "scripts" / "evaluate.py")))
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO / "scripts", capture_output=True, text=True, timeout=300)
    assert "library True 0" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "srha_hf.cli.train", "--bogus_key", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "unknown option --bogus_key" in run.stderr
