"""Which numeric precision a training run uses: the recipe's ``mixed_precision`` key, unless the
``accelerate launch`` line names one.

The reference trains and evaluates in fp32. ``accelerate launch`` hands a precision to the script through
the ``ACCELERATE_MIXED_PRECISION`` environment variable, but that variable holds the *merged* value: the
``--mixed_precision`` flag when given, otherwise the user's ``accelerate config`` default. A user whose
default is bf16 would silently train in bf16. So the recipe's key wins over the accelerate config, and
only an explicit ``--mixed_precision`` on the launch line wins over the recipe. The flag is found on the
command line of the ``accelerate launch`` process among this process's ancestors (``/proc`` on Linux);
where that cannot be read, a launch value that differs from the accelerate config file's is taken as a
flag.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

#: The values of the ``mixed_precision`` key (null aside): accelerate's names.
PRECISIONS = ("no", "fp16", "bf16", "fp8")
_FLAGS = ("--mixed_precision", "--mixed-precision")


def _is_accelerate_launch(argv: Sequence[str]) -> Optional[int]:
    """The index just after ``launch`` when ``argv`` is an ``accelerate launch`` command, else None."""
    for i, token in enumerate(argv):
        name = os.path.basename(token)
        if name == "accelerate-launch" or token == "accelerate.commands.launch":
            return i + 1
        if (name == "accelerate" or token == "accelerate.commands.accelerate_cli") and list(argv[i + 1 : i + 2]) == ["launch"]:
            return i + 2
    return None


def launch_flag(argv: Sequence[str]) -> Tuple[bool, Optional[str]]:
    """``(is an accelerate launch command, the value of its --mixed_precision flag or None)``. Only the
    launcher's own options count: tokens from the training script (the first ``*.py``) on are the
    script's (``scripts/train.py --mixed_precision bf16`` sets the recipe key instead)."""
    start = _is_accelerate_launch(argv)
    if start is None:
        return False, None
    tokens = list(argv[start:])
    end = next((i for i, t in enumerate(tokens) if t.endswith(".py")), len(tokens))
    tokens = tokens[:end]
    for i, token in enumerate(tokens):
        for flag in _FLAGS:
            if token == flag and i + 1 < len(tokens):
                return True, tokens[i + 1].lower()
            if token.startswith(flag + "="):
                return True, token.split("=", 1)[1].lower()
    return True, None


def _ancestor_command_lines(proc: Path = Path("/proc"), limit: int = 16, pid: Optional[int] = None) -> Optional[List[List[str]]]:
    """The argv of this process's ancestors (from ``pid``, default the parent), nearest first; None where
    ``/proc`` is not readable."""
    lines: List[List[str]] = []
    try:
        pid = os.getppid() if pid is None else pid
        for _ in range(limit):
            if pid <= 1:
                break
            raw = (proc / str(pid) / "cmdline").read_bytes()
            lines.append([part.decode(errors="replace") for part in raw.split(b"\0") if part])
            stat = (proc / str(pid) / "stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
    except (OSError, ValueError, IndexError):
        return lines or None
    return lines


def _accelerate_config_value() -> Optional[str]:
    """``mixed_precision`` of the accelerate config file a launch would read by default, if any."""
    try:
        from accelerate.commands.config.config_args import default_config_file, load_config_from_file

        if not os.path.isfile(default_config_file):
            return None
        value = getattr(load_config_from_file(default_config_file), "mixed_precision", None)
        return None if value is None else str(value).lower()
    except Exception:  # an unreadable config file is accelerate's problem to report, not ours
        return None


def resolve_mixed_precision(recipe_value: Optional[str], environ=None, command_lines=None) -> Tuple[Optional[str], str]:
    """``(value for Accelerator(mixed_precision=...), a sentence saying where the precision came from)``.

    The first is None when accelerate's own setting stands (the launch flag, or ``recipe_value`` None).
    ``command_lines``: the ancestors' argv (read from ``/proc`` when not given; tests pass their own)."""
    environ = os.environ if environ is None else environ
    launched = environ.get("ACCELERATE_MIXED_PRECISION")
    if command_lines is None:
        command_lines = _ancestor_command_lines()
    flag_value = None
    if command_lines is not None:
        for argv in command_lines:
            is_launch, value = launch_flag(argv)
            if is_launch:
                flag_value = value
                break
    elif launched is not None:  # no /proc: a value other than the config file's must be a flag
        if launched.lower() != (_accelerate_config_value() or "no"):
            flag_value = launched.lower()
    if flag_value is not None:
        return None, f"{flag_value} from --mixed_precision on the accelerate launch line"
    if recipe_value is None:
        where = "accelerate's setting" if launched is not None else "the default"
        return None, f"{(launched or 'no').lower()} from {where} (the recipe's mixed_precision is null)"
    note = ""
    if launched is not None and launched.lower() != recipe_value:
        note = f"; accelerate's setting {launched.lower()!r} is overridden (pass --mixed_precision to accelerate launch to choose)"
    return recipe_value, f"{recipe_value} from the recipe's mixed_precision key{note}"


def describe(mixed_precision: str) -> str:
    """``"fp32"`` for ``"no"``, else the name."""
    return "fp32" if mixed_precision == "no" else mixed_precision
