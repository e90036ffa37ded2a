"""The example third-party adapter in docs/examples/ does what docs/adapter-guide.md says.

Its package is imported from its source folder (as if installed), its entry point and hook are
checked, and its own one-class test file -- the contract subclass a plugin author writes -- is
collected and run here.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "creg-example-adapter"
sys.path.insert(0, str(EXAMPLE / "src"))

import creg_example_adapter  # noqa: E402

from creg.plugins.manager import Plugins, discover  # noqa: E402


def _load_example_tests():
    spec = importlib.util.spec_from_file_location("creg_example_adapter_contract", EXAMPLE / "tests" / "test_contract.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The example's contract class, collected and run by pytest as part of this module.
TestExampleTinyAdapter = _load_example_tests().TestExampleTinyAdapter


def test_entry_point_names_the_plugin_module():
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["creg"] == {"creg_example_adapter": "creg_example_adapter"}


def test_hook_registers_the_adapter_lazily():
    plugins: Plugins = discover()
    plugins.add_module(creg_example_adapter, dist="creg-example-adapter 0.1.0")
    assert "example-tiny" in plugins.names("adapter")
    cls = plugins.load("adapter", "example-tiny")
    assert cls.__module__ == "creg_example_adapter.adapter" and cls.__name__ == "ExampleTinyAdapter"
