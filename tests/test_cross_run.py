"""Several runs: the comparison page and forest plot (``creg report A B``), the model's name instead of
its path, and ``creg.read_runs``. The page is checked in headless Chromium: its figure loads, its table
of contents points at its sections, nothing is fetched."""

from __future__ import annotations

import html
import json
import re

import pytest
import torch
from click.testing import CliRunner

from browser_check import probe_page
from creg.cli import cli
from creg.report.cross_run import model_name
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross")
    cfg = dict(sources=["oracle", "random", "target_box"], n=5)
    Runner(RunConfig(**cfg), root / "run-a", progress=False, log=lambda _: None).run()
    Runner(RunConfig(**{**cfg, "k": 4}), root / 'run-<b>"', progress=False, log=lambda _: None).run()
    out = root / "cmp"
    result = CliRunner().invoke(cli, ["report", str(root / "run-a"), str(root / 'run-<b>"'), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return root, out


def test_model_name_is_the_hub_id_or_the_preset_never_a_path(tmp_path):
    assert model_name({"run": {"adapter": "qwen2vl-7b"}, "adapter": {"model": "Qwen/Qwen2-VL-7B-Instruct"}}) == \
        "Qwen/Qwen2-VL-7B-Instruct"
    assert model_name({"run": {"adapter": "qwen2vl-toy"}, "adapter": {"model": "/home/me/creg/creg/qwen2vl-toy"}}) \
        == "qwen2vl-toy"
    ckpt = tmp_path / "org" / "my-finetune"
    ckpt.mkdir(parents=True)
    assert model_name({"run": {"adapter": "qwen2vl", "model": str(ckpt)}, "adapter": {"model": str(ckpt)}}) == \
        "qwen2vl (my-finetune)"
    assert model_name({"run": {"adapter": "none"}, "adapter": None}) == "none"


def test_comparison_writes_a_page_and_a_forest_plot(compared):
    root, out = compared
    assert {p.name for p in out.iterdir()} >= {"comparison.md", "comparison.json", "comparison.html", "comparison_forest.png"}
    page = (out / "comparison.html").read_text()
    assert "default-src 'none'" in page
    assert 'run-<b>"' not in page and html.escape('run-<b>"', quote=True) in page  # a directory name is text
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == 1 and srcs[0].startswith("data:image/png;base64,")
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]+)"', page))
    comparison = json.loads((out / "comparison.json").read_text())
    assert [r["model_name"] for r in comparison["runs"]] == ["none", "none"]


def test_read_runs_labels_every_row(compared):
    pytest.importorskip("pandas")
    import creg

    root, _ = compared
    frames = creg.read_runs([root / "run-a", root / 'run-<b>"'])
    assert list(frames.records.columns[:2]) == ["run", "model"]
    assert set(frames.records["run"]) == {"run-a", 'run-<b>"'} and set(frames.summary["model"]) == {"none"}
    assert len(frames.records) == 2 * 5 * 3 and len(frames.samples) == 10
    assert set(frames.config) == {"run-a", 'run-<b>"'}


PROBE = """
const ids = [...document.querySelectorAll("nav a")].map(a => a.getAttribute("href").slice(1));
report({external: external(), images: images(), toc: ids, missing: ids.filter(i => !document.getElementById(i)),
        tables: document.querySelectorAll("table").length});
"""


@pytest.mark.slow
def test_comparison_page_renders_in_headless_chromium(compared, tmp_path):
    _, out = compared
    check = probe_page(out / "comparison.html", PROBE, tmp_path)
    assert check["external"] == 0, check
    assert check["images"] == {"n": 1, "loaded": 1}
    assert check["missing"] == [] and "forest" in check["toc"] and "runs" in check["toc"]
    assert check["tables"] >= 3
