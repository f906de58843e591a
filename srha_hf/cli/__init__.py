"""The command-line tools, installed as console scripts with the package (``setup.cfg``) and kept as
``scripts/*.py`` for a checkout:

| tool | module | what it does |
|---|---|---|
| ``srha-train`` | :mod:`srha_hf.cli.train` | train a recipe (``accelerate launch -m srha_hf.cli.train --config ...`` on several GPUs) |
| ``srha-evaluate`` | :mod:`srha_hf.cli.evaluate` | evaluate a model on target domains under a protocol |
| ``srha-predict`` | :mod:`srha_hf.cli.predict` | masks, colour masks and overlays for image files |
| ``srha-convert`` | :mod:`srha_hf.cli.convert_original_checkpoint` | the authors' checkpoints to model folders |
| ``srha-export-onnx`` | :mod:`srha_hf.cli.export_onnx` | ONNX export checked against PyTorch |
| ``srha-check-data`` | :mod:`srha_hf.cli.check_data` | check a benchmark on disk |
| ``srha-app`` | :mod:`srha_hf.cli.app` | the Gradio browser demo |
| ``srha-make-synthetic-data`` | :mod:`srha_hf.cli.make_synthetic_data` | write the embedded synthetic benchmark |

Each module's ``main(argv=None)`` returns the exit status.

A bad argument, file or folder ends as one line on stderr, ``error: <what> ...: <what was expected>``, and
a non-zero status, before anything is written: the helpers below are what the tools share for it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

__all__ = ["ArgumentParser", "UsageError", "check_output", "fail", "one_line"]


class UsageError(Exception):
    """A bad argument, file or folder: reported as one ``error:`` line before any work starts."""


def one_line(problem) -> str:
    """``problem`` (an exception or a message) as one line: its lines joined by spaces."""
    return " ".join(line.strip() for line in str(problem).splitlines() if line.strip())


def fail(problem, status: int = 2) -> int:
    """Print ``error: <problem>`` as one line on stderr and return ``status`` (the tool's exit status)."""
    print(f"error: {one_line(problem)}", file=sys.stderr, flush=True)
    return status


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors (a missing or malformed option) are one ``error:`` line too, with
    exit status 2 as argparse's (instead of the usage text followed by ``prog: error: ...``)."""

    def error(self, message):
        self.exit(2, f"error: {one_line(message)} (see {self.prog} --help)\n")


def check_output(path, name: str, *, folder: bool = False) -> None:
    """Raise :class:`UsageError` unless the output ``path`` (a file, or a ``folder``) can be written:
    an existing path must be of that kind, and the nearest existing folder above it must be a folder
    that takes new files (tried with a temporary file, deleted at once). Missing folders in between
    are fine: the tools create them. ``name`` is the option or key that gave the path."""
    target = Path(path).expanduser()
    kind = "folder" if folder else "file"
    if target.is_dir() != folder and target.exists():
        raise UsageError(f"{name} {path}: exists and is not a {kind}")
    parent = target if target.is_dir() else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{name} {path}: {parent} is not a folder, so the output {kind} cannot be written there")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise UsageError(f"{name} {path}: cannot write in {parent} ({exc.strerror or exc})") from None
