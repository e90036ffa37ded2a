"""The contract tests every :class:`~creg.plugins.metric.Metric` must pass, as one base class.

A third-party metric package runs them by subclassing :class:`MetricContract` and providing a
``metric`` fixture that returns its :class:`~creg.plugins.metric.Metric`::

    import pytest
    from creg.plugins.metric import metric_registry
    from creg.testing import MetricContract

    class TestEastShare(MetricContract):
        @pytest.fixture
        def metric(self):
            return metric_registry()["east"]      # as the installed plugin registers it

(or build it by hand: ``Metric(name="east", compute=east_share, higher_is_better=True, ...)``).

The metric is computed on the records of a hand-built run (:func:`contract_records`: two sources
over the same samples, with model answers, a sample whose A and B coincide so that DAE is undefined,
causal-occlusion entries on some records and exact causal effects on others); override the
``records`` fixture to add what your metric reads (``extra`` fields, say).

What is checked: the declared fields (a name ``creg list`` and summary.json accept, a label and a
description, ``higher_is_better`` a bool, ``table`` one of its choices, digits, callables);
that the name does not clash with creg's own metrics (its ``NAME`` and ``NAME_ci`` keys included);
``compute`` returns one float per record, finite or NaN (no infinities), the same on a second call,
for each record the same alone as in the batch, without changing the records, and not NaN on every
record of the run; ``aggregate`` gives a finite value and, where ``ci`` is declared, a finite 95%
bootstrap interval ``lo <= hi``, and reduces the last axis (the bootstrap's resamples) as it reduces
one sample; ``chance`` (when given) is finite for 4 and 8 sectors; and ``settings()`` (what
``creg list`` shows) is JSON. Behaviour, not timings.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest

from creg.core.compass import Flag
from creg.core.measures import direction_alignment_error, edge_hit
from creg.core.records import SampleRecord
from creg.plugins.manager import NAME_PATTERNS
from creg.plugins.metric import TABLE_CHOICES, Metric, metric_registry

#: the relations in the order of the class logits (z_1..z_4), and their true angles (deg)
_ANGLES = {"left": 180.0, "right": 0.0, "above": 90.0, "below": 270.0}


def _cos_entry(rng: np.random.Generator, peak: int, k: int) -> dict[str, Any]:
    """A ``cos`` entry shaped like :func:`creg.explain.occlusion.occlusion_entries`' (made-up deltas)."""
    d, d_opp, d_true, d_true_opp, d_ctrl = (float(x) for x in rng.normal(0.0, 1.0, 5))
    adj = [float(x) for x in rng.normal(0.0, 1.0, 2)]
    opp = (peak + k // 2) % k
    return {
        "op": "blur", "log_p0": float(-rng.uniform(0.1, 2.0)),
        "peak": {"sector": peak, "opp_sector": opp, "delta": d, "delta_opp": d_opp, "cos": d_opp - d,
                 "area": 0.1, "area_opp": 0.08},
        "true": {"sector": peak, "opp_sector": opp, "delta": d_true, "delta_opp": d_true_opp,
                 "cos": d_true_opp - d_true, "area": 0.1, "area_opp": 0.08},
        "adjacent": {"sectors": [(peak - 1) % k, (peak + 1) % k], "delta": adj, "delta_mean": float(np.mean(adj)),
                     "cos": float(np.mean(adj)) - d, "areas": [0.1, 0.1]},
        "area_matched": {"sector": (peak + 3) % k, "delta": d_ctrl, "area": 0.1, "area_peak": 0.1, "cos": d_ctrl - d},
    }


def contract_records(n_samples: int = 12, k: int = 8, seed: int = 0,
                     sources: tuple[str, ...] = ("contract_a", "contract_b")) -> list[SampleRecord]:
    """The records of a hand-built run: every source over the same ``n_samples`` samples (``K = k``).

    Sample 0's A and B coincide (``zero_distance``: DAE, EA and the sector DAE undefined); every sample
    has the model's answer (logits, prediction, correctness); every other record has a ``cos`` entry
    (``creg run --cos``) and every third the exact causal effects (``ground_truth``); the peak angles
    are drawn so that both hits and misses of Eq. 7 occur."""
    rng = np.random.default_rng(seed)
    relations = list(_ANGLES)
    records = []
    for s, source in enumerate(sources):
        for i in range(n_samples):
            relation = relations[i % 4]
            true_angle = _ANGLES[relation] + float(rng.uniform(-20.0, 20.0))
            peak_angle = float(np.mod(true_angle + rng.uniform(-150.0, 150.0), 360.0))
            peak = int(round(peak_angle / (360.0 / k))) % k
            sector_angle = peak * 360.0 / k
            compass = rng.dirichlet(np.ones(k))
            compass[peak] = compass.max() + 0.1
            compass = compass / compass.sum()
            logits = [float(x) for x in rng.normal(0.0, 1.0, 4)]
            pred = relations[int(np.argmax(logits))]
            coincide = i == 0
            dae = None if coincide else float(direction_alignment_error(peak_angle, true_angle))
            dae_no_ref = None if coincide else float(direction_alignment_error(peak_angle + rng.uniform(-10, 10),
                                                                                true_angle))
            records.append(SampleRecord(
                sample_id=f"contract-{i}", source=source, relation=relation, pred=pred, correct=pred == relation,
                logits=logits, true_angle=true_angle, compass=[float(x) for x in compass], peak_sector=peak,
                peak_angle=peak_angle, sector_angle=sector_angle, dae=dae,
                dae_sector=None if coincide else float(direction_alignment_error(sector_angle, true_angle)),
                ea=None if dae is None else bool(edge_hit(dae)),
                flags=[Flag.ZERO_DISTANCE.value] if coincide else [],
                cos=_cos_entry(rng, peak, k) if (i + s) % 2 == 0 and not coincide else None,
                dae_no_ref=dae_no_ref,
                ground_truth=({"causal_mass": float(rng.uniform()), "causal_rank": float(rng.uniform(-1, 1))}
                              if i % 3 == 1 else None),
            ))
    return records


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


class MetricContract:
    """Combined contract tests for a :class:`~creg.plugins.metric.Metric`.

    Provide the ``metric`` fixture; override ``records`` when your metric reads what
    :func:`contract_records` does not hold.
    """

    #: the sector counts ``chance`` is checked at
    chance_sectors: ClassVar[tuple[int, ...]] = (4, 8)

    @pytest.fixture
    def metric(self) -> Metric:
        """Provide the :class:`~creg.plugins.metric.Metric` under test."""
        raise NotImplementedError(f"{type(self).__name__} must provide a `metric` fixture")

    @pytest.fixture
    def records(self) -> list[SampleRecord]:
        """The records the metric is computed on (default: :func:`contract_records`)."""
        return contract_records()

    def test_declares_its_fields(self, metric):
        assert isinstance(metric, Metric), f"the fixture gave a {type(metric).__name__}, not a creg Metric"
        assert NAME_PATTERNS["metric"].match(metric.name), \
            f"{metric.name!r}: a metric's name is up to 64 letters, digits, '_' and '-' (a key of summary.json)"
        assert isinstance(metric.higher_is_better, bool)
        assert isinstance(metric.heading, str) and metric.heading.strip() and metric.arrow in metric.heading
        assert isinstance(metric.description, str) and metric.description.strip(), "give the metric a description"
        assert metric.table in TABLE_CHOICES
        assert isinstance(metric.digits, int) and (metric.ci_digits is None or isinstance(metric.ci_digits, int))
        assert callable(metric.compute) and callable(metric.aggregate)
        for flag in ("signed", "ci", "table_ci", "breakdown", "paired"):
            assert isinstance(getattr(metric, flag), bool), f"{flag} must be True or False"

    def test_name_does_not_clash_with_creg_own_metrics(self, metric):
        own = [m.name for m in metric_registry() if m.own]
        if metric.own:
            own.remove(metric.name)
        taken = set(own) | {f"{name}_ci" for name in own}
        assert metric.name not in taken and f"{metric.name}_ci" not in taken, \
            f"{metric.name!r} clashes with creg's own metrics ({', '.join(own)}): creg's would win"

    def test_one_value_per_record(self, metric, records):
        values = metric.values(records)
        assert values.shape == (len(records),) and values.dtype == np.float64
        assert not np.isinf(values).any(), "undefined is NaN, never an infinity"
        assert not np.isnan(values).all(), "NaN on every record of the contract run: the metric reads nothing there"

    def test_a_record_scores_the_same_alone_as_in_the_run(self, metric, records):
        values = metric.values(records)
        alone = np.array([metric.values([r])[0] for r in records])
        assert _same(values, alone), "a record's value depends on the other records computed with it"
        assert _same(metric.values(records[::-1]), values[::-1])

    def test_deterministic_and_leaves_the_records_alone(self, metric, records):
        before = [r.model_dump_json() for r in records]
        assert _same(metric.values(records), metric.values(records))
        assert [r.model_dump_json() for r in records] == before, "compute changed the records"

    def test_aggregate_is_finite_with_its_interval(self, metric, records):
        value, interval = metric.summarize(records, seed=0, ci=metric.ci)
        assert value is not None and math.isfinite(value)
        if metric.ci:
            assert interval is not None and len(interval) == 2, "a metric that declares ci gets a 95% interval"
            lo, hi = interval
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi
        else:
            assert interval is None
        assert metric.summarize(records, seed=0, ci=metric.ci) == (value, interval)

    def test_aggregate_reduces_the_last_axis(self, metric, records):
        v = metric.values(records)
        v = v[~np.isnan(v)]
        one = np.asarray(metric.aggregate(v), dtype=np.float64)
        stacked = np.asarray(metric.aggregate(np.stack([v, v[::-1], v])), dtype=np.float64)
        assert one.shape == () and stacked.shape == (3,), \
            "aggregate maps (..., n) to (...): the bootstrap calls it on (resamples, n)"
        assert np.allclose(stacked, float(one))

    def test_chance_is_finite_when_given(self, metric):
        if metric.chance is None:
            pytest.skip("the metric declares no chance line")
        for k in self.chance_sectors:
            assert math.isfinite(float(metric.chance(k))), f"chance({k})"

    def test_settings_are_json(self, metric):
        settings = json.loads(json.dumps(metric.settings()))
        assert settings["higher_is_better"] is metric.higher_is_better and settings["label"] == metric.heading
