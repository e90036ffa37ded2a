"""The worked example of docs/user-guide.md, "Adding a metric", works as written: its module, its
registration line and its contract test, installed as a third-party distribution would be."""

from __future__ import annotations

import json
import sys
import tomllib

import pytest
from click.testing import CliRunner

from creg.cli import cli
from creg.plugins import manager as plugins_mod
from creg.plugins.metric import metric_registry
from creg.testing import contract_records
from doc_blocks import doc_block
from fake_entry_points import entry_point



def block(name: str) -> str:
    return doc_block("user-guide.md", f"metric-example:{name}")


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """The guide's module as my_metrics/top2.py, behind the guide's entry-point line."""
    (tmp_path / "my_metrics").mkdir()
    (tmp_path / "my_metrics" / "__init__.py").write_text("")
    (tmp_path / "my_metrics" / "top2.py").write_text(block("module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    ((name, value),) = tomllib.loads(block("entry-point"))["project"]["entry-points"]["creg"].items()
    real = plugins_mod.entry_points
    monkeypatch.setattr(plugins_mod, "entry_points",
                        lambda group: list(real(group=group)) + [entry_point(name, value, "my-metrics")])
    monkeypatch.delenv("CREG_STRICT_PLUGINS", raising=False)
    plugins_mod.get_plugins(refresh=True)
    yield
    monkeypatch.undo()
    for m in ("my_metrics", "my_metrics.top2"):
        sys.modules.pop(m, None)
    plugins_mod.get_plugins(refresh=True)


def test_the_guide_metric_passes_the_guide_contract_test(installed):
    scope: dict = {"__name__": "test_top2"}
    exec(compile(block("test"), "user-guide.md", "exec"), scope)  # noqa: S102 - our own documentation
    suite = scope["TestTop2"]()
    metric = metric_registry()["top2"]
    assert metric.dist == "my-metrics 1.0" and metric.higher_is_better
    records = contract_records()
    checks = [n for n in dir(suite) if n.startswith("test_")]
    assert len(checks) >= 8
    for check in checks:
        fn = getattr(suite, check)
        params = fn.__code__.co_varnames[1:fn.__code__.co_argcount]
        fn(*[{"metric": metric, "records": records}[p] for p in params])


def test_the_guide_metric_is_listed_and_in_a_runs_table(installed, tmp_path):
    res = CliRunner().invoke(cli, ["list", "top2"])
    assert res.exit_code == 0, res.output
    assert "my-metrics 1.0" in res.output and "compute: my_metrics.top2:top2_hit" in res.output
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle,random", "--limit", "8",
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "Top-2↑ [95% CI]" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"]["oracle"]["top2"] == 1.0  # the oracle's peak is the true direction
    assert "top2_ci" in summary["sources"]["random"]
