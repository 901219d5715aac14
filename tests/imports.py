"""Static import analysis shared by the layering and DVC-dependency tests."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def import_nodes(path: Path) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth (inside functions too); imports under
    ``if TYPE_CHECKING:`` are for annotations only and never run, so they are left out."""
    pending: list[ast.AST] = [ast.parse(Path(path).read_text())]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _type_checking_only(node):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def imported_names(path: Path, *, with_members: bool = False) -> set[str]:
    """The absolute module names ``path`` imports; ``with_members`` adds ``module.name`` for each
    ``from module import name`` (a submodule, where it is one)."""
    names = set()
    for node in import_nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if with_members:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names
