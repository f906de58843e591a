"""Imported first by every script here: it drops this folder from ``sys.path`` (``scripts/evaluate.py``
would otherwise shadow the ``evaluate`` package that ``srha_hf.metrics`` imports) and puts the
repository root first, so that ``srha_hf`` imports without an install."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def set_up() -> None:
    """Drop this folder from ``sys.path`` and put the repository root first. Every script calls it
    after ``import _bootstrap``: the import runs it only once per process, but a process that loads
    several scripts (the tests do) puts this folder back on ``sys.path`` for each of them."""
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != HERE]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


set_up()
