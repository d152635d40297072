"""
The layout's rules, checked on the source: no import cycle between the
package's rooms (top-level modules and subpackages), and the sans-I/O
cores never import the reactor's world.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

import secudoc_gateway

PACKAGE = os.path.dirname(secudoc_gateway.__file__)

PURE = (
    "addresses.py", "crypto.py", "fields.py", "ingress/attachments.py", "mime/", "notices/", "policy.py", "replies.py",
    "targets.py",
    "smtp/commands.py", "smtp/data.py", "smtp/events.py", "smtp/grammar.py", "smtp/readers.py", "smtp/session.py",
    "smtp/states.py", "relay/client.py",
)
"""Modules (or folders) that must be plain Python: no twisted.internet."""


def _modules() -> Iterator[tuple[str, str]]:
    """(room, path) of every module: the room is its first name under the package."""
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, PACKAGE)
                yield rel.split(os.sep)[0].removesuffix(".py"), path


def _imports(path: str) -> Iterator[str]:
    """Every absolute module name ``path`` imports, at any depth of the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for room, path in _modules():
        edges = graph.setdefault(room, set())
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "secudoc_gateway" and len(parts) > 1 and parts[1] != room:
                if os.path.exists(os.path.join(PACKAGE, parts[1])) or os.path.exists(
                    os.path.join(PACKAGE, parts[1] + ".py")
                ):
                    edges.add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path of rooms, or ``[]``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(room: str) -> list[str]:
        state[room] = 1
        stack.append(room)
        for target in sorted(graph.get(room, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[room] = 2
        return []

    for room in sorted(graph):
        if room not in state:
            found = visit(room)
            if found:
                return found
    return []


class LayoutTests(SynchronousTestCase):
    def test_noCycle(self) -> None:
        """Each room imports only rooms below it: the floors can be drawn."""
        self.assertEqual(_cycle(_graph()), [])

    def test_cycleFound(self) -> None:
        """The walk does find a loop, so an empty answer means something."""
        self.assertEqual(_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])

    def test_pureCores(self) -> None:
        for _, path in _modules():
            if os.path.relpath(path, PACKAGE).startswith(PURE):
                for name in _imports(path):
                    self.assertFalse(name.startswith("twisted.internet"), f"{path} imports {name}")
