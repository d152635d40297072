"""
The layout's rules, checked on the source: no import cycle between the
package's rooms (top-level modules and subpackages) nor between the
modules of a room, and the sans-I/O cores never import the reactor's
world.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

import secudoc_gateway

PACKAGE = os.path.dirname(secudoc_gateway.__file__)

PURE = (
    "addresses.py", "crypto.py", "display.py", "exo.py", "fields.py", "links.py", "policy.py", "replies.py",
    "targets.py", "ingress/attachments.py", "mime/", "notices/",
    "smtp/commands.py", "smtp/data.py", "smtp/events.py", "smtp/grammar.py", "smtp/readers.py", "smtp/session.py",
    "smtp/states.py", "relay/client.py", "scan/protocol.py", "scan/verdicts.py",
    "portal/formdata.py", "portal/routes.py", "portal/saml/checks.py",
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


def _moduleGraph() -> dict[str, set[str]]:
    """
    Module to the modules it imports, each import taken to the deepest
    module it names (``from secudoc_gateway.transfers import DONE`` is
    the package ``transfers``).  A module's own packages are left out:
    importing them is how a package's modules reach their siblings.
    """
    graph: dict[str, set[str]] = {}
    for _, path in _modules():
        rel = os.path.relpath(path, PACKAGE).removesuffix(".py").split(os.sep)
        module = ".".join(["secudoc_gateway", *rel]).removesuffix(".__init__")
        edges = graph.setdefault(module, set())
        for name in _imports(path):
            parts = name.split(".")
            for end in range(len(parts), 1, -1):
                found = os.path.join(PACKAGE, *parts[1:end])
                if os.path.isdir(found) or os.path.exists(found + ".py"):
                    target = ".".join(parts[:end])
                    if target != module and not module.startswith(target + "."):
                        edges.add(target)
                    break
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

    def test_noModuleCycle(self) -> None:
        """
        Nor do a room's modules import each other both ways, not even
        for annotations: a module's types come from below it.
        """
        self.assertEqual(_cycle(_moduleGraph()), [])

    def test_cycleFound(self) -> None:
        """The walk does find a loop, so an empty answer means something."""
        self.assertEqual(_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])

    def test_pureCores(self) -> None:
        for _, path in _modules():
            if os.path.relpath(path, PACKAGE).startswith(PURE):
                for name in _imports(path):
                    self.assertFalse(name.startswith("twisted.internet"), f"{path} imports {name}")
