"""The retriever package's modules import one way (config <- features <- training <- model <- run): no import cycle
through them, counting imports inside functions and under ``TYPE_CHECKING`` as well as module-level ones."""

from __future__ import annotations

import ast
from pathlib import Path

import recsys

ROOT = Path(recsys.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the recsys modules it imports anywhere in its source (``from pkg import sub`` counts as ``pkg.sub``)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    target = f"{base}.{a.name}"
                    edges.add(target if target in files else base)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def cycles_through(graph: dict[str, set[str]], prefix: str) -> list[list[str]]:
    """Every elementary cycle found by DFS from modules under ``prefix`` (one per starting module is enough)."""
    found = []
    for start in sorted(m for m in graph if m == prefix or m.startswith(prefix + ".")):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append(path + [start])
                elif nxt not in seen and nxt not in path:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "recsys.retriever.training" in graph["recsys.retriever.model"]
    assert "recsys.retriever.features" in graph["recsys.retriever.training"]
    # a cycle built by hand is found
    toy = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert cycles_through(toy, "a") == [["a", "b", "a"]]


def test_no_import_cycle_through_the_retriever():
    graph = import_graph()
    assert cycles_through(graph, "recsys.retriever") == []


def test_training_does_not_import_the_model():
    graph = import_graph()
    assert "recsys.retriever.model" not in graph["recsys.retriever.training"]
    assert "recsys.retriever" not in graph["recsys.retriever.training"]
