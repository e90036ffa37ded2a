"""MetricContract: every built-in metric passes it, and it fails metrics with the bugs it exists to catch."""

from __future__ import annotations

import numpy as np
import pytest

from creg.plugins.metric import Metric, metric_registry
from creg.testing import MetricContract, contract_records

BUILTIN = ("dae", "ea", "dae_sector", "cos_peak", "cos_area_matched", "dae_no_ref", "ea_no_ref", "causal_mass",
           "causal_rank")


def test_every_builtin_metric_has_a_contract_test_below():
    assert [m.name for m in metric_registry() if m.own] == list(BUILTIN)
    assert {c.name for c in globals().values() if isinstance(c, type) and issubclass(c, Builtin) and c is not Builtin} == set(BUILTIN)


class Builtin(MetricContract):
    """creg's own metric ``name`` (registered by the creg distribution), as the installed plugins register it."""

    name = ""

    @pytest.fixture
    def metric(self):
        return metric_registry()[self.name]


class TestMetricContract_dae(Builtin):
    name = "dae"


class TestMetricContract_ea(Builtin):
    name = "ea"


class TestMetricContract_dae_sector(Builtin):
    name = "dae_sector"


class TestMetricContract_cos_peak(Builtin):
    name = "cos_peak"


class TestMetricContract_cos_area_matched(Builtin):
    name = "cos_area_matched"


class TestMetricContract_dae_no_ref(Builtin):
    name = "dae_no_ref"


class TestMetricContract_ea_no_ref(Builtin):
    name = "ea_no_ref"


class TestMetricContract_causal_mass(Builtin):
    name = "causal_mass"


class TestMetricContract_causal_rank(Builtin):
    name = "causal_rank"


def test_the_contract_run_is_hand_built_as_documented():
    records = contract_records()
    assert len(records) == 24 and {r.source for r in records} == {"contract_a", "contract_b"}
    coincide = [r for r in records if r.sample_id == "contract-0"]
    assert all(r.dae is None and r.ea is None and r.flags == ["zero_distance"] for r in coincide)
    eas = {r.ea for r in records if r.ea is not None}
    assert eas == {True, False}  # Eq. 7 hits and misses both occur
    assert any(r.cos for r in records) and any(r.cos is None for r in records)
    assert any(r.ground_truth for r in records) and any(r.ground_truth is None for r in records)
    assert contract_records() == records  # deterministic


# -- the contract catches broken metrics --------------------------------------------------------

def _east(records):
    return np.array([float(r.peak_sector == 0) for r in records])


def _ok(**changes) -> Metric:
    fields = dict(name="east", compute=_east, higher_is_better=True, description="peak in the east sector",
                  label="East")
    fields.update(changes)
    return Metric(**fields)


def _batch_relative(records):
    """Each record's DAE minus the batch mean: depends on what it is computed with."""
    d = np.array([np.nan if r.dae is None else r.dae for r in records])
    return d - np.nanmean(d) if np.isfinite(d).any() else d


def _infinite_where_undefined(records):
    return np.array([np.inf if r.dae is None else r.dae for r in records])


def _mutating(records):
    for r in records:
        r.extra["seen"] = True
    return _east(records)


def _never_defined(records):
    return np.full(len(records), np.nan)


def _flat_aggregate(values):
    return float(np.mean(values))  # ignores the axis: (resamples, n) -> one number


def _unstable(records, _calls=[0]):
    _calls[0] += 1
    return np.full(len(records), float(_calls[0]))


BROKEN = {
    "clashes with creg's dae": (_ok(name="dae"), "test_name_does_not_clash_with_creg_own_metrics"),
    "clashes with creg's dae_ci": (_ok(name="dae_ci"), "test_name_does_not_clash_with_creg_own_metrics"),
    "no description": (_ok(description=""), "test_declares_its_fields"),
    "a name with a slash": (_ok(name="east/west"), "test_declares_its_fields"),
    "depends on the batch": (_ok(compute=_batch_relative), "test_a_record_scores_the_same_alone_as_in_the_run"),
    "infinity for undefined": (_ok(compute=_infinite_where_undefined), "test_one_value_per_record"),
    "changes the records": (_ok(compute=_mutating), "test_deterministic_and_leaves_the_records_alone"),
    "NaN everywhere": (_ok(compute=_never_defined), "test_one_value_per_record"),
    "aggregate ignores the axis": (_ok(aggregate=_flat_aggregate), "test_aggregate_reduces_the_last_axis"),
    "not deterministic": (_ok(compute=_unstable), "test_deterministic_and_leaves_the_records_alone"),
}


@pytest.mark.parametrize("bug", list(BROKEN))
def test_the_contract_fails_a_metric_that(bug):
    metric, check = BROKEN[bug]
    with pytest.raises(AssertionError):
        getattr(MetricContract(), check)(metric, contract_records()) if "records" in _params(check) \
            else getattr(MetricContract(), check)(metric)


def test_the_contract_passes_a_correct_third_party_metric():
    contract = MetricContract()
    for check in [n for n in dir(MetricContract) if n.startswith("test_")]:
        args = (_ok(), contract_records()) if "records" in _params(check) else (_ok(),)
        if check == "test_chance_is_finite_when_given":
            args = (_ok(chance=lambda k: 1.0 / k),)
        getattr(contract, check)(*args)


def _params(check: str) -> tuple[str, ...]:
    fn = getattr(MetricContract, check)
    return fn.__code__.co_varnames[1:fn.__code__.co_argcount]


def test_a_metric_that_cannot_be_one_is_refused_when_built():
    with pytest.raises(TypeError, match="higher_is_better must be True or False"):
        _ok(higher_is_better="yes")
    with pytest.raises(ValueError, match="table must be one of always, if_present, never"):
        _ok(table="sometimes")
    with pytest.raises(TypeError, match="aggregate must be callable"):
        _ok(aggregate="mean")
    with pytest.raises(ValueError, match="digits must be an integer from 0 to 12"):
        _ok(digits=-1)
