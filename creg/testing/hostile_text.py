"""Hostile text for tests of pages that show data: names and values that would run script, open
a link or break out of an attribute if a page rendered them as markup.

Feed :data:`HOSTILE` through every field that reaches a page, then check the page with
:func:`active_html` (the list of what could run or navigate; empty for an inert page). Any
HTML page creg writes (the report, a gallery, a comparison) can be checked the same way.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: A link to a place on the same page (``href="#sec-2"``): navigates nowhere else, runs nothing.
_FRAGMENT = re.compile(r"#[A-Za-z0-9_-]+")

#: One of each kind: a Markdown link breaking out of an attribute with ``"`` and an ``on*=``
#: handler, a ``javascript:`` link, raw tags with handlers, and mathtext / formula starts.
HOSTILE = (
    '[a](#" onmouseover="alert(1)" style="position:fixed;top:0;left:0;width:100%;height:100%")',
    "[x](javascript:alert(2))",
    '<img src=x onerror="alert(3)">',
    '"><script>alert(4)</script>',
    "' onfocus='alert(5)' autofocus='",
)

#: Elements that run script, navigate or load something on their own.
ACTIVE_TAGS = frozenset({"a", "script", "iframe", "object", "embed", "form", "base", "link", "meta", "svg", "math",
                         "style", "input", "button", "area", "frame", "frameset", "video", "audio", "source"})


class _Scan(HTMLParser):
    def __init__(self, allowed_tags: frozenset[str]):
        super().__init__(convert_charrefs=True)
        self.allowed_tags = allowed_tags
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        in_page = tag == "a" and all(n in ("class", "id") or (n == "href" and _FRAGMENT.fullmatch(v or ""))
                                     for n, v in attrs)
        if tag in ACTIVE_TAGS and tag not in self.allowed_tags and not in_page:
            self.found.append(f"<{tag}> element")
        for name, value in attrs:
            v = (value or "").strip().lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> event handler")
            if name in ("href", "src", "action", "formaction", "xlink:href") and not (
                    v.startswith("data:image/") or v == "" or (in_page and name == "href")):
                self.found.append(f"<{tag} {name}={value!r}> link")
            if "javascript:" in v.replace(" ", ""):
                self.found.append(f"<{tag} {name}={value!r}> javascript: URL")

    handle_startendtag = handle_starttag


def active_html(page: str, *, allowed_tags: frozenset[str] = frozenset({"meta", "style"})) -> list[str]:
    """What in ``page`` could run script or navigate: script-like elements (but ``allowed_tags``,
    by default the page's own ``<meta charset>`` and ``<style>``), ``on*`` handlers, links (any
    ``href`` / ``src`` but embedded ``data:image/`` figures and the page's own ``#fragment``
    anchors, such as a table of contents) and ``javascript:`` URLs."""
    scan = _Scan(allowed_tags)
    scan.feed(page)
    scan.close()
    return scan.found
