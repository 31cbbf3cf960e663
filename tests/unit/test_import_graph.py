"""tracer/'s packages import each other without a circle, imports inside functions included: a
lazy import that points back up (trace → agent, model → checks) hides a layering error, and is
exactly what a top-level import would have refused."""

from __future__ import annotations

import ast
from pathlib import Path

TRACER = Path(__file__).resolve().parents[2] / "tracer"


def package_edges() -> dict[str, set[str]]:
    """{package: packages it imports}, for every relative import anywhere in its modules."""
    edges: dict[str, set[str]] = {}
    for path in TRACER.rglob("*.py"):
        rel = path.relative_to(TRACER).parts
        src = rel[0].removesuffix(".py")
        here = list(rel[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = here[:len(here) - (node.level - 1)]
            full = base + (node.module.split(".") if node.module else [])
            for target in ([full[0]] if full else [a.name for a in node.names]):
                if target != src:
                    edges.setdefault(src, set()).add(target.removesuffix(".py"))
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_finder_finds_a_circle():
    assert cycle({"trace": {"agent", "model"}, "agent": {"trace"}}) == ["agent", "trace", "agent"]
    assert cycle({"trace": {"model"}, "agent": {"trace"}}) is None


def test_tracer_packages_import_without_a_circle():
    edges = package_edges()
    assert "trace" in edges.get("agent", set()), "the graph reads imports inside functions too"
    assert cycle(edges) is None, " → ".join(cycle(edges))
