"""The library stays readable: no function or method in ``srha_hf/`` is longer than 80 lines (counted from
``def`` to its last line, docstring included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "srha_hf"
LIMIT = 80


def long_functions(root: Path = ROOT, limit: int = LIMIT):
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                yield f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"


def test_no_function_in_the_library_is_over_80_lines():
    assert not list(long_functions()), list(long_functions())


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert [line.split(" ")[1] for line in long_functions(tmp_path)] == ["long"]
