"""Import arrows in ``kshot/`` point down the layers of DESIGN.md; nothing imports in a circle.

The layer map below is the one place that says where a part of the package sits. A part may
import its own layer or any layer below, never one above. Imports are read from the source with
``ast``, all of them, lazy ones inside functions included: a lazy import that points up is still
an arrow pointing up. Cycles are checked twice: between the parts (subpackages and top-level
modules), over every import, and between modules, over the imports that run when a module is
first imported (a lazy import inside a function cannot deadlock an import, as the registry's
loading of its built-in strategies does on purpose).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import kshot

PACKAGE = Path(kshot.__file__).parent

#: Bottom first. ``kshot`` itself (the curated ``__init__``) sits above everything.
LAYERS: list[set[str]] = [
    {"kshot._ranking", "kshot.types", "kshot.errors", "kshot._files", "kshot._version"}
    | {"kshot._device"},
    {"kshot.index", "kshot.corpus", "kshot.data"},
    {"kshot.selector", "kshot.prompt", "kshot.model"},
    {"kshot.api"},
    {"kshot.cli", "kshot.client", "kshot.server", "kshot.integrations", "kshot.bench"}
    | {"kshot.demo", "kshot.distributed"},
    {"kshot"},
]
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The layer map's name for a module: ``kshot.<first component>``, or ``kshot`` itself."""
    return ".".join(module.split(".")[:2])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.Module, module: str, *, at_import_time: bool) -> Iterator[str]:
    """The kshot modules ``module`` imports; with ``at_import_time``, only those that run then."""
    package = module if tree_is_package(module) else module.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names if a.name.split(".")[0] == "kshot")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target.split(".")[0] == "kshot":
                    yield target
                    # `from kshot.selector import base` imports the module kshot.selector.base.
                    for alias in node.names:
                        if f"{target}.{alias.name}" in MODULES:
                            yield f"{target}.{alias.name}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not at_import_time:
                    yield from visit(list(ast.walk(node))[1:])  # type: ignore[arg-type]
            elif isinstance(node, ast.If) and at_import_time and _is_type_checking(node):
                yield from visit(node.orelse)
            else:
                children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
                yield from visit(children)

    yield from visit(tree.body)


def tree_is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()


SOURCES = {module_name(p): ast.parse(p.read_text("utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(SOURCES)


def graph(*, at_import_time: bool) -> dict[str, set[str]]:
    return {
        module: {t for t in imports(tree, module, at_import_time=at_import_time) if t != module}
        for module, tree in SOURCES.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_every_part_of_the_package_has_a_layer() -> None:
    unplaced = sorted({part_of(m) for m in MODULES} - set(LEVEL))
    assert not unplaced, f"place these in LAYERS of tests/test_layers.py: {unplaced}"


def test_no_import_points_up_the_layers() -> None:
    upward = [
        f"{module} imports {target} ({part_of(module)} is layer {LEVEL[part_of(module)]}, "
        f"{part_of(target)} is layer {LEVEL[part_of(target)]})"
        for module, targets in sorted(graph(at_import_time=False).items())
        for target in sorted(targets)
        if part_of(target) in LEVEL and LEVEL[part_of(target)] > LEVEL[part_of(module)]
    ]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_the_parts() -> None:
    parts: dict[str, set[str]] = {}
    for module, targets in graph(at_import_time=False).items():
        parts.setdefault(part_of(module), set()).update(
            part_of(t) for t in targets if part_of(t) != part_of(module)
        )
    assert find_cycle(parts) is None, " -> ".join(find_cycle(parts) or [])


def test_no_cycle_between_modules_at_import_time() -> None:
    edges = graph(at_import_time=True)
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(edges) == cycle


def test_the_walker_sees_lazy_and_relative_imports() -> None:
    tree = ast.parse(
        "from kshot.types import Example\n"
        "def f():\n    from kshot.selector.similarity import SimilaritySelector\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kshot.api import select\n"
    )
    everything = set(imports(tree, "kshot.index.example_index", at_import_time=False))
    assert {"kshot.types", "kshot.selector.similarity", "kshot.api"} <= everything
    at_import = set(imports(tree, "kshot.index.example_index", at_import_time=True))
    assert at_import == {"kshot.types"}
