"""Calls go downward only (DESIGN.md): the packages and top-level modules of predictd form an
acyclic graph. A cycle means two packages share vocabulary that has no home of its own; the fix
is to give it one below both, not to hide the import inside a function.

Every import counts, wherever it stands: at module level, inside a function (a lazy import is
still a dependency) and under `TYPE_CHECKING` (a type-only import still couples two packages,
and an exception for it would be the easy way round this test)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import predictd

ROOT = Path(predictd.__file__).resolve().parent


def unit_of(module: str) -> str | None:
    """The top-level package or module of predictd that `module` belongs to."""
    parts = module.split(".")
    if parts[0] != "predictd" or len(parts) < 2:
        return None
    return parts[1]


def is_unit(name: str) -> bool:
    """`from predictd import __version__` names no package or module."""
    return (ROOT / name / "__init__.py").exists() or (ROOT / f"{name}.py").exists()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Absolute names of everything `path` imports, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            prefix = ".".join([*base, node.module] if node.module else base)
            yield prefix
            # `from predictd import registry` imports the package `registry`.
            yield from (f"{prefix}.{alias.name}" for alias in node.names)


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = unit_of(module_name(path))
        if source is None:
            continue
        edges = graph.setdefault(source, set())
        for target in map(unit_of, imported_modules(path)):
            if target not in (None, source) and is_unit(target):
                edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` as a closed path, or None; depth-first, so the path is real."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        on_path = [start]
        while stack:
            node, successors = stack[-1]
            step = next(successors, None)
            if step is None:
                stack.pop()
                on_path.pop()
                done.add(node)
            elif step in on_path:
                return [*on_path[on_path.index(step) :], step]
            elif step not in done:
                stack.append((step, iter(sorted(graph.get(step, ())))))
                on_path.append(step)
    return None


def test_the_walk_sees_imports() -> None:
    """Guards the test itself: an empty graph would pass vacuously."""
    graph = package_graph()
    assert "settings" in graph["db"]
    assert "db" in graph["recording"]


def test_find_cycle_reports_the_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_package_cycles() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])
