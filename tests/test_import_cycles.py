"""No two modules of ``semask_kernels`` or ``semask_models`` import each other, directly or around a longer loop,
function-level imports included: read from the source with ``ast``, nothing is imported.

An import names the module it reads (``from .a import b`` reads the module ``a.b`` when ``b`` is a module, else
``a``); a package's ``__init__`` re-exporting its modules is not a loop with them, since ``import a.b`` does not
make ``a/b.py`` depend on ``a/__init__.py``'s other imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"semask_kernels": ROOT / "semask_kernels", "semask_models": ROOT / "models"}
COMPILED = {"semask_kernels._C"}  # extension modules: they import nothing of the package


def modules(package: str, folder: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (``__init__.py`` is the package itself)."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``module`` imports anywhere in its file (top level or in a function)."""
    is_package = path.name == "__init__.py"
    read = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            read.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            for alias in node.names:
                read.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return {name for name in read if name in known and name != module}


def graph(package: str, folder: Path) -> dict[str, set[str]]:
    known = modules(package, folder)
    edges = {name: imports(name, path, {**known, **dict.fromkeys(COMPILED)}) for name, path in known.items()}
    return {**edges, **{name: set() for name in COMPILED if name.startswith(package + ".")}}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def loop_through(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One import loop inside ``component``, as the modules in order (for the error message)."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(edges[path[-1]] & members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return path + [start]
        step = next((w for w in nxt if w not in seen), None)
        if step is None:
            return path + [nxt[0]] if nxt else path
        path.append(step)
        seen.add(step)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package):
    edges = graph(package, PACKAGES[package])
    loops = [f"{' -> '.join(loop_through(c, edges))} (a loop among {len(c)} modules: {', '.join(c)})"
             for c in cycles(edges)]
    assert not loops, f"modules of {package} that import each other (function-level imports included):\n" + \
        "\n".join(loops)


def test_the_checker_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from .. import a\n    from ..a import f\n    return a, f\n")
    edges = graph("pkg", pkg)
    assert edges["pkg.sub.b"] == {"pkg.a"} and edges["pkg.a"] == {"pkg.sub.b"}
    assert cycles(edges) == [["pkg.a", "pkg.sub.b"]]
    assert loop_through(["pkg.a", "pkg.sub.b"], edges) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (pkg / "sub" / "b.py").write_text("def g():\n    return 1\n")
    assert cycles(graph("pkg", pkg)) == []  # the package's __init__ importing its modules is no loop
