"""Scripts loaded into one process (as the tests do) never leave scripts/ on sys.path, where
scripts/evaluate.py would shadow the `evaluate` library that srha_hf.metrics imports."""

import sys
from pathlib import Path

from interop_helpers import REPO, load_script


def test_loading_several_scripts_keeps_scripts_off_sys_path():
    scripts = (REPO / "scripts").resolve()
    for name in ("predict", "export_onnx", "check_data", "convert_original_checkpoint"):
        load_script(name)
        assert scripts not in {Path(p or ".").resolve() for p in sys.path}, name
    import evaluate

    assert hasattr(evaluate, "Metric"), evaluate.__file__  # the library, not scripts/evaluate.py
