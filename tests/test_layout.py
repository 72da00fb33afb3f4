"""The package's dependency direction (DESIGN: the maths imports no network, data set or
plot; data, metrics and viz are leaves; runs and cli sit on top): every import of a
ddpmlab module, at any depth of a file (inside functions and TYPE_CHECKING blocks too),
read from the source, and checked for cycles and against the allowed layers."""

from __future__ import annotations

import ast
import importlib.metadata
from collections import defaultdict
from pathlib import Path

import pytest

import ddpmlab

ROOT = Path(ddpmlab.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The ddpmlab modules ``path`` imports: ``from a.b import c`` is a.b.c where that is a
    module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                      else node.module for a in node.names}
    return {m for m in found if m in MODULES}


GRAPH = {m: _imports(f) - {m} for m, f in MODULES.items()}


def _layer(module: str) -> str:
    """The package or top-level module a module belongs to: ddpmlab.runs.run -> runs."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ddpmlab"


#: what each part of the package may import (besides itself); nothing imports cli, runs
#: only cli, the package's lazy exports and the reports' drawing
MATHS = {"errors", "schedules", "diffusion", "likelihood", "mixture", "flow", "objectives"}
BASE = {"errors", "config", "feedback", "fileio", "distributed", "devices", "precision",
        "checkpoint"}
ALLOWED = {
    "errors": set(),
    "config": {"errors"},
    "schedules": {"errors"},
    "diffusion": {"schedules"},
    "likelihood": {"diffusion", "schedules", "errors"},
    "mixture": {"diffusion"},
    "flow": {"diffusion", "mixture"},
    "objectives": {"diffusion", "flow", "schedules", "errors"},
    "samplers": MATHS,
    "models": {"config", "errors"},
    "accel": {"models", "precision"},
    "data": {"errors"},
    "viz": {"fileio"},
    "metrics": {"config", "data", "errors"},
    "modalities": {"config", "data", "errors", "fileio", "viz"},
    "feedback": set(), "fileio": {"distributed", "errors"}, "distributed": {"errors"},
    "devices": {"errors"}, "precision": {"errors"}, "checkpoint": {"config", "errors", "fileio"},
    "train": BASE | MATHS | {"accel", "models"},
    "reports": BASE | MATHS | {"samplers", "data", "modalities", "viz"},
    "runs": BASE | MATHS | {"samplers", "models", "accel", "train", "data", "metrics",
                            "modalities", "viz", "reports"},
    "cli": BASE | {"samplers", "data", "metrics", "modalities", "runs", "train", "lab",
                   "ddpmlab"},  # the package root: its __version__
    # the public API (the package root), the run directory's files, the CLI's loaders
    # (modalities), and the parameterisation that turns the network's output into a score
    "lab": {"ddpmlab", "errors", "runs", "data", "modalities", "diffusion"},
    "__main__": {"cli"},
}


def test_every_part_of_the_package_has_a_rule() -> None:
    assert {_layer(m) for m in MODULES} - {"ddpmlab"} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) != "ddpmlab"))
def test_each_module_imports_only_its_layers(module: str) -> None:
    layer = _layer(module)
    wrong = {t for t in GRAPH[module]
             if _layer(t) != layer and _layer(t) not in ALLOWED[layer]}
    assert not wrong, f"{module} imports {sorted(wrong)}, outside {sorted(ALLOWED[layer])}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that comes back to its start, or None (depth-first)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle_between_modules_or_between_layers() -> None:
    for graph in (GRAPH, _layer_graph()):
        cycle = _find_cycle(graph)
        assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def _layer_graph() -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for m, targets in GRAPH.items():
        if _layer(m) == "ddpmlab":  # the package's lazy exports reach every layer by design
            continue
        out[_layer(m)] |= {_layer(t) for t in targets if _layer(t) != _layer(m)}
    return out


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The rules above can fail: a module graph with a cycle, and maths importing a run."""
    global GRAPH
    saved = GRAPH
    try:
        GRAPH = {**saved, "ddpmlab.diffusion": saved["ddpmlab.diffusion"] | {"ddpmlab.runs.run"}}
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycle_between_modules_or_between_layers()
        with pytest.raises(AssertionError, match="outside"):
            test_each_module_imports_only_its_layers("ddpmlab.diffusion")
    finally:
        GRAPH = saved


def test_the_public_api_names_what_it_exports() -> None:
    for name in ddpmlab.__all__:
        assert getattr(ddpmlab, name) is not None, name
    assert ddpmlab.__version__ == importlib.metadata.version("ddpmlab")
    with pytest.raises(AttributeError, match="no attribute 'sample'"):
        ddpmlab.sample  # noqa: B018
