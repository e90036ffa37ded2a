"""From records to ``summary.json`` and the Table-1-style Markdown table.

``summary.json`` is a contract that users parse (schema in docs/user-guide.md)::

    {"sources": {NAME: {"n", METRIC, METRIC_ci for every registered metric (creg's own: "dae",
                        "ea", "dae_sector", "cos_peak"; creg.plugins.metric),
                        "by_class": {REL: {"n", METRIC}},
                        "by_correct": {"correct": {...}, "incorrect": {...}},
                        "flags": {FLAG: count},
                        "cos": {"n", "op", "peak"|"true": {"delta"|"delta_opp"|"cos": {"mean", "ci"}},
                                "adjacent": {"delta"|"cos": {"mean", "ci"}}}  (only with --cos),
                        "completeness_gap": {"n", "median", "max", "steps"} (IG),
                        "cancellation": {LAYER: median ratio} (sources built on g.h; creg.summary.diagnostics)}},
     "vlm_accuracy": float | null, "vlm_accuracy_ci": [lo, hi] | null,
     "accuracy_by_class": {REL: float} | null,
     "metrics": {METRIC: {"label", "higher_is_better", "description", "plugin", "dist"}},
     "n_samples": int, "complete": bool, "skipped": {reason: count},
     "pairwise": [{"a", "b", "metric", "n", "diff", "ci", "p", "p_holm", "n_boot"}] (a run's summary),
     "warnings": [{"kind", "message", "source"?, ...}] (creg.summary.warnings), ...}

and per source, when the run holds ``random_relevance`` (creg.summary.versus_random)::

    "vs_random": {"baseline", "metric", "n", "diff", "ci", "p", "p_holm", "n_boot", "beats"}
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from creg.config.run_config import NO_MODEL
from creg.core.measures import bootstrap_ci
from creg.core.records import SampleRecord
from creg.core.sample import RELATIONS
from creg.explain.occlusion import summarize_cos
from creg.summary.diagnostics import diagnostics_lines, source_diagnostics
from creg.summary.groups import (
    answers,
    format_number,
    mean_or_none,
    metric_group,
    metrics_or_installed,
)
from creg.summary.paired_tests import pairwise_tests
from creg.summary.prior import control_markdown
from creg.summary.versus_random import legend, versus_random
from creg.summary.warnings import warnings_markdown


def summarize_source(recs: Sequence[SampleRecord], seed: int = 0, metrics=None) -> dict[str, Any]:
    """Metrics of one source: every registered metric overall (with CIs), by class and by
    correct/incorrect (without CIs), flag counts, and the occlusion readings (--cos)."""
    metrics = metrics_or_installed(metrics)
    out = metric_group(recs, metrics, seed)
    out["by_class"] = {
        rel: metric_group([r for r in recs if r.relation == rel], metrics, seed, ci=False) for rel in RELATIONS
    }
    if any(r.correct is not None for r in recs):
        out["by_correct"] = {
            name: metric_group([r for r in recs if r.correct is want], metrics, seed, ci=False)
            for name, want in (("correct", True), ("incorrect", False))
        }
    flags: dict[str, int] = {}
    for r in recs:
        for f in r.flags:
            flags[f] = flags.get(f, 0) + 1
    out["flags"] = flags
    cos = summarize_cos([r.cos for r in recs], seed)
    if cos is not None:
        out["cos"] = cos
    out.update(source_diagnostics(recs))  # IG's completeness gap, Grad x Act's cancellation ratios
    return out


def summarize(records: Iterable[SampleRecord], sources: Sequence[str], *, seed: int = 0, metrics=None,
              pairwise: bool = False, **extra: Any) -> dict[str, Any]:
    """The whole ``summary.json`` object for a run's records (``metrics``: a
    :class:`creg.plugins.metric.MetricRegistry`, default the installed plugins'). With ``pairwise`` (a
    run's summary) it also holds the paired bootstrap tests between every two sources
    (:func:`creg.summary.paired_tests.pairwise_tests`; the report's, vectorised: seconds for 11
    sources and 1000 samples)."""
    metrics = metrics_or_installed(metrics)
    records = list(records)
    by_source: dict[str, list[SampleRecord]] = {s: [] for s in sources}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    summary: dict[str, Any] = {"sources": {s: summarize_source(rs, seed, metrics) for s, rs in by_source.items()}}
    summary["metrics"] = {m.name: {"label": m.heading, "higher_is_better": m.higher_is_better,
                                   "description": m.description, "plugin": m.plugin, "dist": m.dist} for m in metrics}

    ans = answers(records)
    if ans:
        hits = np.array([r.correct for r in ans.values()], dtype=np.float64)
        summary["vlm_accuracy"] = float(hits.mean())
        summary["vlm_accuracy_ci"] = bootstrap_ci(hits, seed=seed)
        summary["accuracy_by_class"] = {
            rel: mean_or_none(np.array([r.correct for r in ans.values() if r.relation == rel], dtype=np.float64))
            for rel in RELATIONS
        }
    else:
        summary["vlm_accuracy"] = None
        summary["vlm_accuracy_ci"] = None
        summary["accuracy_by_class"] = None
    summary["n_samples"] = len({r.sample_id for r in records})

    for name, test in versus_random(records, metrics, seed=seed).items():  # each source against random_relevance
        summary["sources"][name]["vs_random"] = test
    if pairwise:

        summary["pairwise"] = pairwise_tests(records, seed=seed, metrics=metrics) if len(by_source) > 1 else []
    summary.update(extra)
    return summary


def _versus_cell(test: dict[str, Any] | None) -> str:
    """``−12.3 [−15.1, −9.4] ✓`` (beats random_relevance), ``… ✗`` (does not) or ``–`` (the baseline, no samples)."""
    if not test or test.get("beats") is None:
        return "–"
    return f"{format_number(test['diff'], 1, test['ci'], 1, sign=True)} {'✓' if test['beats'] else '✗'}"


def table_metrics(summary: dict[str, Any], metrics=None) -> list:
    """The metrics that get a column: ``table="always"``, or ``"if_present"`` and some source has a value."""
    out = []
    for m in metrics_or_installed(metrics):
        if m.table == "never":
            continue
        if m.table == "if_present" and not any(s.get(m.name) is not None for s in summary["sources"].values()):
            continue
        out.append(m)
    return out


def markdown_table(summary: dict[str, Any], title: str = "", metrics=None) -> str:
    """Table-1-style: one row per source, one column per registered metric (95% bootstrap CIs)."""
    cols = table_metrics(summary, metrics)
    lines = []
    if title:
        lines += [f"### {title}", ""]
    head = "".join(f" {m.heading}{' [95% CI]' if m.ci and m.table_ci else ''} |" for m in cols)
    vs = next((s["vs_random"] for s in summary["sources"].values() if s.get("vs_random")), None)
    if vs is not None:
        head += f" vs {vs['baseline']} Δ{vs['metric'].upper()} [95% CI] |"
    lines += ["| Method | n |" + head, "|---|---:|" + "---:|" * (len(cols) + (vs is not None))]
    for name, s in summary["sources"].items():
        cells = ""
        for m in cols:
            ci = s.get(f"{m.name}_ci") if m.ci and m.table_ci else None
            cells += f" {format_number(s.get(m.name), m.digits, ci, m.ci_digits, sign=m.signed)} |"
        if vs is not None:
            cells += f" {_versus_cell(s.get('vs_random'))} |"
        lines.append(f"| {name} | {s['n']} |" + cells)
    acc = summary.get("vlm_accuracy")
    lines.append("")
    if vs is not None:

        lines.append(legend(vs["metric"].upper()))
    if acc is None:  # a run with a model whose every sample failed answered nothing: say that, not "no model"
        no_model = summary.get("adapter", NO_MODEL) in (None, NO_MODEL)
        lines.append(f"VLM accuracy: – ({'no model in this run' if no_model else 'no sample was answered'})")
    else:
        ci = summary.get("vlm_accuracy_ci")
        per = summary.get("accuracy_by_class") or {}
        per_s = ", ".join(f"{k} {format_number(v, 3)}" for k, v in per.items())
        chance = next((w for w in summary.get("warnings") or [] if w.get("kind") == "accuracy_at_chance"), None)
        note = (f" ⚠ {'at or below chance' if acc <= chance['chance'] + 1e-12 else 'CI includes chance'} "
                f"({chance['chance']:.2f} for {len(RELATIONS)} answers)") if chance else ""
        lines.append(f"VLM accuracy: {format_number(acc, 3, ci, 2)}{note} ({per_s})")
    has_cos = any("cos" in s for s in summary["sources"].values())
    if has_cos:  # the true-direction reading does not depend on the source: one line for the model
        c = next(s["cos"] for s in summary["sources"].values() if "cos" in s)
        t = c["true"]
        lines.append(
            f"COS at the true direction ({c['op']}, n={c['n']}): {format_number(t['cos']['mean'], 3, t['cos']['ci'], 3, sign=True)} "
            f"(ΔS_true {format_number(t['delta']['mean'], 3, sign=True)}, ΔS_opp {format_number(t['delta_opp']['mean'], 3, sign=True)})"
        )
    lines += diagnostics_lines(summary)
    skipped = summary.get("skipped") or {}
    if skipped:
        lines.append("Skipped samples: " + ", ".join(f"{k}: {v}" for k, v in skipped.items()))
    if not summary.get("complete", True):
        lines.append("**Partial run**: re-run the same command to continue.")
    blank = (summary.get("controls") or {}).get("blank")
    if blank:

        lines += ["", control_markdown(blank).rstrip()]
    shown = [w for w in summary.get("warnings") or [] if w.get("kind") != "partial"]
    if shown:

        lines += ["", warnings_markdown(shown).rstrip()]
    return "\n".join(lines) + "\n"
