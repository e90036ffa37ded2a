"""The one warnings list (issue 12 item 5): shortfall, accuracy at chance, sources without a figure,
flagged records -- computed from a run's config, summary and records, shown in table.md and report.md."""

from __future__ import annotations

import torch

from creg.core.records import SampleRecord
from creg.summary.aggregate import markdown_table, summarize
from creg.summary.warnings import CHANCE_ACCURACY, run_warnings

torch.set_num_threads(1)


def rec(sid, source, relation="left", dae=10.0, correct=None, flags=()):
    return SampleRecord(sample_id=sid, source=source, relation=relation, correct=correct,
                        pred=None if correct is None else (relation if correct else "right"),
                        true_angle=0.0, compass=[1.0] + [0.0] * 7, peak_sector=0, peak_angle=0.0, sector_angle=0.0,
                        dae=dae, dae_sector=dae, ea=None if dae is None else dae <= 45, flags=list(flags))


COCO_CONFIG = {"run": {"bench": "coco_pairs", "n": 300},
               "benchmark": {"name": "coco_pairs", "n": 300,
                             "per_class": {"left": 10, "right": 12, "above": 8, "below": 4},
                             "shortfall": {"left": 65, "right": 63, "above": 67, "below": 71},
                             "warnings": ["class 'below': only 4 of 75 requested"]}}


def _summary(records, **extra):
    return summarize(records, sorted({r.source for r in records}), complete=True, **extra)


def kinds(ws):
    return [w["kind"] for w in ws]


def test_a_shortfall_says_asked_got_and_per_class():
    records = [rec(f"s{i}", "creg") for i in range(34)]
    ws = run_warnings(COCO_CONFIG, _summary(records, skipped={"unreadable image": 2}), records)
    short = next(w for w in ws if w["kind"] == "shortfall")
    assert (short["asked"], short["got"]) == (300, 34)
    assert "asked for 300 samples, got 34" in short["message"]
    assert "left 10 of 75" in short["message"] and "below 4 of 75" in short["message"]
    assert "unreadable image 2" in short["message"]
    assert any(w["kind"] == "benchmark" and "only 4 of 75" in w["message"] for w in ws)


def test_no_shortfall_when_the_run_got_what_it_asked_or_is_partial():
    records = [rec(f"s{i}", "creg") for i in range(5)]
    cfg = {"run": {"bench": "synthetic", "n": 5}, "benchmark": {"name": "synthetic", "n": 5}}
    assert run_warnings(cfg, _summary(records), records) == []
    partial = summarize(records, ["creg"], complete=False)
    cfg = {"run": {"bench": "synthetic", "n": 50}, "benchmark": {"name": "synthetic", "n": 50}}
    assert kinds(run_warnings(cfg, partial, records)) == ["partial"]


def test_accuracy_at_or_below_chance_is_flagged_next_to_the_number():
    # 1 of 4 correct = 0.25 = chance for 4 answers: flagged; 30 of 40 (CI well above chance) is not
    at_chance = [rec(f"s{i}", "creg", correct=(i == 0)) for i in range(4)]
    summary = _summary(at_chance)
    summary["warnings"] = run_warnings({}, summary, at_chance)
    assert summary["vlm_accuracy"] == CHANCE_ACCURACY == 0.25
    assert kinds(summary["warnings"]) == ["accuracy_at_chance"]
    table = markdown_table(summary)
    line = next(line for line in table.splitlines() if line.startswith("VLM accuracy"))
    assert "at or below chance (0.25 for 4 answers)" in line
    assert "**Warnings**" in table
    above = [rec(f"s{i}", "creg", correct=(i < 30)) for i in range(40)]
    assert run_warnings({}, _summary(above), above) == []


def test_sources_without_a_figure_and_flagged_records_are_named_per_source():
    records = [rec("a", "creg"), rec("b", "creg", flags=["no_mass"]),
               rec("a", "noise", dae=None, flags=["zero_distance"]), rec("b", "noise", dae=None, flags=["zero_distance"]),
               rec("a", "ig", flags=["nonfinite_relevance", "tied_peak"])]
    ws = run_warnings({}, _summary(records), records)
    assert {(w["kind"], w.get("source"), w.get("flag")) for w in ws} == {
        ("no_figure", "noise", None), ("flagged", "creg", "no_mass"), ("flagged", "noise", "zero_distance"),
        ("flagged", "ig", "nonfinite_relevance")}  # tied_peak is not a degenerate map
    creg_flag = next(w for w in ws if w.get("source") == "creg")
    assert creg_flag["count"] == 1 and creg_flag["n"] == 2 and "1 of 2 records flagged no_mass" in creg_flag["message"]


def test_a_run_stores_its_warnings_in_summary_json_and_table_md(tmp_path):
    """End to end on a geometry-only run whose benchmark returns fewer samples than asked."""
    from creg.plugins.benchmark import Benchmark
    from creg.execution.runner import Runner, RunConfig
    from creg.store import RunStore

    runner = Runner(RunConfig(adapter="none", sources=["oracle"], bench="synthetic", n=6), tmp_path / "run",
                    progress=False, log=lambda m: None)
    inner = runner.benchmark

    class Short(Benchmark):
        name = "synthetic"

        def samples(self):
            return iter(list(inner.samples())[:4])

        def describe(self):
            return {**inner.describe(), "warnings": ["ran out of scenes"]}

    runner.benchmark = Short(seed=0, n=6)
    result = runner.run()
    store = RunStore.read(tmp_path / "run")
    ws = store.summary()["warnings"]
    assert [w["kind"] for w in ws] == ["shortfall", "benchmark"]
    assert "asked for 6 samples, got 4" in result.table
    assert "ran out of scenes" in (tmp_path / "run" / "table.md").read_text()
