"""The package's floor plan: no import cycles (lazy and ``importlib`` imports included) and every package imports
only the packages below it.

Imports are read from the source with ``ast`` (module level, inside functions, and ``import_module("mredit...")``
calls with a literal name), so an import hidden in a function to dodge a cycle still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mredit"
# bottom to top: a layer may import the layers listed before it (and itself)
LAYERS: list[set[str]] = [
    {"schema"},
    {"conditioning"},
    {"data"},
    {"judge"},
    {"eval"},  # standard metrics: read benchmarks through the judge's loader and share its bootstrap
    {"synth"},
    {"pipelines"},
    {"models"},
    {"callbacks"},
    {"training", "export"},
    {"editing"},  # the editing service: opens any model (models, pipelines); shared by cli edit and serve
    {"serve"},  # the gradio page, a front end over editing; started by cli serve
    {"cli", "__main__"},
    {"lab"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The mredit modules ``path`` imports, resolved to the longest known module name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets += [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                targets.append(node.args[0].value)
    found = set()
    for target in targets:
        parts = target.split(".")
        for end in range(len(parts), 1, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                if candidate != name and not name.startswith(candidate + "."):
                    found.add(candidate)
                break
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, known) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def top_package(module: str) -> str:
    return module.split(".")[1] if "." in module else module


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_is_read(graph) -> None:
    assert "mredit.models.ip2p" in graph["mredit.export.export"]
    assert len(graph) > 50


def test_no_import_cycles(graph) -> None:
    assert cycles(graph) == []


def test_cycle_detection_finds_a_lazy_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_package_has_a_layer(graph) -> None:
    packages = {top_package(module) for module in graph if module != "mredit"}
    assert packages <= set(LAYER_OF), f"add {sorted(packages - set(LAYER_OF))} to LAYERS"


def test_packages_import_only_layers_below(graph) -> None:
    upward = sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if source != "mredit" and LAYER_OF[top_package(target)] > LAYER_OF[top_package(source)]
    )
    assert upward == []
