"""Every hook is documented: a new hookspec without a docs entry fails here (as datasette does)."""

import inspect
from pathlib import Path

from creg.plugins import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_every_hookspec_has_a_docstring_and_a_row_in_docs_plugins():
    text = DOCS.read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "creg_spec")]
    assert specs, "no hookspecs found"
    for name in specs:
        assert getattr(hookspecs, name).__doc__, f"hookspec {name} has no docstring"
        assert f"`{name}(" in text, f"hookspec {name} is missing from docs/plugins.md"
