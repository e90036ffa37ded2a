"""Paired tests between sources on the same samples (§6.5 "Statistical coverage"): a paired bootstrap of every
paired metric's difference, with Holm-adjusted p-values."""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from creg.core.measures import paired_bootstrap_many, paired_bootstrap_pvalue
from creg.core.records import SampleRecord
from creg.summary.breakdowns import by_source
from creg.summary.groups import metrics_or_installed


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def metric_values(records: Sequence[SampleRecord], metrics) -> dict[tuple[str, str], dict[str, float]]:
    """``{(source, metric): {sample_id: value}}`` of every paired metric, NaN (undefined) values left out."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for name, recs in by_source(records).items():
        for m in metrics:
            v = m.values(recs)
            values[(name, m.name)] = {r.sample_id: float(x) for r, x in zip(recs, v) if not np.isnan(x)}
    return values


def paired_test(va: dict[str, float], vb: dict[str, float], *, n_boot: int, seed: int) -> dict[str, Any]:
    """:func:`creg.core.measures.paired_bootstrap_pvalue` of ``va - vb`` on the sample ids both define."""
    ids = sorted(va.keys() & vb.keys())
    x = np.array([va[i] for i in ids], dtype=np.float64)
    y = np.array([vb[i] for i in ids], dtype=np.float64)
    return {"n_boot": n_boot, **paired_bootstrap_pvalue(x, y, n_boot=n_boot, seed=seed)}


def adjust_holm(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``p_holm`` to every test with samples, adjusting within each metric over all its tests."""
    for name in dict.fromkeys(t["metric"] for t in tests):
        rows = [t for t in tests if t["metric"] == name and t["n"] > 0]
        for t, p in zip(rows, holm([t["p"] for t in rows])):
            t["p_holm"] = float(p)
    return tests


def pairwise_tests(records: Sequence[SampleRecord], *, n_boot: int = 10000, seed: int = 0, metrics=None,
                   baseline: str | None = None) -> list[dict[str, Any]]:
    """Paired bootstrap (:func:`creg.core.measures.paired_bootstrap_pvalue`) of the mean difference of
    every paired metric (DAE, EA, ...; first source minus second) for every two sources, on the
    samples where both sources' values are defined; ``p_holm`` adjusts within each metric over all pairs.

    With ``baseline`` (a source of the run) only each other source against it is tested (source
    minus baseline): fewer tests, so a smaller Holm correction. ValueError if the run lacks it."""
    metrics = [m for m in metrics_or_installed(metrics) if m.paired]
    groups = list(by_source(records))
    if baseline is not None and baseline not in groups:
        raise ValueError(f"baseline source {baseline!r} is not in this run (its sources: {', '.join(groups)})")
    pairs = [(s, baseline) for s in groups if s != baseline] if baseline is not None else itertools.combinations(groups, 2)
    values = metric_values(records, metrics)
    tests: list[dict[str, Any]] = []
    by_ids: dict[tuple[str, ...], list[tuple[int, np.ndarray]]] = {}  # tests on the same samples share resamples
    for a, b in pairs:
        for m in metrics:
            va, vb = values[(a, m.name)], values[(b, m.name)]
            if not va and not vb:
                continue
            ids = tuple(sorted(va.keys() & vb.keys()))
            by_ids.setdefault(ids, []).append((len(tests), np.array([va[i] - vb[i] for i in ids], dtype=np.float64)))
            tests.append({"a": a, "b": b, "metric": m.name, "n_boot": n_boot})
    for ids, group in by_ids.items():
        diffs = np.stack([d for _, d in group]) if ids else np.empty((len(group), 0))
        for (i, _), res in zip(group, paired_bootstrap_many(diffs, n_boot=n_boot, seed=seed)):
            tests[i].update(res)
    return adjust_holm(tests)


# -- Table 5 and Table 6: grids of runs -----------------------------------------------------------
