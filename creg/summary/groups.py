"""A metric over a group of records: every registered metric's value (and CI) for one group, the per-sample
answers, and how a value is written in a table."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from creg.core.records import SampleRecord
from creg.plugins.metric import metric_registry


def mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def metrics_or_installed(metrics):
    if metrics is None:
        return metric_registry()
    return metrics


def metric_group(recs: Sequence[SampleRecord], metrics, seed: int = 0, *, ci: bool = True,
                 breakdown: bool = False) -> dict[str, Any]:
    """``{"n", METRIC, METRIC_ci, ...}`` of ``recs`` for every registered metric (with ``breakdown``:
    those shown in breakdowns, without CIs unless ``ci``)."""
    out: dict[str, Any] = {"n": len(recs)}
    for m in metrics_or_installed(metrics):
        if breakdown and not m.breakdown:
            continue
        with_ci = ci and m.ci
        value, interval = m.summarize(recs, seed=seed, ci=with_ci)
        out[m.name] = value
        if with_ci:
            out[f"{m.name}_ci"] = interval
    return out


def answers(records: Iterable[SampleRecord]) -> dict[str, SampleRecord]:
    """One record per sample that carries the model's answer (a per-sample fact: any source's will do)."""
    out: dict[str, SampleRecord] = {}
    for r in records:
        if r.correct is not None:
            out.setdefault(r.sample_id, r)
    return out


def format_number(v: float | None, digits: int, ci: Sequence[float] | None = None, ci_digits: int | None = None,
         sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    plus = "+" if sign else ""
    s = f"{v:{plus}.{digits}f}"
    if ci:
        d = digits if ci_digits is None else ci_digits
        s += f" [{ci[0]:{plus}.{d}f}, {ci[1]:{plus}.{d}f}]"
    return s


def format_p(p: float, n_boot: int) -> str:
    """A bootstrap p-value (never 0: its floor is 1 / (n_boot + 1)); the floor itself is printed as
    ``≤`` the floor, since no resample reached the observed difference."""
    if p != p:
        return "–"
    floor = 1 / (n_boot + 1)
    return f"≤{floor:.1e}" if p <= floor * (1 + 1e-9) else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")
