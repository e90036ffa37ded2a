"""Ground-truth metrics (creg.core.ground_truth), DAE with A's own cells left out, and CREG's no-signal
rule: hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from creg.core.ground_truth import causal_cells, causal_mass, causal_rank, ground_truth_scores, logit_gap, ranks, spearman
from creg.core.records import SampleRecord
from creg.core.sample import make_sample
from creg.explain.pipeline import ScoringSettings, dae_without_reference, reference_cells
from creg.plugins.relevance import RelevanceMap


def test_logit_gap():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [1.0, 3.0, 2.0, 0.0]])
    assert logit_gap(logits, torch.tensor([1, 0])).tolist() == [1.0, -2.0]  # 3 - 2; 1 - 3


def test_causal_cells_hold_the_share():
    e = torch.tensor([[4.0, -3.0], [2.0, 1.0]])  # |e| sorted 4 3 2 1, cumulative 4 7 9 10
    assert causal_cells(e, 0.7).tolist() == [[True, True], [False, False]]  # 7 >= 7
    assert causal_cells(e, 0.95).tolist() == [[True, True], [True, True]]  # 9 < 9.5: all four
    assert causal_cells(e, 0.4).tolist() == [[True, False], [False, False]]
    assert causal_cells(torch.zeros(2, 2)) is None


def test_causal_cells_include_ties():
    e = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert causal_cells(e, 0.3).all()


def test_causal_mass():
    e = torch.tensor([[4.0, -3.0], [2.0, 1.0]])
    r = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    assert causal_mass(r, e, 0.7) == pytest.approx(2 / 4)
    assert causal_mass(torch.tensor([[1.0, -5.0], [float("nan"), 1.0]]), e, 0.7) == pytest.approx(1 / 2)  # cleaned
    assert causal_mass(torch.zeros(2, 2), e) is None
    assert causal_mass(r, torch.zeros(2, 2)) is None


def test_ranks_average_ties():
    assert ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_spearman():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 4.0])
    assert spearman(a, b) == pytest.approx(1 - 6 * 2 / (4 * 15))  # d = 0, -1, 1, 0: 0.8
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, torch.ones(4)) is None


def test_causal_rank_uses_magnitudes_and_in_image_cells():
    e = torch.tensor([[-4.0, 3.0], [2.0, 100.0]])
    r = torch.tensor([[4.0, 3.0], [2.0, 0.0]])
    assert causal_rank(r, e) == pytest.approx(spearman(torch.tensor([4.0, 3, 2, 0]), torch.tensor([4.0, 3, 2, 100])))
    inside = torch.tensor([[True, True], [True, False]])
    assert causal_rank(r, e, inside) == pytest.approx(1.0)


def test_ground_truth_scores_need_the_same_grid():
    e = torch.tensor([[4.0, -3.0], [2.0, 1.0]])
    assert ground_truth_scores(torch.ones(3, 3), e) is None
    scores = ground_truth_scores(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), e)
    assert scores == {"causal_mass": 1.0, "causal_rank": pytest.approx(spearman(torch.tensor([1.0, 0, 0, 0]),
                                                                                torch.tensor([4.0, 3, 2, 1])))}


def _sample():
    from PIL import Image

    # A centred at (20, 50), B at (80, 50): B is right of A (true angle 0)
    return make_sample(id="s", image=Image.new("RGB", (100, 100)), image_size=(100, 100), ref_name="a",
                       ref_box={"x0": 10, "y0": 40, "x1": 30, "y1": 60}, tgt_name="b",
                       tgt_box={"x0": 70, "y0": 40, "x1": 90, "y1": 60}, relation="right")


def test_reference_cells_are_the_cells_on_a():
    from creg.core.compass import uniform_cell_xy

    xy = uniform_cell_xy((10, 10), (100, 100))  # 10 px cells, centres at 5, 15, ...
    cells = reference_cells(xy, _sample())
    assert cells.nonzero().tolist() == [[r, c] for r in (4, 5) for c in (1, 2)]  # x 10..30, y 40..60; edges only touch


def test_dae_without_reference():
    """All relevance on A's cells plus one cell straight above A's centre: the paper's DAE is pulled
    around by A's cells; left out, the evidence points up (90 deg from the true direction)."""
    s = _sample()
    values = torch.zeros(10, 10)
    values[4:6, 1:3] = 1.0  # A's own cells
    values[1, 1] = 0.5  # centre (15, 15): from A's centre (20, 50), atan2(35, -5)
    rmap = RelevanceMap(values=values)
    expected = math.degrees(math.atan2(35, -5))
    assert dae_without_reference(s, rmap, ScoringSettings(), s.ref_box) == pytest.approx(expected)
    values[1, 1] = 0.0
    assert dae_without_reference(s, RelevanceMap(values=values), ScoringSettings(), s.ref_box,
                                 np.random.default_rng(0)) in {float(a) for a in range(0, 181, 45)}  # no mass: a sector centre


def _record(**kw):
    base = dict(sample_id="s", source="x", relation="right", true_angle=0.0, compass=[1.0], peak_sector=0,
                peak_angle=0.0, sector_angle=0.0, dae=10.0, dae_sector=10.0, ea=True)
    return SampleRecord(**{**base, **kw})


def test_metrics_are_registered_and_read_the_records():
    from creg.plugins.metric import metric_registry

    reg = metric_registry()
    recs = [_record(dae_no_ref=30.0, ground_truth={"causal_mass": 0.5, "causal_rank": 0.25}),
            _record(dae_no_ref=60.0, ground_truth={"causal_mass": None, "causal_rank": -0.5}),
            _record()]
    np.testing.assert_array_equal(reg["dae_no_ref"].values(recs), [30.0, 60.0, np.nan])
    np.testing.assert_array_equal(reg["ea_no_ref"].values(recs), [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(reg["causal_mass"].values(recs), [0.5, np.nan, np.nan])
    np.testing.assert_array_equal(reg["causal_rank"].values(recs), [0.25, -0.5, np.nan])
    assert reg["causal_mass"].summarize(recs[2:])[0] is None  # no ground truth: no number, no column


def test_creg_reports_no_signal_below_min_signal():
    """A model whose logits do not depend on the vision tokens at CREG's layers gives an all-zero
    map (flag no_mass), unless min_signal is 0."""
    from creg.explain.context import ExplainContext
    from creg.explain.pipeline import score_map
    from creg.sources.contrastive_multilayer import CregSource
    from creg_planted.adapter import PlantedAdapter
    from creg_synthetic.benchmark import SyntheticBenchmark

    samples = list(SyntheticBenchmark(n=2, seed=0).samples())
    early = PlantedAdapter(read_block=1)  # read before -2..-5: only round-off reaches them
    for src, zero in ((CregSource(), True), (CregSource(min_signal=0), False)):
        maps = src.explain(ExplainContext.for_sources(samples, early, [src]))
        assert all(bool((m.values == 0).all()) == zero for m in maps)
        if zero:
            row, _ = score_map(samples[0], maps[0], ScoringSettings(), source="creg")
            assert "no_mass" in row.flags
    src = CregSource()
    maps = src.explain(ExplainContext.for_sources(samples, PlantedAdapter(), [src]))
    assert all(m.values.max() > 0 for m in maps)


def test_causal_rank_ties_effects_below_the_floor():
    """Effects under 1% of the largest count as 0: [100, 0.5, 0.2, 50] ranks as [4, 1.5, 1.5, 3]."""
    e = torch.tensor([[100.0, 0.5], [0.2, 50.0]])
    r = torch.tensor([[3.0, 1.0], [2.0, 2.5]])  # ranks 4 1 2 3
    assert causal_rank(r, e) == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    assert causal_rank(r, e, floor=0.0) == pytest.approx(0.8)  # ranks 4 2 1 3: d = 0, 1, -1, 0
