"""The architecture as the imports draw it: every import points down the layers, and no module outside
``jina5/model`` sits on an import circle (imports inside functions count: they are still dependencies).

    commands (train, evaluate, export, mteb) -> runs -> training -> model, losses
    report -> eval -> data -> teacher -> model          conf -> model
    everything -> assets, atomic, locking
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"train", "evaluate", "export", "mteb"}
BASE = {"assets", "atomic", "locking"}
# layer -> the layers it may import (besides itself and BASE)
ALLOWED: dict[str, set[str]] = {
    "assets": set(),
    "atomic": set(),
    "locking": set(),
    "losses": set(),
    "model": set(),
    "conf": {"model"},
    "teacher": {"model", "conf"},
    "data": {"teacher", "model"},
    "eval": {"data", "model", "conf"},
    "training": {"model", "losses"},
    "runs": {"training", "model", "losses", "data", "teacher", "conf"},
    "report": {"eval", "conf"},
    "commands": {"runs", "training", "model", "losses", "data", "teacher", "eval", "report", "conf"},
}


def _module_name(path: Path, root: Path) -> str:
    if path.is_relative_to(root / "conf"):
        parts = ("jina5", "conf", *path.relative_to(root / "conf").with_suffix("").parts)
    else:
        parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the jina5 modules it imports}, over jina5/ and conf/ (conf is the package jina5.conf)."""
    files = [*(root / "jina5").rglob("*.py"), *(root / "conf").glob("*.py")]
    modules = {_module_name(p, root): p for p in files}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jina5"):
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("jina5")]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name and t != "jina5")
    return dict(graph)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2:
        return "commands" if parts[1] in COMMANDS else parts[1]
    return parts[1]


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if layer(b) != layer(a) and layer(b) not in BASE and layer(b) not in ALLOWED[layer(a)]
    )


def test_every_module_belongs_to_a_known_layer():
    assert {layer(m) for m in import_graph()} <= set(ALLOWED)


def test_no_import_circle_outside_the_model_package():
    outside = [c for c in cycles(import_graph()) if not all(layer(m) == "model" for m in c)]
    assert outside == []


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_model_package_knows_no_training_evaluation_or_run_directory():
    graph = import_graph()
    model_imports = {b for a, targets in graph.items() if layer(a) == "model" for b in targets}
    assert {layer(b) for b in model_imports} <= {"model", *BASE}


def test_the_checks_find_a_circle_and_an_upward_import():
    """The checks can fail: a planted circle and an import from model up into runs are found."""
    graph = {
        "jina5.runs.a": {"jina5.runs.b"},
        "jina5.runs.b": {"jina5.runs.a"},
        "jina5.model.x": {"jina5.runs.a"},
    }
    assert cycles(graph) == [{"jina5.runs.a", "jina5.runs.b"}]
    assert upward_imports(graph) == ["jina5.model.x -> jina5.runs.a"]
