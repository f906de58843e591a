"""Checkpoints that lose nothing: written to a temporary folder and renamed into place, pruned beyond a
limit, found again by ``latest``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

from ..atomic import publish_dir, write_json_atomic  # noqa: F401 - write_json_atomic is re-exported

STATE_FILE = "trainer_state.json"
_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir) -> list:
    """Complete checkpoints under ``output_dir``, oldest first (temporary folders are ignored)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _PATTERN.match(path.name)
        if m and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


def resolve_checkpoint(output_dir, value: Optional[str]) -> Optional[Path]:
    """``None`` → ``None``; ``"latest"`` → the newest complete checkpoint or ``None``; a path → that
    checkpoint (an error naming it if it is not a complete checkpoint)."""
    if value is None:
        return None
    if value == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(value)
    if not (path / STATE_FILE).is_file():
        if not path.exists():
            what = "does not exist"
        elif not path.is_dir():
            what = "is a file, not a checkpoint folder"
        elif (path / "config.json").is_file():
            what = "is a model folder (save_pretrained: config and weights only), not a training checkpoint"
        else:
            what = f"is not a training checkpoint (no {STATE_FILE})"
        raise FileNotFoundError(
            f"resume_from_checkpoint={value!r}: {path} {what}; a resumable checkpoint is a checkpoint-<step> folder that "
            f"training writes under output_dir, holding {STATE_FILE} beside Accelerate's saved model, optimizer and "
            "random states (or pass 'latest')"
        )
    return path


def save_checkpoint(accelerator, output_dir, step: int, state: dict, limit: Optional[int] = None) -> Path:
    """Save Accelerate's state (model, optimizer, RNG, registered objects) and ``state`` (step, epoch,
    position in the epoch, config) as ``output_dir/checkpoint-<step>``. Every process must call it.

    The files go to ``.checkpoint-<step>.tmp`` first; the main process renames the complete folder
    into place, so a crash mid-save never leaves a half-written ``checkpoint-<step>``. Then the oldest
    checkpoints beyond ``limit`` are deleted."""
    root = Path(output_dir)
    final = root / f"checkpoint-{step}"
    tmp = root / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / STATE_FILE, state)
        publish_dir(tmp, final)
        if limit is not None and limit > 0:
            for old in list_checkpoints(root)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path) -> dict:
    """Restore Accelerate's state from ``path`` and return the saved trainer state."""
    accelerator.load_state(str(path))
    return json.loads((Path(path) / STATE_FILE).read_text())
