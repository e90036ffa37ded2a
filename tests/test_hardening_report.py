"""Issue 21: a report that cannot run script, and figures that draw names as they are."""

from __future__ import annotations

import pytest
import torch

from creg.report.report import build_report
from creg.core.safe_text import csv_cell, html_text, markdown_text
from creg.testing.hostile_text import HOSTILE, active_html

from hostile_runs import MATHTEXT, hostile_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    run = hostile_run(tmp_path_factory.mktemp("hostile") / "run")
    build_report(run, log=lambda _: None, dpi=40, heatmaps=False)
    return run


def test_report_html_has_no_links_handlers_or_script_from_run_text(hostile_report):
    page = (hostile_report / "report.html").read_text()
    assert active_html(page) == []
    # the hostile text is there, shown as text
    assert html_text(HOSTILE[3]) in page and "javascript:alert(2)" in page


def test_report_html_without_figures_is_inert(tmp_path):
    """The same check without figures (so that it does not depend on the mathtext fix)."""
    run = hostile_run(tmp_path / "run")
    build_report(run, log=lambda _: None, figures=False)
    page = (run / "report.html").read_text()
    assert active_html(page) == []
    assert "&quot; onmouseover=&quot;alert(1)&quot;" in page


def test_report_md_keeps_hostile_names_on_one_line(hostile_report):
    md = (hostile_report / "report.md").read_text()
    assert all(not line.startswith("![") or line.startswith("![examples_") or line.startswith("![per_class")
               for line in md.splitlines())


def test_mathtext_category_is_drawn_literally(hostile_report):
    """A category name with ``$...$`` used to raise ParseFatalException in figures.py (no report.md)."""
    assert (hostile_report / "report.md").is_file()
    assert any(p.suffix == ".png" for p in (hostile_report / "figures").iterdir())


def test_active_html_finds_what_could_run():
    assert active_html('<p><a href="javascript:x">a</a></p>')
    assert active_html('<p title="" onmouseover="x">a</p>')
    assert active_html("<script>x</script>")
    assert active_html('<img src="data:image/png;base64,AAAA" alt="a">') == []


def test_safe_text_helpers():
    assert html_text('"<a>\'') == "&quot;&lt;a&gt;&#x27;"
    assert markdown_text("a|b\n![x](y)") == "a\\|b ![x](y)"
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "cup", 1.5, -2)] == \
        ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "cup", 1.5, -2]
    assert MATHTEXT.count("$") == 2


def test_active_html_allows_only_in_page_anchors():
    assert active_html('<a href="#sec-2">Setup</a>') == []
    assert active_html('<a href="#x" onclick="f()">x</a>') != []
    assert active_html('<a href="https://example.org">x</a>') != []
    assert active_html('<a href="#a b">x</a>') != []
    assert active_html('<a href="javascript:alert(1)">x</a>') != []


def test_gallery_and_comparison_pages_are_inert_with_hostile_run_text(hostile_report, tmp_path):
    """The same hostile run through the gallery and the cross-run page: only the pages' own
    script (the gallery's filters, allowed by its Content-Security-Policy) and in-page anchors."""
    import shutil

    from click.testing import CliRunner

    from creg.cli import cli
    from creg.report.gallery import build_gallery

    build_gallery(hostile_report, dpi=20, log=lambda _: None)
    gallery = (hostile_report / "gallery.html").read_text()
    assert active_html(gallery, allowed_tags=frozenset({"meta", "style", "script", "button", "input"})) == []
    assert html_text(HOSTILE[3]) in gallery
    twin = tmp_path / "twin"
    shutil.copytree(hostile_report, twin)
    res = CliRunner().invoke(cli, ["report", str(hostile_report), str(twin), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    assert active_html(page) == []
