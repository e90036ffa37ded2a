"""A plugin's description is written once, in its ``register`` call: ``creg list`` reads it there
without importing the plugin, and the loaded class gets it from its registration."""

from __future__ import annotations

import ast
import importlib.util
import types
from pathlib import Path

import pytest

from creg import hookimpl
from creg.plugins.manager import discover
from creg.plugins.relevance import RelevanceSource


def _plugins():
    """A plugin registering two fresh classes: one without a description, one with its own."""

    class Undescribed(RelevanceSource):
        """A source that leaves its description to its registration."""

    class SelfDescribed(RelevanceSource):
        description = "said by the class"

    plugin = types.ModuleType("described_plugin")

    @hookimpl
    def register_sources(register):
        register("undescribed", Undescribed, description="said at registration")
        register("self_described", SelfDescribed, description="said at registration too")
        register("silent", SelfDescribed)

    plugin.register_sources = register_sources
    p = discover()
    p.add_module(plugin, dist="described 1.0")
    return p, Undescribed


def test_a_loaded_class_takes_the_description_of_its_registration():
    p, undescribed = _plugins()
    assert undescribed.description == ""  # nothing until loaded
    assert p.load("source", "undescribed").description == "said at registration"
    assert p.get("source", "undescribed").description == "said at registration"


def test_a_class_that_says_its_own_description_keeps_it():
    p, _ = _plugins()
    assert p.load("source", "self_described").description == "said by the class"
    assert p.get("source", "self_described").description == "said at registration too"  # what creg list shows
    assert p.get("source", "silent").description == "said by the class"  # a class target's own, without importing


def _class_node(target: str) -> tuple[Path, ast.ClassDef]:
    module, attr = target.split(":")
    path = Path(importlib.util.find_spec(module).origin)  # imports only the (light) parent package
    tree = ast.parse(path.read_text())
    return path, next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == attr)


@pytest.mark.parametrize("kind", ["adapter", "source", "benchmark"])
def test_first_party_plugins_write_their_description_once(kind):
    """Every first-party registration gives a description and its class does not repeat it."""
    regs = [reg for reg in discover().registered[kind].values() if reg.dist.startswith("creg ")]
    assert regs
    for reg in regs:
        assert reg.registered_description, reg.name
        path, node = _class_node(reg.target)
        said = [t.id for stmt in node.body if isinstance(stmt, (ast.Assign, ast.AnnAssign))
                for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]) if isinstance(t, ast.Name)]
        assert "description" not in said, f"{reg.name}: {path} repeats the description given at registration"
