"""Several runs side by side (``creg report RUN1 RUN2 ...``): two models, two prompts, two seeds.

Each run is labelled by its directory name (with its parent's when two names are equal). The first
run is the *reference*: every other run is compared with it by paired bootstrap tests
(:func:`creg.core.measures.paired_bootstrap_pvalue`, p = (1 + #extreme) / (B + 1)) on the samples both runs
scored (same sample ids: the same benchmark, seed and selection yield the same ids):

* the VLM's accuracy (per-sample correctness, run minus reference), once per run;
* every paired metric (DAE, EA, ...) of every source the two runs share (run minus reference).

Holm's adjustment runs within each metric over all the tests of that metric. Runs that share no
sample are shown side by side without tests. Everything is read through :class:`creg.store.RunStore`;
the result is written next to the runs (not inside one) by :func:`creg.store.write_grid_files`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from creg.report.cross_run import model_name
from creg.store import RunDirError, RunStore
from creg.summary.breakdowns import by_source
from creg.summary.groups import (
    answers,
    format_number,
    format_p,
    metric_group,
    metrics_or_installed,
)
from creg.summary.paired_tests import adjust_holm, metric_values, paired_test


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short, distinct labels: the directory names, with more of the path where names repeat."""
    paths = [Path(p).resolve() for p in paths]
    depth = 1
    while True:
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return labels
        depth += 1


def default_out(paths: Sequence[Path]) -> Path:
    """``<first run's parent>/compare-<hash of the runs>``: the same runs give the same folder."""
    key = "\n".join(str(Path(p).resolve()) for p in paths)
    return Path(paths[0]).parent / f"compare-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def compare_runs(run_dirs: Sequence[Path], *, n_boot: int = 10000, seed: int = 0, metrics=None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The side-by-side comparison of ``run_dirs`` (two or more; the first is the reference)."""
    if len(run_dirs) < 2:
        raise ValueError("compare at least two runs")
    if len({Path(p).resolve() for p in run_dirs}) != len(run_dirs):
        raise RunDirError("the same run directory is named twice")
    metrics = metrics_or_installed(metrics)
    paired = [m for m in metrics if m.paired]
    labels = run_labels(run_dirs)
    runs, records_of = [], {}
    for label, path in zip(labels, run_dirs):
        store = RunStore.read(path)
        records = store.records()
        for p in store.problems:
            (log or (lambda m: None))(f"{label}: {p}")
        if not records:
            raise RunDirError(f"{path} holds no records yet")
        records_of[label] = records
        run, adapter = store.config.get("run", {}), store.config.get("adapter") or {}
        ans = answers(records)
        correct = np.array([r.correct for r in ans.values()], dtype=np.float64)
        runs.append({"label": label, "run_dir": str(path), "adapter": run.get("adapter"),
                     "model": adapter.get("model") or run.get("model"), "model_name": model_name(store.config), "prompt": adapter.get("prompt") or run.get("prompt"),
                     "bench": run.get("bench"), "seed": run.get("seed"), "k": run.get("k"),
                     "n_samples": len({r.sample_id for r in records}),
                     "vlm_accuracy": float(correct.mean()) if correct.size else None,
                     "sources": list(by_source(records))})
    sources = list(dict.fromkeys(s for r in runs for s in r["sources"]))
    table = {s: {label: metric_group([r for r in records_of[label] if r.source == s], metrics, seed)
                 for label in labels if s in by_source(records_of[label])} for s in sources}

    ref = labels[0]
    ref_values = metric_values(records_of[ref], paired)
    ref_correct = {sid: float(r.correct) for sid, r in answers(records_of[ref]).items()}
    ref_ids = {r.sample_id for r in records_of[ref]}
    tests: list[dict[str, Any]] = []
    shared: dict[str, int] = {}
    for label in labels[1:]:
        ids = {r.sample_id for r in records_of[label]}
        shared[label] = len(ids & ref_ids)
        if not shared[label]:
            continue
        correct = {sid: float(r.correct) for sid, r in answers(records_of[label]).items()}
        if correct and ref_correct:
            tests.append({"run": label, "reference": ref, "source": None, "metric": "accuracy",
                          **paired_test(correct, ref_correct, n_boot=n_boot, seed=seed)})
        values = metric_values(records_of[label], paired)
        for s in sources:
            for m in paired:
                va, vb = values.get((s, m.name)), ref_values.get((s, m.name))
                if va and vb:
                    tests.append({"run": label, "reference": ref, "source": s, "metric": m.name,
                                  **paired_test(va, vb, n_boot=n_boot, seed=seed)})
    return {"reference": ref, "runs": runs, "shared_samples": shared, "sources": table, "tests": adjust_holm(tests),
            "n_boot": n_boot, "seed": seed}


def compare_markdown(comparison: dict[str, Any], metrics=None) -> str:
    """The comparison as Markdown: the runs, one table per metric (sources x runs), the paired tests."""

    metrics = metrics_or_installed(metrics)
    runs = comparison["runs"]
    labels = [r["label"] for r in runs]
    lines = [f"# creg comparison of {len(runs)} runs", "",
             f"Reference run: **{comparison['reference']}** (paired tests: run − reference, on the samples both scored).", "",
             "| Run | adapter | model | prompt | bench | seed | K | samples | shared with reference | VLM ACC↑ |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        shared = "–" if r["label"] == comparison["reference"] else comparison["shared_samples"].get(r["label"], 0)
        lines.append(f"| {r['label']} | {r['adapter']} | {r.get('model_name') or r['model'] or '–'} | {r['prompt'] or '–'} | {r['bench']} | "
                     f"{r['seed']} | {r['k']} | {r['n_samples']} | {shared} | {format_number(r['vlm_accuracy'], 3)} |")
    lines.append("")
    for m in metrics:
        cells = {s: {lab: v.get(m.name) for lab, v in per_run.items()} for s, per_run in comparison["sources"].items()}
        if not any(v is not None and v == v for row in cells.values() for v in row.values()):
            continue
        lines += [f"## {m.heading}", "", "| Source | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for s, per_run in comparison["sources"].items():
            row = []
            for lab in labels:
                g = per_run.get(lab)
                row.append("·" if g is None else format_number(g.get(m.name), m.digits, g.get(f"{m.name}_ci") if m.table_ci else None,
                                                       m.ci_digits, sign=m.signed))
            lines.append(f"| {s} | " + " | ".join(row) + " |")
        lines.append("")
    tests = [t for t in comparison["tests"] if t["n"] > 0]
    if tests:
        lines += ["## Paired differences between runs (paired bootstrap, shared samples)", "",
                  "Difference = run − reference; p two-sided, floor 1/(B+1), Holm-adjusted within each metric.", "",
                  "| Run | source | metric | n | diff [95% CI] | p | p (Holm) |", "|---|---|---|---:|---:|---:|---:|"]
        for t in tests:
            m = metrics[t["metric"]] if t["metric"] in metrics else None
            d = m.digits if m is not None else 3
            label = m.heading if m is not None else ("VLM ACC↑" if t["metric"] == "accuracy" else t["metric"].upper())
            lines.append(f"| {t['run']} | {t['source'] or '(VLM)'} | {label} | {t['n']} | "
                         f"{format_number(t['diff'], d, t['ci'], d, sign=True)} | {format_p(t['p'], t['n_boot'])} | "
                         f"{format_p(t.get('p_holm', float('nan')), t['n_boot'])} |")
        lines.append("")
    else:
        lines += ["No paired tests: the runs share no scored sample with the reference.", ""]
    return "\n".join(lines) + "\n"
