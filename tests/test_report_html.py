"""report.html: one self-contained file, rendered in a real browser (headless Chromium).

.ci/run installs Debian's ``chromium`` with apt-get when it is missing; the browser test skips
(saying why) only where no Chromium can be found.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import torch

from creg.report.report import build_report
from creg.execution.runner import Runner, RunConfig

from browser_check import chromium, probe_page

torch.set_num_threads(1)

#: what the page shows once loaded (browser_check's helpers: images(), external(), report()).
PROBE = """
const imgs = [...document.images];
report({images: imgs.length, loaded: images().loaded, widths: imgs.map(i => i.naturalWidth),
        tables: document.querySelectorAll("table").length, rows: document.querySelectorAll("tbody tr").length,
        headings: [...document.querySelectorAll("h2")].map(h => h.textContent), external: external()});
"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("html") / "run"
    Runner(RunConfig(sources=["oracle", "random", "target_box"], n=6), run, progress=False, log=lambda _: None).run()
    build_report(run, log=lambda _: None, dpi=60)
    return run


def test_html_is_self_contained(report_dir):
    page = (report_dir / "report.html").read_text()
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(list((report_dir / "figures").iterdir()))
    assert page.count("<table>") >= 3 and "<th>Method</th>" in page
    assert "Directional attribution" in page and "oracle" in page


def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    check = probe_page(report_dir / "report.html", PROBE, tmp_path)
    n_figures = len(list((report_dir / "figures").iterdir()))
    assert check["images"] == n_figures and check["loaded"] == n_figures, check
    assert all(w > 100 for w in check["widths"])
    assert check["tables"] >= 3 and check["rows"] >= 3 and check["external"] == 0
    assert any("Directional attribution" in h for h in check["headings"])
    # a screenshot is not blank
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,2000", f"--screenshot={shot}",
                    (report_dir / "report.html").as_uri()], capture_output=True, timeout=120)
    import numpy as np
    from PIL import Image

    assert shot.is_file() and np.asarray(Image.open(shot).convert("L")).std() > 10


@pytest.mark.slow
def test_pdf_figures_and_an_html_with_png_copies(tmp_path):
    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle"], n=3), run, progress=False, log=lambda _: None).run()
    rep = build_report(run, log=lambda _: None, fmt="pdf", dpi=40)
    assert rep["figures"] and all(rel.endswith(".pdf") for rel in rep["figures"].values())
    for rel in rep["figures"].values():
        assert (run / rel).read_bytes().startswith(b"%PDF")
    page = (run / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(rep["figures"])
    assert "![per_class](figures/per_class.pdf)" in (run / "report.md").read_text()
