"""Metrics are plugins like the others: `creg list` shows them with their distribution and settings,
their clashes are reported in the other kinds' words, and a run records where each came from."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from creg.cli import cli
from creg.plugins import manager as plugins_mod
from creg.plugins.manager import PluginLoadError, PluginTypeError, discover
from creg.plugins.metric import metric_registry
from fake_entry_points import entry_point

PLUGIN = """
import numpy as np
import creg

def east_share(records):
    return np.array([float(r.peak_sector == 0) for r in records])

NOT_A_FUNCTION = 3

@creg.hookimpl
def register_metrics(register):
    register("east", "metric_plugin:east_share", higher_is_better=True, label="East", digits=2,
             description="peak in the east sector")
    register("dae", east_share, higher_is_better=True)   # clashes with creg's own: creg's wins
    register("a/b", east_share, higher_is_better=True)   # not a name summary.json and the command line take
"""

BROKEN = """
    register("lopsided", east_share, higher_is_better=True, table="sometimes", description="bad table")
    register("numb", "metric_plugin:NOT_A_FUNCTION", higher_is_better=True)
"""


def _install(monkeypatch, tmp_path, text: str) -> None:
    """``metric_plugin`` as the entry point of distribution aaa-metrics 1.0 (it sorts before creg)."""
    (tmp_path / "metric_plugin.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = plugins_mod.entry_points
    monkeypatch.setattr(plugins_mod, "entry_points",
                        lambda group: [entry_point("metric_plugin", "metric_plugin", "aaa-metrics")] + list(real(group=group)))
    monkeypatch.delenv("CREG_STRICT_PLUGINS", raising=False)
    plugins_mod.get_plugins(refresh=True)


@pytest.fixture
def third_party(monkeypatch, tmp_path):
    _install(monkeypatch, tmp_path, PLUGIN)
    yield
    monkeypatch.undo()
    sys.modules.pop("metric_plugin", None)
    plugins_mod.get_plugins(refresh=True)


@pytest.fixture
def broken_third_party(monkeypatch, tmp_path):
    _install(monkeypatch, tmp_path, PLUGIN + textwrap.indent(textwrap.dedent(BROKEN), "    "))
    yield
    monkeypatch.undo()
    sys.modules.pop("metric_plugin", None)
    plugins_mod.get_plugins(refresh=True)


def test_creg_own_metrics_win_and_the_clash_is_recorded_like_the_other_kinds(third_party):
    p = discover()
    assert p.get("metric", "dae").dist.startswith("creg ") and p.get("metric", "dae").plugin == "creg.metrics.builtin"
    east = p.get("metric", "east")
    assert (east.dist, east.plugin, east.description) == ("aaa-metrics 1.0", "metric_plugin", "peak in the east sector")
    assert any(c.startswith("metric 'dae' from aaa-metrics 1.0 (metric_plugin) ignored: already registered by creg ")
               and c.endswith("(creg.metrics.builtin)") for c in p.clashes), p.clashes
    assert [f.error for f in p.failures if f.entry_point == "metric_plugin"] == [
        "metric name 'a/b' refused: use up to 64 letters, digits, '_' and '-'"]
    reg = metric_registry(p)
    assert reg.names()[-1] == "east" and reg["east"].dist == "aaa-metrics 1.0"
    assert reg["east"].compute.__module__ == "metric_plugin"  # "module:attr", imported when collected


def test_creg_list_shows_metrics_with_their_distribution_settings_and_clashes(third_party):
    res = CliRunner().invoke(cli, ["list"])
    assert res.exit_code == 0, res.output
    assert "Metrics (summary.json, table.md, report):" in res.output
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("east "))
    assert "aaa-metrics 1.0" in line and "peak in the east sector" in line and "[higher is better]" in line
    dae = next(ln for ln in res.output.splitlines() if ln.strip().startswith("dae "))
    assert "creg " in dae and "[lower is better]" in dae
    assert "Name clash: metric 'dae' from aaa-metrics 1.0 (metric_plugin) ignored: already registered by creg" in res.output

    res = CliRunner().invoke(cli, ["list", "east"])
    assert res.exit_code == 0, res.output
    for setting in ("higher_is_better: True", "label: East↑", "compute: metric_plugin:east_share", "aggregate: mean",
                    "digits: 2", "table: if_present", "paired: True", "chance_line: False"):
        assert f"      {setting}\n" in res.output, setting

    data = json.loads(CliRunner().invoke(cli, ["list", "--json"]).stdout)
    metrics = {m["name"]: m for m in data["metrics"]}
    assert metrics["east"]["dist"] == "aaa-metrics 1.0" and metrics["east"]["settings"]["compute"] == "metric_plugin:east_share"
    assert metrics["dae"]["settings"]["higher_is_better"] is False and metrics["dae"]["settings"]["aggregate"] == "mean"
    assert any(c.startswith("metric 'dae' from aaa-metrics 1.0") for c in data["clashes"])


def test_a_run_warns_of_a_metric_clash_and_records_each_metrics_distribution(third_party, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--limit", "4", "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "warning: plugin name clash: metric 'dae' from aaa-metrics 1.0 (metric_plugin) ignored" in res.output
    stored = json.loads((out / "config.json").read_text())["plugins"]
    assert stored["metrics"]["east"] == {"name": "east", "plugin": "metric_plugin", "dist": "aaa-metrics 1.0"}
    assert stored["metrics"]["dae"]["dist"].startswith("creg ")
    assert any(c.startswith("metric 'dae' from aaa-metrics 1.0") for c in stored["clashes"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["east"]["dist"] == "aaa-metrics 1.0" and summary["sources"]["oracle"]["east"] is not None
    assert summary["metrics"]["dae"]["higher_is_better"] is False  # creg's DAE, not the clashing one


def test_a_broken_metric_is_named_in_creg_list_and_stops_a_run_in_one_line(broken_third_party, tmp_path):
    p = discover()
    with pytest.raises(PluginLoadError, match=r"metric 'lopsided' \(aaa-metrics 1.0, metric_plugin\): table must be one of"):
        metric_registry(p)
    with pytest.raises(PluginTypeError, match=r"metric 'numb' \(aaa-metrics 1.0, metric_plugin\): registered int 3, "
                                              r"which is not a function of the records"):
        p.get("metric", "numb").load()

    res = CliRunner().invoke(cli, ["list", "lopsided"])
    assert res.exit_code == 0 and "[fails to load: metric 'lopsided' (aaa-metrics 1.0, metric_plugin): table must be" \
        in res.output, res.output
    data = json.loads(CliRunner().invoke(cli, ["list", "--json"]).stdout)
    assert "table must be one of" in {m["name"]: m for m in data["metrics"]}["lopsided"]["error"]

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--limit", "2", "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 2 and "metric 'lopsided'" in res.output and "Traceback" not in res.output, res.output
    assert not out.exists()
