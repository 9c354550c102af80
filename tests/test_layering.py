"""The package's import graph: no cycle, function-level imports included, and no import from a higher layer
(docs/design.md §1). Imports hidden inside functions used to close two loops (api <-> sweep, and
checkpoint -> module -> zoo -> checkpoint) that only held because of the order modules happened to load in."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robustadder"

#: docs/design.md §1, bottom to top; a module may import its own layer and those below
LAYERS: dict[str, int] = {
    **dict.fromkeys(["errors", "_version", "_compat", "resources", "fileio", "escape", "plotting", "fetch"], 0),
    **dict.fromkeys(["nn", "kernels"], 1),
    **dict.fromkeys(["data", "models", "attacks", "distributed", "ops"], 2),
    **dict.fromkeys(["store", "engine", "summary", "distances", "cost"], 3),
    **dict.fromkeys(["api", "sweep", "comparison", "groups", "diagnostics", "report", "train", "bench"], 4),
    **dict.fromkeys(["cli", "__main__", ""], 5),  # "": the package's own __init__ (lazy public names)
}


def _modules() -> dict[str, tuple[Path, str]]:
    """Dotted name (without 'robustadder.') → (file, the package its relative imports resolve against)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = ".".join(parts)
        else:
            package = ".".join(parts[:-1])
        found[".".join(parts)] = (path, package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every import of a package module by another (module level and inside functions alike)."""
    modules = _modules()

    def known(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name.removeprefix("robustadder").lstrip(".") for a in node.names
                           if a.name.split(".")[0] == "robustadder"]  # fmt: skip
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    target = ".".join([*base, *([node.module] if node.module else [])])
                elif (node.module or "").split(".")[0] == "robustadder":
                    target = node.module.removeprefix("robustadder").lstrip(".")
                else:
                    continue
                targets = [f"{target}.{a.name}".lstrip(".") if f"{target}.{a.name}".lstrip(".") in modules else target
                           for a in node.names]  # fmt: skip
            graph[name] |= {known(t) for t in targets} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_imports_from_a_higher_layer():
    upward = [(m, t) for m, targets in import_graph().items() for t in targets if _layer(t) > _layer(m)]
    assert upward == []


def test_every_module_has_a_layer():
    assert sorted({m.split(".")[0] for m in _modules()} - set(LAYERS)) == []


def test_inside_models_loading_flows_one_way():
    """Resolving a name (zoo) → wrapping or reading (module, checkpoint) → building (resnet, registry)."""
    graph = import_graph()
    order = ["models.zoo", "models.module", "models.checkpoint", "models.architectures", "models.resnet",
             "models.registry", "models.spec"]  # fmt: skip
    for i, module in enumerate(order):
        assert not graph[module] & set(order[:i]), module


def test_the_walker_sees_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_inside_report_planning_tables_and_renderers_flow_one_way():
    """plan (the grid in the store) → tables → provenance → latex / plots → render; never back up."""
    graph = import_graph()
    order = ["report.render", "report.plots", "report.latex", "report.provenance", "report.tables", "report.plan"]
    for i, module in enumerate(order):
        assert not graph[module] & set(order[:i]), module
