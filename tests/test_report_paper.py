"""The report as a paper author needs it: a Setup section, the method under study against each other
source with every pair in an appendix, per-class CIs, a reading guide under every figure and a table
of contents in report.html."""

from __future__ import annotations

import re

import pytest
import torch

from creg.report.report import build_report, default_baseline
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from creg.testing.fake_vlm import FakeVLMAdapter

    run = tmp_path_factory.mktemp("paper") / "run"
    Runner(RunConfig(sources=["oracle", "creg", "random", "target_box"], n=6, k=4, seed=3,
                     bench_options={"width": 112, "height": 112}), run,
           adapter=FakeVLMAdapter(patch_px=14, seed=5), progress=False, log=lambda _: None).run()
    return run, build_report(run, log=lambda _: None, dpi=40)


def test_default_baseline_is_creg_else_the_first_source():
    assert default_baseline(["oracle", "creg", "random"]) == "creg"
    assert default_baseline(["oracle", "random"]) == "oracle"
    assert default_baseline(["oracle"]) is None


def test_setup_section_names_what_a_methods_paragraph_cites(report):
    run, rep = report
    setup = rep["setup"]
    assert setup["k"] == 4 and setup["seed"] == 3 and setup["sigma_r"] == 0.6 and setup["sources"][1] == "creg"
    assert setup["versions"]["creg"] and setup["versions"]["torch"] and setup["run_finished"] and setup["report_written"]
    md = (run / "report.md").read_text()
    assert md.index("## Setup") < md.index("## Directional attribution")
    assert "| Compass | K = 4, σ_r = 0.6, ρ_r = 2.0" in md and "| Seed | 3 |" in md


def test_creg_against_each_source_and_every_pair_in_the_appendix(report):
    run, rep = report
    assert rep["baseline"] == "creg"
    assert {(t["a"], t["b"]) for t in rep["pairwise"]} == {("oracle", "creg"), ("random", "creg"), ("target_box", "creg")}
    assert len({(t["a"], t["b"]) for t in rep["pairwise_all"]}) == 6
    md = (run / "report.md").read_text()
    assert md.index("## Pairwise differences: creg against each other source") < md.index("## Figures") < \
        md.index("## Appendix: every pair of sources")


def test_per_class_cells_carry_their_intervals(report):
    run, rep = report
    cell = rep["per_class"]["sources"]["creg"]["left"]
    assert len(cell["dae_ci"]) == 2 and cell["dae_ci"][0] <= cell["dae"] <= cell["dae_ci"][1]
    row = next(line for line in (run / "report.md").read_text().splitlines() if line.startswith("| creg |") and " / " in line)
    assert re.search(r"\d+\.\d \[\d+, \d+\] / ", row)


def test_every_figure_says_how_to_read_it_and_the_page_has_contents(report):
    run, rep = report
    md = (run / "report.md").read_text()
    assert "docs/evaluation.md" not in md
    assert md.count("*How to read it:*") == len(rep["figures"])
    page = (run / "report.html").read_text()
    toc = re.search(r'<nav class="toc">(.*?)</nav>', page, re.S).group(1)
    targets = re.findall(r'href="#([^"]+)"', toc)
    assert len(targets) >= 6 and all(f'id="{t}"' in page for t in targets)
