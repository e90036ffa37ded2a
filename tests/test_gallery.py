"""``creg gallery RUN_DIR``: one self-contained page; in headless Chromium its filters show exactly the
samples they should, every image loads and nothing is fetched."""

from __future__ import annotations

import html
import json
import re

import pytest
import torch
from click.testing import CliRunner

from browser_check import probe_page
from creg.cli import cli
from creg.report.gallery import build_gallery, pick_samples
from creg.execution.runner import Runner, RunConfig
from creg.store import RunStore

torch.set_num_threads(1)
pytest.importorskip("matplotlib")

SOURCES = ["oracle", "gradnorm", "random"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from creg.testing.fake_vlm import FakeVLMAdapter

    run = tmp_path_factory.mktemp("gallery") / "run"
    Runner(RunConfig(sources=SOURCES, n=8, bench_options={"width": 112, "height": 112}), run,
           adapter=FakeVLMAdapter(patch_px=14, seed=5), progress=False, log=lambda _: None).run()
    build_gallery(run, dpi=30, log=lambda _: None)
    return run


def test_page_is_self_contained_and_escapes_run_text(run_dir):
    page = (run_dir / "gallery.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == 8 * len(SOURCES) + 1 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(h.startswith("#s-") for h in re.findall(r'href="([^"]+)"', page))
    assert "no stored maps" not in page  # every sample's heatmaps came from the run


def test_hostile_names_stay_text(tmp_path):
    """Object names from a dataset are text: a script tag in a name is escaped, never run or linked."""
    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle"], n=2), run, progress=False, log=lambda _: None).run()
    samples = run / "samples.jsonl"
    evil = '<script>alert(1)</script>"><a href="http://x">'
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for r in rows:
        r["ref"]["name"] = evil
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_gallery(run, dpi=20, log=lambda _: None)
    page = (run / "gallery.html").read_text()
    assert evil not in page and html.escape(evil, quote=True) in page
    assert "http://x" not in re.findall(r'href="([^"]+)"', page)


def test_many_samples_keep_the_worst_and_the_wrong_ones():
    from creg.core.records import SampleRecord

    def rec(i, dae, correct=True):
        return SampleRecord(sample_id=f"s{i}", source="a", relation="left", true_angle=0.0, compass=[1.0], peak_sector=0,
                            peak_angle=0.0, sector_angle=0.0, dae=dae, dae_sector=dae, ea=True, flags=[], correct=correct)

    records = [rec(i, float(i)) for i in range(20)] + [rec(20, 0.0, correct=False)]
    order = [f"s{i}" for i in range(21)]
    chosen = pick_samples(records, order, 4)
    assert len(chosen) == 4 and "s19" in chosen and "s20" in chosen
    assert chosen == sorted(chosen, key=order.index)


@pytest.mark.slow
def test_cli_writes_the_gallery(run_dir):
    result = CliRunner().invoke(cli, ["gallery", str(run_dir), "--max-samples", "3", "--dpi", "20"])
    assert result.exit_code == 0, result.output
    assert "3 samples x 3 sources, 3 with stored maps" in result.output
    bad = CliRunner().invoke(cli, ["gallery", str(run_dir / "nope")])
    assert bad.exit_code == 2 and "not a run directory" in bad.output
    build_gallery(run_dir, dpi=30, log=lambda _: None)  # the browser test reads the full page


PROBE = """
const $ = (id) => document.getElementById(id);
const visible = () => [...document.querySelectorAll("section.sample")].filter(s => s.offsetParent !== null);
const set = (id, v) => { $(id).value = v; $(id).dispatchEvent(new Event("change")); };
const out = {external: external(), images: images(), all: visible().length};
set("f-class", "left"); out.left = visible().map(s => s.id);
set("f-class", ""); set("f-correct", "false"); out.wrong = visible().map(s => s.id);
set("f-correct", "");
const box = [...document.querySelectorAll("input.src")].find(b => b.value === "random");
box.checked = false; box.dispatchEvent(new Event("change"));
out.random_cells = [...document.querySelectorAll('figure.cell[data-source="random"]')].filter(c => c.offsetParent !== null).length;
out.cells = [...document.querySelectorAll("figure.cell")].filter(c => c.offsetParent !== null).length;
set("f-dae-min", "90"); out.dae90 = visible().map(s => s.id);
set("f-dae-min", "");
$("worst-cases").click(); out.first = visible()[0].id;
report(out);
"""


@pytest.mark.slow
def test_gallery_filters_work_in_headless_chromium(run_dir, tmp_path):
    check = probe_page(run_dir / "gallery.html", PROBE, tmp_path)
    store = RunStore.read(run_dir)
    ids = list(store.samples())
    anchor = {sid: f"s-{i}" for i, sid in enumerate(ids)}
    facts = store.samples()
    recs = store.records()
    assert check["external"] == 0, check
    assert check["images"]["n"] == check["images"]["loaded"] == 8 * len(SOURCES) + 1
    assert check["all"] == 8
    assert sorted(check["left"]) == sorted(anchor[s] for s, f in facts.items() if f.relation == "left")
    assert sorted(check["wrong"]) == sorted(anchor[s] for s, f in facts.items() if f.correct is False)
    assert check["random_cells"] == 0 and check["cells"] == 8 * 2
    shown = [r for r in recs if r.source != "random" and r.dae is not None]
    assert sorted(check["dae90"]) == sorted({anchor[r.sample_id] for r in shown if r.dae >= 90})
    worst = max(shown, key=lambda r: r.dae)
    assert check["first"] == anchor[worst.sample_id]
