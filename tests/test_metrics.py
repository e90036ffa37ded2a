"""DAE (Eq. 6), EA (Eq. 7), the paper's metric validation (§4) and bootstrap CIs."""

import math

import numpy as np
import pytest

from creg.core.compass import project_to_compass
from creg.explain.context import ExplainContext
from creg.core.measures import (
    bootstrap_ci,
    direction_alignment_error,
    edge_accuracy,
    paired_bootstrap_pvalue,
    random_peak_expectation,
)
from creg.sources.geometry import OracleSource, RandomDirectionSource
from creg_synthetic.scenes import scene_sample


def test_eq6_dae_is_circular_and_in_0_180():
    peak = np.array([0.0, 350.0, 90.0, 180.0, 45.0, 270.0])
    true = np.array([10.0, 10.0, 270.0, 0.0, 0.0, 45.0])
    assert direction_alignment_error(peak, true).tolist() == pytest.approx([10, 20, 180, 180, 45, 135])


def test_eq7_ea_counts_dae_up_to_45_inclusive():
    assert edge_accuracy([0.0, 45.0, 45.0000001, 90.0]) == 0.5
    assert math.isnan(edge_accuracy([]))


def test_random_peak_expectation_matches_the_paper_formula():
    """§4: uniformly random peaks over K = 8 sectors: E[DAE] = 90 deg and E[EA] = 2/K = 0.25.

    For K = 4 only the own quadrant lies within 45 deg of the truth: E[EA] = 1/4 as well."""
    dae, ea = random_peak_expectation(8)
    assert dae == pytest.approx(90.0, abs=1e-6)
    assert ea == pytest.approx(0.25, abs=1e-3)
    assert random_peak_expectation(4) == pytest.approx((90.0, 0.25), abs=1e-3)


def _scores(source, n=400, seed=0):
    samples = [scene_sample(seed, i) for i in range(n)]
    ctx = ExplainContext(samples, None, seed=seed)
    maps = source.explain(ctx)
    dae = []
    for i, (s, m) in enumerate(zip(samples, maps)):
        c = project_to_compass(m.values, s.ref_box, s.tgt_box, s.image_size, cell_xy=m.cell_xy, rng=ctx.rng(i, "tie"))
        dae.append(float(direction_alignment_error(c.peak_angle, s.angle)))
    return np.array(dae)


def test_metric_validation_geometry_oracle_gives_dae_0_and_ea_1():
    """§4 / §6.3: the geometry oracle (all relevance at B) achieves DAE 0 and EA 1."""
    dae = _scores(OracleSource(), n=200)
    assert dae.max() < 1e-9
    assert edge_accuracy(dae) == 1.0


def test_metric_validation_random_baseline_is_at_chance():
    """§4: a random-sector baseline gives DAE ~ 90 deg and EA ~ 0.25.

    Tolerance from the sample size: with n = 400, DAE is uniform on [0, 180] (sd 52 deg), so its
    mean has standard error 52/sqrt(400) = 2.6 deg; EA is Bernoulli(0.25), standard error
    sqrt(.25 * .75 / 400) = 0.022. We accept 3 standard errors: 90 +- 8 deg and 0.25 +- 0.065.
    """
    dae = _scores(RandomDirectionSource(), n=400)
    assert abs(dae.mean() - 90.0) < 8.0
    assert abs(edge_accuracy(dae) - 0.25) < 0.065


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(3).normal(10, 2, size=200)
    a = bootstrap_ci(x, seed=1)
    assert a == bootstrap_ci(x, seed=1)
    assert a[0] < x.mean() < a[1]
    # the 95% interval of a mean is about +-1.96 standard errors
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert (a[1] - a[0]) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci([], seed=0) is None


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 300)
    assert paired_bootstrap_pvalue(a + 1.0, a, seed=0)["p"] < 0.01
    b = a + rng.normal(0, 1, 300)
    res = paired_bootstrap_pvalue(b, a + rng.normal(0, 1, 300), seed=0)
    assert res["p"] > 0.05 or abs(res["diff"]) < 0.2
