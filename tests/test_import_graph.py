"""The import graph of srha_hf runs one way: no cycle among the imports made at module level, and no
function-level import of a srha_hf module that is there only to dodge one.

The graph is built statically with ``ast`` (nothing is imported). An ``import a.b.c`` or
``from a.b import c`` made while a module executes (module level, class bodies, ``if``/``try`` blocks;
not ``if TYPE_CHECKING:``) gives an edge to every srha_hf module whose code must run for it:

* the named module, every submodule named in a ``from ... import`` list, and the packages above
  them whose ``__init__`` the import runs: all but the importer's own ancestors, which Python runs
  before the importer (``from . import submodule`` works while the package is still initialising);
* the package of a ``from package import name`` when ``name`` is not a submodule, even when that
  package is an ancestor: its ``__init__`` must already have defined ``name``;
* for a package with lazy (PEP 562) re-exports, a dict literal ``_EXPORTS = {name: submodule}`` as
  in ``srha_hf/data/__init__.py``: the submodule that defines ``name``.

Function-level imports are the lazy ones (heavy or optional dependencies, a fast ``import srha_hf``).
Each must be one that could move to module level without closing a cycle, or be listed in
:data:`ALLOWED_CYCLE_DODGES` with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

PACKAGE = "srha_hf"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: (importing module, imported module) -> why the function-level import may close a cycle. Keep short.
ALLOWED_CYCLE_DODGES: Dict[Tuple[str, str], str] = {}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path) -> Dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_package(name: str, modules: Dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _lazy_exports(tree: ast.Module) -> Dict[str, str]:
    """``_EXPORTS = {"Name": "submodule", ...}`` of a package ``__init__`` (empty when it has none)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict), "_EXPORTS must be a dict literal {name: submodule}"
            return value
    return {}


def _inside(importer: str, package: str) -> bool:
    """Whether ``importer`` is ``package`` or lives in it (then ``package``'s ``__init__`` already runs)."""
    return importer == package or importer.startswith(package + ".")


def _resolve_from(importer: str, modules: Dict[str, Path], node: ast.ImportFrom) -> Optional[str]:
    """The absolute module of ``from <module> import ...`` (relative levels resolved), or None if outside the package."""
    top = importer.split(".")[0]
    if node.level == 0:
        base = node.module or ""
    else:
        package = importer if _is_package(importer, modules) else importer.rpartition(".")[0]
        parts = package.split(".")
        assert node.level - 1 < len(parts), f"{importer}: relative import beyond the top-level package"
        base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
    return base if _inside(base, top) else None


def _runs(importer: str, module: str, modules: Dict[str, Path]) -> Set[str]:
    """``module`` and the packages above it whose ``__init__`` importing it runs, seen from ``importer``."""
    parts = module.split(".")
    chain = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in chain if name in modules and not _inside(importer, name)}


def _targets(importer: str, node, modules: Dict[str, Path], exports: Dict[str, Dict[str, str]]) -> Set[str]:
    """The srha_hf modules that must run for one import statement (see the module docstring)."""
    found: Set[str] = set()
    top = importer.split(".")[0]
    if isinstance(node, ast.Import):
        for alias in node.names:
            if _inside(alias.name, top):
                assert alias.name in modules, f"{importer}: no module {alias.name}"
                found |= _runs(importer, alias.name, modules)
                if alias.asname is not None or "." not in alias.name:
                    found.add(alias.name)  # bound to use its attributes (or run its side effects): it must be complete
        return found
    base = _resolve_from(importer, modules, node)
    if base is None:
        return found
    assert base in modules, f"{importer}: imports from {base}, which is not a module of {top}"
    found |= _runs(importer, base, modules)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in modules:
            found |= _runs(importer, submodule, modules)
            continue
        found.add(base)  # ``name`` must already be defined there, even in an ancestor still running
        lazy = exports.get(base, {}).get(alias.name)
        if lazy is not None:
            found.add(f"{base}.{lazy}")
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module):
    """Yield ``(node, at_module_level, function_name)`` for every import statement of a module."""

    def visit(node, function: Optional[str]):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, function is None, function
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, function or getattr(child, "name", "<lambda>"))
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    yield from visit(ast.Module(body=[orelse], type_ignores=[]), function)
            else:
                yield from visit(child, function)

    yield from visit(tree, None)


def build_graph(root: Path = ROOT):
    """Return ``(module-level edges, function-level imports)`` of the package at ``root``.

    Edges map every module of the package to the set of its modules that importing it runs;
    function-level imports are ``(importer, function, target, line)`` tuples.
    """
    modules = _modules(root)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in modules.items()}
    exports = {name: _lazy_exports(tree) for name, tree in trees.items() if _is_package(name, modules)}
    edges: Dict[str, Set[str]] = {name: set() for name in modules}
    deferred: List[Tuple[str, str, str, int]] = []
    for name, tree in trees.items():
        for node, module_level, function in _imports(tree):
            for target in _targets(name, node, modules, exports):
                if target == name:
                    continue
                if module_level:
                    edges[name].add(target)
                else:
                    deferred.append((name, function, target, node.lineno))
    return edges, deferred


def find_cycle(edges: Dict[str, Set[str]]) -> Optional[List[str]]:
    """A cycle ``[a, b, ..., a]`` of the graph, or None (iterative depth-first search)."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def path_between(edges: Dict[str, Set[str]], source: str, target: str) -> Optional[List[str]]:
    """A shortest path ``source -> ... -> target`` along the edges, or None (breadth-first search)."""
    parent: Dict[str, Optional[str]] = {source: None}
    frontier = [source]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges.get(node, ())):
                if nxt in parent:
                    continue
                parent[nxt] = node
                if nxt == target:
                    path = [nxt]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return path[::-1]
                following.append(nxt)
        frontier = following
    return None


# ---- the checker itself, on small graphs ------------------------------------------------------------


def test_find_cycle_and_path_on_toy_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert path_between({"a": {"b"}, "b": {"c"}, "c": set()}, "a", "c") == ["a", "b", "c"]
    assert path_between({"a": {"b"}, "b": set(), "c": {"a"}}, "a", "c") is None


def test_targets_resolve_relative_submodule_and_lazy_imports():
    modules = {"srha_hf": ROOT / "__init__.py", "srha_hf.data": ROOT / "data/__init__.py",
               "srha_hf.data.labels": ROOT / "data/labels.py", "srha_hf.data.benchmarks": ROOT / "data/benchmarks.py",
               "srha_hf.srm": ROOT / "srm.py"}  # fmt: skip
    exports = {"srha_hf": {}, "srha_hf.data": {"load_benchmark": "benchmarks"}}

    def targets(importer, source):
        return _targets(importer, ast.parse(source).body[0], modules, exports)

    # a submodule of an ancestor package: the ancestor's __init__ is already running
    assert targets("srha_hf.data.benchmarks", "from . import labels as L") == {"srha_hf.data.labels"}
    assert targets("srha_hf.data.benchmarks", "from ..srm import x") == {"srha_hf.srm"}
    assert targets("srha_hf.data.benchmarks", "from .labels import x") == {"srha_hf.data.labels"}
    # a name defined by an ancestor's __init__: it must have got that far
    assert targets("srha_hf.data.benchmarks", "from .. import srm, __version__") == {"srha_hf.srm", "srha_hf"}
    assert targets("srha_hf.srm", "import srha_hf") == {"srha_hf"}
    assert targets("srha_hf.srm", "import srha_hf.data.labels as labels") == {"srha_hf.data", "srha_hf.data.labels"}
    # a package that is not an ancestor runs its __init__; lazy re-exports run their submodule
    assert targets("srha_hf.srm", "from .data.labels import x") == {"srha_hf.data", "srha_hf.data.labels"}
    assert targets("srha_hf", "from .data import load_benchmark") == {"srha_hf.data", "srha_hf.data.benchmarks"}
    assert targets("srha_hf.srm", "from srha_hf.data import labels, CLASS_NAMES") == {"srha_hf.data.labels", "srha_hf.data"}
    assert targets("srha_hf.srm", "import srha_hf.data.labels") == {"srha_hf.data", "srha_hf.data.labels"}
    assert targets("srha_hf.srm", "import numpy, torch.nn") == set()
    assert targets("srha_hf.srm", "from torch import nn") == set()


def _write_package(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_build_graph_finds_a_cycle_and_a_dodge(tmp_path):
    pkg = _write_package(tmp_path / "toy", {
        "__init__.py": "from .a import f\n",
        "a.py": "from . import b\n\ndef f():\n    from .c import g\n    return g\n",
        "b.py": "import os\nfrom .sub.d import x\n",
        "c.py": "from .a import f\n",
        "sub/__init__.py": "",
        "sub/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import f\nfrom .. import __version__\n",
    })  # fmt: skip
    edges, deferred = build_graph(pkg)
    assert edges == {"toy": {"toy.a"}, "toy.a": {"toy.b"}, "toy.b": {"toy.sub", "toy.sub.d"}, "toy.c": {"toy.a"},
                     "toy.sub": set(), "toy.sub.d": {"toy"}}  # fmt: skip
    assert deferred == [("toy.a", "f", "toy.c", 4)]
    assert find_cycle(edges) == ["toy", "toy.a", "toy.b", "toy.sub.d", "toy"]
    assert path_between(edges, "toy.c", "toy.a") == ["toy.c", "toy.a"]  # a's lazy import of c dodges c -> a


# ---- the package --------------------------------------------------------------------------------


def test_every_module_is_seen():
    edges, _ = build_graph()
    assert {"srha_hf", "srha_hf.srm", "srha_hf.data.synthetic", "srha_hf.training.trainer"} <= set(edges)
    assert "srha_hf.regions" in edges["srha_hf.srm"]  # a known module-level edge


def test_module_level_imports_have_no_cycle():
    edges, _ = build_graph()
    cycle = find_cycle(edges)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_function_level_imports_do_not_dodge_a_cycle():
    edges, deferred = build_graph()
    offending = []
    for importer, function, target, line in deferred:
        back = path_between(edges, target, importer)
        if back is not None and (importer, target) not in ALLOWED_CYCLE_DODGES:
            offending.append(f"{importer}:{line} ({function}) imports {target}, which imports it back: " + " -> ".join(back))
    assert not offending, "function-level imports that dodge a cycle:\n" + "\n".join(offending)


def test_allow_list_is_current():
    edges, deferred = build_graph()
    used = {(importer, target) for importer, _, target, _ in deferred if path_between(edges, target, importer)}
    stale = sorted(set(ALLOWED_CYCLE_DODGES) - used)
    assert not stale, f"ALLOWED_CYCLE_DODGES entries no longer needed: {stale}"
    assert all(reason.strip() for reason in ALLOWED_CYCLE_DODGES.values())
