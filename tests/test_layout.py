"""The package's layout holds: no module imports a front (the CLI, the web app, the notebook),
and its parts import one another in one direction only, read from the code's own imports
(those inside functions and under TYPE_CHECKING included)."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mnistlab"
FRONTS = {"cli", "web", "notebook"}


def part(module: str) -> str | None:
    """`mnistlab.data.cache` -> "data": the module or folder of the package it belongs to."""
    names = module.split(".")
    return names[1] if names[0] == "mnistlab" and len(names) > 1 else None


def imports() -> dict[str, set[str]]:
    """Each part of the package and the other parts it imports."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative == Path("__init__.py") or relative.name == "__main__.py":
            continue  # the public API and `python -m`: they stand above everything
        here = relative.parts[0].removesuffix(".py")
        found = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.module == "mnistlab":
                    targets = [f"mnistlab.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                other = part(target)
                real = other and ((PACKAGE / other).is_dir() or (PACKAGE / f"{other}.py").is_file())
                if real and other != here:
                    found.add(other)
    return graph


def test_the_graph_is_read():
    graph = imports()
    assert {"data", "runs", "training", "experiments", "reports", "cli", "web"} <= set(graph)
    assert "data" in graph["training"] or "data" in graph["runs"]


def test_no_part_imports_a_front():
    for here, others in imports().items():
        if here not in FRONTS:
            assert not others & FRONTS, f"{here} imports {others & FRONTS}"


def test_no_parts_import_each_other_in_a_circle():
    try:
        order = list(TopologicalSorter(imports()).static_order())
    except CycleError as e:
        raise AssertionError(f"an import cycle: {' -> '.join(e.args[1])}") from None
    assert order.index("data") < order.index("training") < order.index("experiments")
