"""Import a script of ``benchmarks/`` as a module, for the tests of those scripts."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_module(name: str):
    """``benchmarks/<name>.py`` as a fresh module (with ``benchmarks/`` on ``sys.path`` while it imports
    its neighbours, ``_common`` and ``dg_ablation``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module
