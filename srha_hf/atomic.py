"""Atomic file and folder writes: nothing half-written is ever left where a reader looks.

Every output of the library (reports, charts, masks, caches, checkpoints, model folders, ONNX files) is
first written under a temporary name in the destination's own folder and then renamed into place with
``os.replace`` (atomic on one file system). Files get the usual permissions (``0o666`` less the
process's umask), not the private ``0o600`` of ``tempfile.mkstemp``.

The one exception is ``srha_hf/metrics/mean_iou.py``: ``evaluate.load`` runs it as a standalone script,
so it cannot import this module and keeps its own two-line rename.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_write", "current_umask", "json_safe", "publish_dir", "write_json_atomic", "write_text_atomic"]


def current_umask() -> int:
    """The process's umask, read without changing it where ``/proc`` allows (``os.umask`` can only be
    read by setting it, which is not safe while other threads create files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], None]) -> str:
    """Call ``write(tmp_path)`` for a temporary file next to ``path`` (same extension, so writers that
    pick the format from the name work), then rename it onto ``path``; returns ``path`` as a string. On
    any error the temporary file is removed and the error re-raised; ``path`` is untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def write_text_atomic(path: PathLike, text: str) -> str:
    """A UTF-8 text file, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def json_safe(value):
    """``value`` made strict-JSON-ready: NaN and infinities -> None, numpy scalars and arrays -> Python
    numbers and lists, mapping keys -> strings (recursively)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (np.generic, np.ndarray)):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: PathLike, data, *, strict: bool = False, **dump_kwargs) -> str:
    """``json.dumps(data, **dump_kwargs)`` (default ``indent=2, sort_keys=True``) as a file, atomically.
    ``strict=True`` first applies :func:`json_safe` (NaN written as null) and refuses any value JSON
    cannot hold; the text then ends with a newline."""
    options = {"indent": 2, "sort_keys": True, **dump_kwargs}
    if strict:
        return write_text_atomic(path, json.dumps(json_safe(data), allow_nan=False, **options) + "\n")
    return write_text_atomic(path, json.dumps(data, **options))


def publish_dir(tmp: PathLike, final: PathLike) -> Path:
    """Move the complete folder ``tmp`` onto ``final`` (same parent folder). An existing ``final`` is first
    moved aside and deleted only once the new one is in place, so a crash leaves either the old or the new
    folder, never a mixture and never neither."""
    tmp, final = Path(tmp), Path(final)
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp folders are private (0o700)
    if not final.exists():
        os.replace(tmp, final)
        return final
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    os.replace(final, old / "previous")
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
