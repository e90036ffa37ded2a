"""The round-off diagnostic (creg/sources/roundoff.py), its run warning and the summary's
diagnostics (creg/summary/diagnostics.py), on hand-computed cases."""

import torch

from creg.plugins.adapter import VisionLayout
from creg.core.records import SampleRecord
from creg.summary.diagnostics import diagnostics_lines, source_diagnostics
from creg.summary.aggregate import summarize
from creg.summary.warnings import run_warnings
from creg.sources.roundoff import ROUNDOFF_RATIO, cancellation_ratio, layer_diagnostics
from creg.core.roundoff import flag_layer, roundoff_flag


def _layout(index):
    return VisionLayout(token_index=torch.tensor(index), grid_hw=(1, len(index)),
                        cell_xy=torch.zeros(1, len(index), 2))


def test_cancellation_ratio_by_hand():
    # vision tokens 1 and 2 (token 0 is text and is left out)
    grad = torch.tensor([[9.0, 9.0], [1.0, 2.0], [1.0, -1.0]])
    hidden = torch.tensor([[1.0, 1.0], [3.0, 1.0], [2.0, 2.0]])
    # token 1: g*h = (3, 2) -> |5|, sum|.| 5; token 2: (2, -2) -> |0|, sum|.| 4  => 5 / 9
    assert abs(cancellation_ratio(grad, hidden, _layout([1, 2])) - 5 / 9) < 1e-12
    assert cancellation_ratio(torch.zeros(3, 2), hidden, _layout([1, 2])) == 0.0


def test_layer_diagnostics_flag_below_the_threshold_only():
    thresholds = {-2: ROUNDOFF_RATIO, -3: 0.02, -4: ROUNDOFF_RATIO}
    extra, flags = layer_diagnostics({-2: ROUNDOFF_RATIO / 10, -3: 0.01, -4: ROUNDOFF_RATIO}, thresholds)
    assert extra == {"cancellation": {"-2": ROUNDOFF_RATIO / 10, "-3": 0.01, "-4": ROUNDOFF_RATIO},
                     "roundoff_threshold": {"-2": ROUNDOFF_RATIO, "-3": 0.02, "-4": ROUNDOFF_RATIO}}
    assert flags == ["roundoff_layer_-2", "roundoff_layer_-3"]
    assert flag_layer(roundoff_flag(-2)) == -2 and flag_layer("no_mass") is None and flag_layer("roundoff_layer_x") is None


def _record(source, flags=(), **extra):
    return SampleRecord(sample_id="s0", source=source, relation="left", true_angle=180.0, compass=[0.25] * 4,
                        peak_sector=2, peak_angle=180.0, sector_angle=180.0, dae=0.0, dae_sector=0.0, ea=True,
                        flags=list(flags), extra=extra)


def test_the_run_warns_once_per_source_and_layer():
    recs = [_record("gradxact", ["roundoff_layer_-2"], cancellation={"-2": 1e-8}),
            _record("gradxact", ["roundoff_layer_-2"], cancellation={"-2": 3e-8}),
            _record("creg", [], cancellation={"-3": 0.01})]
    summary = summarize(recs, ["gradxact", "creg"])
    warned = [w for w in run_warnings({}, summary, recs) if w["kind"] == "roundoff"]
    assert [(w["source"], w["layer"], w["count"], w["n"]) for w in warned] == [("gradxact", -2, 2, 2)]
    assert "round-off at layer -2" in warned[0]["message"]
    assert summary["sources"]["gradxact"]["cancellation"] == {"-2": 2e-8}


def test_summary_shows_the_completeness_gap_per_source():
    recs = [_record("integrated_gradients", completeness_gap=g, ig_steps=s) for g, s in ((0.01, 50), (0.03, 100), (0.02, 50))]
    recs.append(_record("creg"))
    diag = source_diagnostics(recs[:3])
    assert diag["completeness_gap"] == {"n": 3, "median": 0.02, "max": 0.03, "steps": [50, 100]}
    assert source_diagnostics(recs[3:]) == {}
    summary = summarize(recs, ["integrated_gradients", "creg"])
    (line,) = diagnostics_lines(summary)
    assert line.startswith("Completeness gap of integrated_gradients") and "max 0.03" in line and "50-100 steps" in line
    assert "tolerance" not in line  # fixed steps: no tolerance to meet


def test_summary_counts_the_gaps_above_ig_s_tolerance():
    recs = [_record("integrated_gradients", completeness_gap=g, ig_steps=50, ig_tolerance=0.05) for g in (0.01, 0.06, 0.02)]
    assert source_diagnostics(recs)["completeness_gap"] == {"n": 3, "median": 0.02, "max": 0.06, "steps": [50, 50],
                                                            "tolerance": 0.05, "above": 1}
    (line,) = diagnostics_lines(summarize(recs, ["integrated_gradients"]))
    assert line.endswith("max 0.06, 50 steps; tolerance 0.05: 1 above")
    (line,) = diagnostics_lines(summarize(recs[:1] + recs[2:], ["integrated_gradients"]))
    assert line.endswith("; tolerance 0.05: all within")
