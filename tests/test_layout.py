"""The package layout stays honest: no import cycles among codebind_hf modules, no oversized module, and the
installed package imports from any working directory.

How the import graph is built (from the AST of every ``.py`` file under ``src/codebind_hf``; nothing is imported):

* Every ``import``/``from ... import`` counts, at module level and inside functions or ``try`` blocks alike: a
  function-level import that dodges a cycle is still a cycle, only a later one. Bodies of ``if TYPE_CHECKING:``
  are skipped (they never run); their ``else`` branch counts. String imports (``importlib.import_module``) are not
  seen.
* Relative imports resolve against the importing module's package (a package's ``__init__`` is its own package).
* ``import a.b.c`` and ``from a.b import c`` where ``a/b/c.py`` (or ``a/b/c/__init__.py``) exists are edges to
  ``a.b.c``. ``from a.b import name`` where ``name`` is no submodule is an edge to ``a.b`` itself, its
  ``__init__``: the name must already be defined there.
* The implicit import of a module's parent packages is not an edge: Python always starts a package's ``__init__``
  before any of its submodules, so counting it would tie every package to its children. Hence a package's
  ``__init__`` importing its submodules and a submodule importing a sibling (``from .sibling import f`` or
  ``from . import sibling``) is no cycle, but a submodule taking a name from its own package's ``__init__``
  (``from . import f``, ``from codebind_hf import X``) while that ``__init__`` imports it back IS one.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "codebind_hf"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(nodes):
    """Every Import/ImportFrom in ``nodes`` and below, except those in ``if TYPE_CHECKING:`` bodies."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The codebind_hf modules ``name`` imports (see the module docstring for the rule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes([ast.parse(path.read_text(encoding="utf-8"), str(path))]):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source not in modules:
            continue
        for alias in node.names:
            found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    found.discard(name)  # an __init__ naming its own package: no edge
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Concrete cycles (``[a, b, ..., a]``) covering every module of each strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:  # cycles through the component's modules until every one is in a cycle shown
        covered: set[str] = set()
        for start in component:
            if start not in covered:
                cycles.append(_cycle_through(graph, start, set(component)))
                covered.update(cycles[-1])
    return cycles


def _cycle_through(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """A shortest cycle through ``start`` inside its strongly connected component ``members`` (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return [start, start]  # unreachable for a strongly connected component


def test_cycle_finder_on_a_toy_graph():
    graph = {"a": {"b"}, "b": {"c", "x"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "x": {"b"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["x", "b", "x"], ["e", "e"]]
    assert find_cycles({"pkg": {"pkg.x", "pkg.y"}, "pkg.x": {"pkg.y"}, "pkg.y": set()}) == []


def test_import_rule_on_real_modules():
    graph = import_graph()
    assert "codebind_hf.modeling_codebind" in graph["codebind_hf"]  # a package's __init__ imports its modules
    assert all(edges <= set(graph) for edges in graph.values())


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles among codebind_hf modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_over_the_line_limit():
    sizes = {path.relative_to(SRC).as_posix(): len(path.read_text(encoding="utf-8").splitlines()) for path in SRC.rglob("*.py")}
    offenders = {path: n for path, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not offenders, f"modules over {MAX_LINES} lines: {offenders}"


def test_package_imports_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, not a source path
    done = subprocess.run([sys.executable, "-c", "import codebind_hf"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
