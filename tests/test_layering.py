"""The package's layers, read from its source (``ast``, no import): the core (``sampling/``,
``schedule``, ``model_api``, ``device``) reaches nothing in the outer rings, directly or through
other modules, and no modules import each other in a circle. Function-level imports count as
much as module-level ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffusion_lib"
CORE = ("sampling", "schedule", "model_api", "device")
OUTER = ("lessons", "bench", "cli", "metrics", "exact")


def _name(path: Path) -> str:
    parts = ("diffusion_lib", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ring(module: str) -> str:
    """``diffusion_lib.sampling.loop`` → ``sampling``; the package itself → ``""``."""
    return module.split(".")[1] if "." in module else ""


def import_graph() -> dict[str, set[str]]:
    """module → the diffusion_lib modules it imports (``from .pkg import sub`` → ``pkg.sub``)."""
    files = {_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                base = ".".join(filter(None, [base, node.module]))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]  # fmt: skip
            else:
                continue
            graph[module] |= {t for t in targets if t in files and t != module}
    return graph


def test_the_core_imports_nothing_from_the_outer_rings():
    graph = import_graph()
    core = [m for m in graph if _ring(m) in CORE]
    assert "diffusion_lib.sampling.loop" in core and len(core) > 10
    for module in core:  # directly or through other modules
        reached, todo = set(), [module]
        while todo:
            new = graph[todo.pop()] - reached
            reached |= new
            todo += new
        outer = sorted(t for t in reached if _ring(t) in OUTER)
        assert not outer, f"{module} (core) reaches {outer}"


def test_no_import_cycles():
    """Depth-first search; a package's ``__init__`` importing its submodules is an edge like any
    other, so it is a cycle only if a submodule imports that ``__init__`` back."""
    graph, done, path = import_graph(), set(), []

    def visit(module: str) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module not in done:
            path.append(module)
            for target in sorted(graph[module]):
                visit(target)
            path.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)
