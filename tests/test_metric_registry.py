"""The metric registry (issue 11, item 4): a new metric is one module, registered by a plugin,
and summary.json, table.md, the report and the paired tests show it."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import creg
from creg.plugins.manager import discover
from creg.summary import breakdowns
from creg.summary import paired_tests
from creg.report.report import report_markdown
from creg.execution.runner import Runner, RunConfig
from creg.plugins.metric import metric_registry
from creg.store import RunStore

torch.set_num_threads(1)


def east_share(records):
    """1 where the compass peak is the east sector (0), else 0."""
    return np.array([float(r.peak_sector == 0) for r in records], dtype=np.float64)


def toy_plugin():
    mod = types.ModuleType("creg_toymetric")

    @creg.hookimpl
    def register_metrics(register):
        register("east", east_share, higher_is_better=True, label="East", digits=2, ci_digits=2,
                 chance=lambda k: 1.0 / k)
        register("dae", east_share, higher_is_better=True)  # a clash: creg's own DAE wins

    def register_metrics_unmarked(register):  # no @hookimpl: not a hook implementation, never called
        raise AssertionError("called a function that is not a hook implementation")

    mod.register_metrics = register_metrics
    mod.not_a_hook = register_metrics_unmarked
    return mod


def test_builtin_metrics_register_through_the_entry_point_like_any_plugin():
    reg = metric_registry()
    assert reg.names()[:4] == ["dae", "ea", "dae_sector", "cos_peak"]
    assert reg["dae"].plugin == "creg.metrics.builtin" and reg["dae"].dist.startswith("creg ")
    assert reg["dae"].higher_is_better is False and reg["ea"].higher_is_better


def test_a_toy_metric_from_a_fake_plugin_is_in_summary_table_report_and_tests(tmp_path):
    plugins = discover()
    plugins.add_module(toy_plugin())
    reg = metric_registry(plugins)
    assert reg.names()[-1] == "east" and reg["dae"].plugin == "creg.metrics.builtin"
    # the clash is recorded with the other kinds' clashes, in their words
    assert "metric 'dae' from (local) (creg_toymetric) ignored: already registered by creg " in " ".join(plugins.clashes)

    res = Runner(RunConfig(sources=["oracle", "random"], n=24), tmp_path / "r", plugins=plugins, progress=False,
                 log=lambda m: None).run()
    records = RunStore.read(tmp_path / "r").records()
    oracle = [r for r in records if r.source == "oracle"]
    want = float(np.mean([r.peak_sector == 0 for r in oracle]))
    s = res.summary["sources"]["oracle"]
    assert s["east"] == pytest.approx(want) and s["east_ci"] is not None
    assert "east" in s["by_class"]["left"] and res.summary["metrics"]["east"]["plugin"] == "creg_toymetric"
    assert "| East↑ [95% CI] |" in res.table.splitlines()[2]
    row = next(l for l in res.table.splitlines() if l.startswith("| oracle |"))
    assert f"{want:.2f}" in row.split("|")[-2]

    tests = paired_tests.pairwise_tests(records, n_boot=200, metrics=reg)
    assert {t["metric"] for t in tests} == {"dae", "ea", "east"}
    pc = breakdowns.per_class(records, reg)
    assert pc["chance"]["east"] == pytest.approx(1 / 8) and "east" in pc["sources"]["oracle"]["left"]
    md = report_markdown({"config": RunConfig().model_dump(), "summary": res.summary, "per_class": pc,
                          "correctness": None, "pairwise": tests, "flip": None, "figures": {}, "run_dir": "r"}, reg)
    assert "East↑ [95% CI]" in md and "| oracle | random | East |" in md and "DAE / EA / East" in md


def test_a_metric_returning_the_wrong_shape_is_named():
    plugins = discover()
    mod = types.ModuleType("creg_badmetric")
    mod.register_metrics = creg.hookimpl(lambda register: register("bad", lambda recs: np.zeros(1), higher_is_better=True))
    plugins.add_module(mod)
    reg = metric_registry(plugins)
    with pytest.raises(ValueError, match="metric 'bad' .* shape"):
        reg["bad"].values([object(), object()])


def test_a_stale_install_without_creg_metrics_is_refused_before_the_run_starts(tmp_path, monkeypatch):
    from creg.core.errors import RunError
    from creg.metrics.builtin import register_metrics
    from creg.plugins import manager as plugins_mod

    real = plugins_mod.entry_points
    monkeypatch.setattr(plugins_mod, "entry_points",  # an install whose metadata predates the entry point
                        lambda group: [ep for ep in real(group=group) if ep.name != "creg_metrics"])
    plugins = discover()
    with pytest.raises(RunError, match="reinstall creg"):
        Runner(RunConfig(sources=["oracle"], n=2), tmp_path / "r", plugins=plugins, progress=False, log=lambda m: None)
    assert not (tmp_path / "r").exists()
    assert register_metrics  # the module itself is importable: only the entry point is missing
