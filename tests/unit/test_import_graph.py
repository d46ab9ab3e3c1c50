"""No import circle in ``streams/aion``: the graph of module-level imports, computed from the
source with ``ast`` (nothing is imported), has no cycle.

What counts as an edge ``a -> b`` (both modules of the package):

- ``import aion.x.y`` and ``from aion.x import y`` / ``from .x import y`` / ``from .. import y``,
  resolved to the module ``aion.x.y`` when that is a module, else to ``aion.x`` (the name lives
  in ``aion/x/__init__.py``, re-exported or not: importing it needs that ``__init__`` to have run);
- only imports that run when ``a`` is imported: at module level, in class bodies, under ``try`` /
  ``if`` / ``with``; not inside functions and not under ``if TYPE_CHECKING:``.

The implicit import of a module's parent packages is no edge, so ``aion.client/__init__``
importing ``aion.client._errors`` and ``aion.client._errors`` importing ``..exceptions`` is no
circle; ``from . import _sibling`` is an edge to the sibling, not to the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "streams"
PACKAGE = "aion"


def package_modules(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (source file, is a package) for every module under ``root/package``."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            found += _import_time_imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody"):
                found += _import_time_imports([s for s in getattr(node, field, []) if isinstance(s, ast.stmt)])
            for handler in getattr(node, "handlers", []):
                found += _import_time_imports(handler.body)
            for case in getattr(node, "cases", []):
                found += _import_time_imports(case.body)
    return found


def import_graph(root: Path = SRC, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """Module -> {imported module of the package: line of the first such import}."""
    modules = package_modules(root, package)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_pkg) in modules.items():
        edges: dict[str, int] = {}
        for node in _import_time_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [known(a.name) if a.name.split(".")[0] == package else None for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                if source.split(".")[0] != package:
                    continue
                targets = [known(f"{source}.{a.name}") if f"{source}.{a.name}" in modules else known(source)
                           for a in node.names]
            for t in targets:
                if t is not None and t != name:
                    edges.setdefault(t, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if color[start] != WHITE:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        color[start] = GREY
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = BLACK
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            if color.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            if color.get(nxt) == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return "\n".join(f"  {a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:]))


def test_no_import_circle_in_the_package() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "module-level import circle:\n" + _describe(graph, cycle or [])


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 100
    assert "aion.exceptions" in graph["aion.client._errors"]
    assert "aion.model" in graph["aion.exceptions"]
    assert "aion.cli._app" in graph["aion.cli._main"]
    # ``from . import activity, workflow`` in aion/__init__.py: the submodules, not the package.
    assert {"aion.activity", "aion.workflow"} <= set(graph["aion"])
    # Under ``if TYPE_CHECKING:`` only.
    assert "aion.client._client" not in graph["aion.client._schedules"]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_rules_on_a_small_package(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "from . import a, sub\nfrom .b import B\nVALUE = 1\n",
        "pkg/a.py": "from . import b\nfrom .sub import c\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                    "def f():\n    from . import a\nclass B:\n    pass\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "try:\n    from ..b import B\nexcept ImportError:\n    pass\nimport pkg.sub\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a": 1, "pkg.sub": 1, "pkg.b": 2},
        "pkg.a": {"pkg.b": 1, "pkg.sub.c": 2},
        "pkg.b": {},
        "pkg.sub": {},
        "pkg.sub.c": {"pkg.b": 2, "pkg.sub": 5},
    }
    assert find_cycle(graph) is None

    # A name that lives in the package's __init__ is an edge to the package: here a circle.
    _write(tmp_path, {"pkg/b.py": "from . import VALUE\n"})
    graph = import_graph(tmp_path, "pkg")
    assert find_cycle(graph) == ["pkg", "pkg.a", "pkg.b", "pkg"]


def _all_imports(graph: dict[str, dict[str, int]], module: str) -> set[str]:
    """Every package module ``module`` imports when it is imported, directly or not."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_shared_plumbing_stands_on_its_own() -> None:
    """``aion.common`` (settings, topics, Kafka access and adapters, schedule specs) is what every
    part may import, so it imports no part: not the engine, the client, the workers, the runtime
    or the CLI. And the parts take the plumbing from there, not from the engine's old homes."""
    graph = import_graph()
    parts = ("aion.engine", "aion.client", "aion.worker", "aion.testing", "aion.runtime", "aion.cli", "aion.bench",
             "aion.ops")
    for module in [m for m in graph if m == "aion.common" or m.startswith("aion.common.")]:
        reached = _all_imports(graph, module)
        assert not [m for m in reached if m.startswith(parts)], (module, sorted(reached))
    for module in [m for m in graph if m.startswith(("aion.client", "aion.worker", "aion.testing", "aion.bench"))]:
        direct = set(graph[module])
        assert not direct & {"aion.engine.settings", "aion.engine.topics", "aion.engine._schedules"} - (
            {"aion.engine._schedules"} if module.startswith("aion.testing") else set()), (module, sorted(direct))
