"""Text from a run directory, a dataset or a user, made inert for where it is shown.

Names of models, sources, presets and categories, problems and configuration values come from
data: they are never markup, formulas or special syntax. One helper per destination:

* :func:`html_text` -- HTML text or a quoted attribute value (``&``, ``<``, ``>``, ``"`` and ``'``
  escaped); every HTML page creg writes goes through it;
* :func:`markdown_text` -- one line of Markdown text: line breaks and table pipes made harmless, so a
  name cannot start a new Markdown block (an image line, a heading) or a new table cell;
* :func:`csv_cell` -- a spreadsheet cell that is never a formula (OWASP "CSV injection").

Figures need no helper: :mod:`creg.report.figures` turns matplotlib's mathtext off, so labels are drawn as they are.
"""

from __future__ import annotations

import html
from typing import Any

#: The first characters that make a spreadsheet read a cell as a formula (and tab / CR, which some
#: programs strip before looking).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def html_text(text: Any) -> str:
    """``text`` as HTML text, safe inside an element and inside a quoted attribute value."""
    return html.escape(str(text), quote=True)


def markdown_text(text: Any) -> str:
    """``text`` on one line of Markdown: line breaks become spaces and ``|`` is escaped (``\\|``)."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")


def csv_cell(value: Any) -> Any:
    """``value``, with a text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` ...)
    prefixed with ``'`` so it is shown as text; other values are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
