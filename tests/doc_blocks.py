"""The code blocks of a doc that its tests run as written (``from doc_blocks import doc_block``)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def doc_block(doc: str, marker: str) -> str:
    """The fenced block right after ``<!-- MARKER -->`` in ``docs/DOC``; fails naming the marker if it is gone."""
    m = re.search(rf"<!-- {re.escape(marker)} -->\s*```\w+\n(.*?)```", (DOCS / doc).read_text(), re.S)
    assert m, f"docs/{doc} lost its <!-- {marker} --> block"
    return m.group(1)
