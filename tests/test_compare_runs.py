"""``creg report RUN1 RUN2``: runs side by side with paired tests on shared samples; ``--baseline``;
run-directory patterns resolving to the newest match; the bootstrap p-value floor."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.core.measures import paired_bootstrap_pvalue
from creg.summary import paired_tests
from creg.report.compare import compare_runs, run_labels
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two model runs on the same 6 synthetic samples (two fake models) and one on other samples."""
    from fake_vlm import FakeVLMAdapter

    root = tmp_path_factory.mktemp("runs")
    cfg = dict(sources=["oracle", "random"], n=6, batch_size=6, bench_options={"width": 112, "height": 112})
    for name, seed in (("model-a", 1), ("model-b", 7)):
        Runner(RunConfig(**cfg), root / name, adapter=FakeVLMAdapter(patch_px=14, seed=seed), progress=False,
               log=_quiet).run()
    Runner(RunConfig(**{**cfg, "seed": 3}), root / "other-seed", adapter=FakeVLMAdapter(patch_px=14, seed=1),
           progress=False, log=_quiet).run()
    return root


def test_p_value_never_zero_and_floored_at_one_over_b_plus_one():
    a = np.linspace(0, 1, 50)
    res = paired_bootstrap_pvalue(a + 10.0, a, n_boot=999, seed=0)  # no resample reaches the observed difference
    assert res["p"] == pytest.approx(1 / 1000)
    assert paired_bootstrap_pvalue(a, a, n_boot=99, seed=0)["p"] == 1.0  # identical: every resample is as extreme


def test_p_value_counts_extremes_plus_one():
    d = np.array([1.0, -1.0, 2.0, -1.5, 0.5])
    n_boot, seed = 200, 4
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    extreme = np.count_nonzero(np.abs(means - d.mean()) >= abs(d.mean()) - 1e-12)
    res = paired_bootstrap_pvalue(d, np.zeros_like(d), n_boot=n_boot, seed=seed)
    assert res["p"] == pytest.approx((1 + extreme) / (n_boot + 1))


def test_run_labels_stay_distinct(tmp_path):
    assert run_labels([tmp_path / "a" / "run", tmp_path / "b" / "run"]) == ["a/run", "b/run"]
    assert run_labels([tmp_path / "x", tmp_path / "y"]) == ["x", "y"]


def test_compare_two_models_pairs_shared_samples(two_runs):
    a, b = two_runs / "model-a", two_runs / "model-b"
    cmp = compare_runs([a, b], n_boot=500)
    assert cmp["reference"] == "model-a" and cmp["shared_samples"] == {"model-b": 6}
    assert [r["label"] for r in cmp["runs"]] == ["model-a", "model-b"]
    assert set(cmp["sources"]) == {"oracle", "random"}
    tests = {(t["source"], t["metric"]): t for t in cmp["tests"]}
    # the oracle's compass points at the truth whatever the model: no difference between runs
    assert tests[("oracle", "dae")]["diff"] == 0.0 and tests[("oracle", "dae")]["p"] == 1.0
    acc = tests[(None, "accuracy")]
    ra, rb = cmp["runs"]
    assert acc["n"] == 6 and acc["diff"] == pytest.approx(rb["vlm_accuracy"] - ra["vlm_accuracy"])
    assert all(t["p"] >= 1 / 501 and "p_holm" in t for t in cmp["tests"])


def test_report_several_runs_writes_a_comparison(two_runs, tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["report", str(two_runs / "model-a"), str(two_runs / "model-b"),
                                      str(two_runs / "other-seed"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "comparison.md").read_text()
    assert "Reference run: **model-a**" in md and "| oracle |" in md and "Paired differences between runs" in md
    data = json.loads((out / "comparison.json").read_text())
    assert data["shared_samples"] == {"model-b": 6, "other-seed": 0}  # another seed draws other samples
    assert {t["run"] for t in data["tests"]} == {"model-b"}
    assert "## DAE" in result.output  # the table goes to stdout
    assert not (two_runs / "model-a" / "report.md").exists()  # the runs themselves are untouched


def test_report_baseline_tests_each_source_against_it(tmp_path):
    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random", "target_box"], n=6), run, progress=False, log=_quiet).run()
    result = CliRunner().invoke(cli, ["report", str(run), "--no-figures", "--no-html", "--baseline", "random"])
    assert result.exit_code == 0, result.output
    rep = json.loads((run / "report.json").read_text())
    assert {(t["a"], t["b"]) for t in rep["pairwise"]} == {("oracle", "random"), ("target_box", "random")}
    assert "each source − the baseline **random**" in (run / "report.md").read_text()
    bad = CliRunner().invoke(cli, ["report", str(run), "--no-figures", "--baseline", "creg"])
    assert bad.exit_code == 2 and "no such source" in bad.output and "Traceback" not in bad.output


def test_pairwise_baseline_api_refuses_an_absent_source():
    from creg.core.records import SampleRecord

    recs = [SampleRecord(sample_id="s", source="x", relation="left", true_angle=180.0, compass=[0.125] * 8,
                         peak_sector=0, peak_angle=0.0, sector_angle=45.0, dae=10.0, dae_sector=0, ea=1.0)]
    with pytest.raises(ValueError, match="baseline source 'y'"):
        paired_tests.pairwise_tests(recs, baseline="y")


def test_report_pattern_resolves_to_the_newest_run(two_runs, tmp_path):
    older, newer = two_runs / "model-a", two_runs / "model-b"
    now = time.time()
    os.utime(older, (now - 100, now - 100))
    os.utime(newer, (now, now))
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(two_runs / "model-*"), "--no-figures", "--no-html"])
    assert result.exit_code == 0, result.output
    assert "using the newest" in result.output and str(newer / "report.md") in result.output
    none = runner.invoke(cli, ["report", str(tmp_path / "nothing-*")])
    assert none.exit_code == 2 and "no run directory matches" in none.output
    missing = runner.invoke(cli, ["report", str(tmp_path / "absent")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output


def test_run_summary_holds_the_pairwise_tests(tmp_path):
    """creg run's summary.json carries the report's pairwise tests (same numbers)."""
    from creg.store import RunStore

    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random", "target_box"], n=6), run, progress=False, log=_quiet).run()
    stored = RunStore.read(run).summary()["pairwise"]
    assert {(t["a"], t["b"]) for t in stored} == {("oracle", "random"), ("oracle", "target_box"), ("random", "target_box")}
    again = paired_tests.pairwise_tests(RunStore.read(run).records(), seed=0)
    assert [(t["a"], t["b"], t["metric"], t["p"], t["diff"]) for t in stored] == \
        [(t["a"], t["b"], t["metric"], t["p"], t["diff"]) for t in again]


def test_many_tests_at_once_equal_one_at_a_time():
    """The vectorised bootstrap draws the same resamples as the one-test function (same seed)."""
    from creg.core.measures import paired_bootstrap_many

    rng = np.random.default_rng(0)
    diffs = rng.normal(size=(4, 37))
    diffs[1] = 0.0
    diffs[2] += 2.0
    many = paired_bootstrap_many(diffs, n_boot=2500, seed=9, chunk=600)
    for row, res in zip(diffs, many):
        one = paired_bootstrap_pvalue(row, np.zeros_like(row), n_boot=2500, seed=9)
        assert res["diff"] == pytest.approx(one["diff"], abs=1e-12) and res["p"] == one["p"]
        assert res["ci"] == pytest.approx(one["ci"], abs=1e-12)
    assert many[1]["p"] == 1.0 and many[2]["p"] == pytest.approx(1 / 2501)


def test_report_prints_the_p_value_floor_not_zero():
    from creg.summary.groups import format_p

    assert format_p(1 / 10001, 10000) == "≤1.0e-04"
    assert format_p(0.0123, 10000) == "0.0123" and format_p(2.5e-5, 100000) == "2.5e-05"
    assert format_p(float("nan"), 10000) == "–"
