"""``report.html``: the report as one self-contained file to share (figures embedded as data URIs).

The page is report.md rendered to HTML (the same sections, tables and figures), with a small
stylesheet. Only the Markdown that :func:`creg.report.report.report_markdown` writes is
supported: headings, tables, paragraphs, lists, block quotes, images, ``code``, **bold**, *italic*.
PNG and SVG figures are embedded as they are; for PDF figures the report also writes PNG copies
(``figures/*.png``), since browsers do not show a PDF inside an ``<img>``.

The page cannot run script: every text is escaped with its quotes (:func:`creg.core.safe_text.html_text`),
no link is rendered (the text comes from the run directory: names, configuration, problems), and
only the report's own figures are embedded (regular files under ``figures/``, no links followed).
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

from creg.core.safe_text import html_text

MIME = {"png": "image/png", "svg": "image/svg+xml"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; border-bottom: 1px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
blockquote { border-left: 4px solid #e0a000; margin: 1em 0; padding: .2em 1em; background: #fff8e1; }
code { background: #f5f5f5; padding: 0 .2em; }
nav.toc { background: #f7f7f7; border: 1px solid #e4e4e4; padding: .4em 1em; font-size: .9em; }
nav.toc ol { margin: .2em 0; columns: 2; }
"""


def _inline(text: str) -> str:
    """Inline Markdown of one line (already free of images) to HTML: ``code``, **bold** and *italic*
    only; a Markdown link stays text (no ``<a>`` is made from the run directory's text)."""
    out = html_text(text.replace("\\|", "|"))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", out)
    return out


FIGURES = "figures"


def _figure_file(rel: str, run_dir: Path) -> Path | None:
    """The regular file ``rel`` names under ``run_dir/figures`` (no ``..``, no symbolic link on the
    way), or None: the page embeds the report's own figures and nothing else."""
    parts = Path(rel).parts
    if Path(rel).is_absolute() or len(parts) < 2 or parts[0] != FIGURES or any(p in ("", ".", "..") for p in parts):
        return None
    path = Path(run_dir)
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    return path if path.is_file() else None


def _image(alt: str, rel: str, run_dir: Path) -> str:
    fmt = Path(rel).suffix.lstrip(".").lower()
    if fmt == "pdf":
        rel, fmt = str(Path(rel).with_suffix(".png")), "png"
    path = _figure_file(rel, run_dir) if fmt in MIME else None
    if path is None:
        return f'<p class="missing">figure {html_text(rel)} is not available</p>'
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<figure><img alt="{html_text(alt)}" src="data:{MIME[fmt]};base64,{data}"></figure>'


def _table(rows: list[str]) -> str:
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", r.strip().strip("|"))] for r in rows]
    head, align, body = cells[0], cells[1], cells[2:]
    num = [a.endswith(":") for a in align]
    cls = lambda i: ' class="num"' if i < len(num) and num[i] else ""  # noqa: E731
    out = ["<table>", "<thead><tr>" + "".join(f"<th{cls(i)}>{_inline(c)}</th>" for i, c in enumerate(head)) + "</tr></thead>",
           "<tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{_inline(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def markdown_to_html(md: str, run_dir: Path) -> str:
    """The body HTML of report.md's Markdown subset, figures embedded from ``run_dir``."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        m = re.match(r"^(#{1,6}) (.*)$", line)
        if m:
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
            continue
        m = re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", line.strip())
        if m:
            out.append(_image(m.group(1), m.group(2), run_dir))
            i += 1
            continue
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
            continue
        if line.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].startswith(">"):
                quote.append(_inline(lines[i].lstrip("> ")))
                i += 1
            out.append("<blockquote>" + " ".join(quote) + "</blockquote>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- |>|!\[)", lines[i]):
            para.append(_inline(lines[i]))
            i += 1
        out.append("<p>" + " ".join(para) + "</p>")
    return "\n".join(out)


def with_contents(body: str) -> str:
    """``body`` with an id on every ``<h2>`` and a table of contents after the first ``<h1>``: each
    entry is its heading's text (already escaped; any markup in it dropped), linked to that id only."""
    heads: list[str] = []

    def number(m: re.Match) -> str:
        heads.append(re.sub(r"<[^>]*>", "", m.group(1)))  # the heading's (escaped) text: no markup, no links
        return f'<h2 id="sec-{len(heads)}">{m.group(1)}</h2>'

    body = re.sub(r"<h2>(.*?)</h2>", number, body)
    if not heads:
        return body
    toc = ('<nav class="toc"><strong>Contents</strong><ol>' +
           "".join(f'<li><a href="#sec-{i}">{h}</a></li>' for i, h in enumerate(heads, 1)) + "</ol></nav>")
    return re.sub(r"(</h1>)", lambda m: m.group(1) + "\n" + toc, body, count=1)


def render_html(report: dict[str, Any], markdown: str, figures_root: Path) -> str:
    """The self-contained report.html page of the report dict, from its ``markdown``; figures are embedded from the files
    under ``figures_root`` (where the report's relative figure paths point)."""
    body = with_contents(markdown_to_html(markdown, Path(figures_root)))
    title = html_text(f"creg report: {report['run_dir']}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{STYLE}</style>\n</head>\n'
            f"<body>\n{body}\n</body>\n</html>\n")

