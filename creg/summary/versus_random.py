"""Does each source beat random relevance? A paired test per source against ``random_relevance``.

``random_relevance`` (uniformly random relevance on the vision grid) shows what the projection's
geometry alone gives: a source whose DAE is not lower than it on the same samples carries no
directional evidence that this run can show. For every other source of a run that holds
``random_relevance``, :func:`versus_random` runs the paired bootstrap of the per-sample DAE
differences (source − random_relevance, on the samples where both are defined;
:func:`creg.summary.paired_tests.pairwise_tests` with ``baseline``), Holm-adjusted over the sources,
and says whether the source is better: its mean difference points the better way and the adjusted
p-value is below :data:`ALPHA`.

``summary.json`` carries the result per source under ``"vs_random"``; table.md shows it as a
column, and :mod:`creg.summary.warnings` warns about each source that does not beat it.
"""

from __future__ import annotations

from typing import Any, Sequence

from creg.core.records import SampleRecord
from creg.summary.paired_tests import pairwise_tests

#: The baseline every source is tested against.
RANDOM_BASELINE = "random_relevance"
#: The metric of the test (per-sample DAE, Eq. 6).
METRIC = "dae"
#: Significance level of the Holm-adjusted paired test.
ALPHA = 0.05
#: Sources that are chance controls themselves: they get the test but no warning when they do not beat it.
CHANCE_CONTROLS = frozenset({"random", RANDOM_BASELINE})
#: Bootstrap resamples of the test.
N_BOOT = 10000


def versus_random(records: Sequence[SampleRecord], metrics, *, seed: int = 0,
                  n_boot: int = N_BOOT) -> dict[str, dict[str, Any]]:
    """``{source: {"baseline", "metric", "n", "diff", "ci", "p", "p_holm", "n_boot", "beats"}}`` for every
    source other than :data:`RANDOM_BASELINE`; empty when the records lack that baseline or the
    registry lacks :data:`METRIC`. ``diff`` is source − baseline; ``beats`` is None without shared samples."""

    if METRIC not in metrics or not any(r.source == RANDOM_BASELINE for r in records):
        return {}
    metric = metrics[METRIC]
    tests = pairwise_tests(records, n_boot=n_boot, seed=seed, metrics=[metric], baseline=RANDOM_BASELINE)
    out: dict[str, dict[str, Any]] = {}
    for t in tests:
        n = int(t.get("n", 0))
        diff = t.get("diff")
        better = None
        if n > 0 and diff is not None and diff == diff:
            toward = diff > 0 if metric.higher_is_better else diff < 0
            better = bool(toward and t.get("p_holm", 1.0) < ALPHA)
        out[t["a"]] = {"baseline": RANDOM_BASELINE, "metric": METRIC, "n": n, "diff": diff if n else None,
                       "ci": t.get("ci") if n else None, "p": t.get("p") if n else None,
                       "p_holm": t.get("p_holm") if n else None, "n_boot": n_boot, "beats": better}
    return out


def legend(metric_label: str = "DAE") -> str:
    """The line under the table that says how to read the column."""
    return (f"vs {RANDOM_BASELINE}: mean per-sample {metric_label} difference (source − {RANDOM_BASELINE}) on the "
            f"same samples [95% CI]; ✓ beats it (paired bootstrap, Holm-adjusted p < {ALPHA}), ✗ does not.")
