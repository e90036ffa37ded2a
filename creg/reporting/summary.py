"""From records to ``summary.json`` and the Table-1-style Markdown table.

``summary.json`` is a contract that users parse (schema in docs/user-guide.md)::

    {"sources": {NAME: {"n", "dae", "dae_ci", "ea", "ea_ci", "dae_sector", "dae_sector_ci",
                        "by_class": {REL: {"n", "dae", "ea"}},
                        "by_correct": {"correct": {...}, "incorrect": {...}},
                        "flags": {FLAG: count},
                        "cos": {"n", "op", "peak"|"true": {"delta"|"delta_opp"|"cos": {"mean", "ci"}},
                                "adjacent": {"delta"|"cos": {"mean", "ci"}}}  (only with --cos)}},
     "vlm_accuracy": float | null, "vlm_accuracy_ci": [lo, hi] | null,
     "accuracy_by_class": {REL: float} | null,
     "n_samples": int, "complete": bool, "skipped": {reason: count}, ...}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..metrics import bootstrap_ci, edge_hit
from ..occlusion import summarize_cos
from ..records import SampleRecord
from ..sample import RELATIONS


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def _group(recs: Sequence[SampleRecord], seed: int, *, ci: bool = True) -> dict[str, Any]:
    """n, mean DAE / EA / sector-centre DAE of ``recs``; with ``ci``, their bootstrap CIs."""
    dae = np.array([r.dae for r in recs if r.dae is not None], dtype=np.float64)
    dae_s = np.array([r.dae_sector for r in recs if r.dae_sector is not None], dtype=np.float64)
    ea = edge_hit(dae).astype(np.float64)
    out: dict[str, Any] = {"n": len(recs)}
    for name, values in (("dae", dae), ("ea", ea), ("dae_sector", dae_s)):
        out[name] = _mean(values)
        if ci:
            out[f"{name}_ci"] = bootstrap_ci(values, seed=seed)
    return out


def summarize_source(recs: Sequence[SampleRecord], seed: int = 0) -> dict[str, Any]:
    """Metrics of one source: overall, by class, by correct/incorrect, flag counts."""
    out = _group(recs, seed)
    out["by_class"] = {
        rel: _group([r for r in recs if r.relation == rel], seed, ci=False) for rel in RELATIONS
    }
    if any(r.correct is not None for r in recs):
        out["by_correct"] = {
            name: _group([r for r in recs if r.correct is want], seed, ci=False)
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
    return out


def summarize(records: Iterable[SampleRecord], sources: Sequence[str], *, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """The whole ``summary.json`` object for a run's records."""
    by_source: dict[str, list[SampleRecord]] = {s: [] for s in sources}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    summary: dict[str, Any] = {"sources": {s: summarize_source(rs, seed) for s, rs in by_source.items()}}

    # accuracy: one answer per sample (the model's answer does not depend on the source)
    answers: dict[str, SampleRecord] = {}
    for rs in by_source.values():
        for r in rs:
            if r.correct is not None:
                answers.setdefault(r.sample_id, r)
    if answers:
        hits = np.array([r.correct for r in answers.values()], dtype=np.float64)
        summary["vlm_accuracy"] = float(hits.mean())
        summary["vlm_accuracy_ci"] = bootstrap_ci(hits, seed=seed)
        summary["accuracy_by_class"] = {
            rel: _mean(np.array([r.correct for r in answers.values() if r.relation == rel], dtype=np.float64))
            for rel in RELATIONS
        }
    else:
        summary["vlm_accuracy"] = None
        summary["vlm_accuracy_ci"] = None
        summary["accuracy_by_class"] = None
    n = {r.sample_id for rs in by_source.values() for r in rs}
    summary["n_samples"] = len(n)
    summary.update(extra)
    return summary


def _fmt(v: float | None, digits: int, ci: Sequence[float] | None = None, ci_digits: int | None = None,
         sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    plus = "+" if sign else ""
    s = f"{v:{plus}.{digits}f}"
    if ci:
        d = digits if ci_digits is None else ci_digits
        s += f" [{ci[0]:{plus}.{d}f}, {ci[1]:{plus}.{d}f}]"
    return s


def markdown_table(summary: dict[str, Any], title: str = "") -> str:
    """Table-1-style: one row per source, DAE and EA with 95% bootstrap CIs."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    has_cos = any("cos" in s for s in summary["sources"].values())
    cos_head = (" COS↑ peak [95% CI] |", "---:|") if has_cos else ("", "")
    lines += ["| Method | n | DAE↓ [95% CI] | EA↑ [95% CI] | DAE (sector centre)↓ |" + cos_head[0],
              "|---|---:|---:|---:|---:|" + cos_head[1]]
    for name, s in summary["sources"].items():
        cos_cell = ""
        if has_cos:
            c = s.get("cos", {}).get("peak", {}).get("cos", {})
            cos_cell = f" {_fmt(c.get('mean'), 3, c.get('ci'), 3, sign=True)} |"
        lines.append(
            f"| {name} | {s['n']} | {_fmt(s['dae'], 1, s['dae_ci'], 0)} | {_fmt(s['ea'], 3, s['ea_ci'], 2)} | "
            f"{_fmt(s['dae_sector'], 1)} |" + cos_cell
        )
    acc = summary.get("vlm_accuracy")
    lines.append("")
    if acc is None:
        lines.append("VLM accuracy: – (no model in this run)")
    else:
        ci = summary.get("vlm_accuracy_ci")
        per = summary.get("accuracy_by_class") or {}
        per_s = ", ".join(f"{k} {_fmt(v, 3)}" for k, v in per.items())
        lines.append(f"VLM accuracy: {_fmt(acc, 3, ci, 2)} ({per_s})")
    if has_cos:  # the true-direction reading does not depend on the source: one line for the model
        c = next(s["cos"] for s in summary["sources"].values() if "cos" in s)
        t = c["true"]
        lines.append(
            f"COS at the true direction ({c['op']}, n={c['n']}): {_fmt(t['cos']['mean'], 3, t['cos']['ci'], 3, sign=True)} "
            f"(ΔS_true {_fmt(t['delta']['mean'], 3, sign=True)}, ΔS_opp {_fmt(t['delta_opp']['mean'], 3, sign=True)})"
        )
    skipped = summary.get("skipped") or {}
    if skipped:
        lines.append("Skipped samples: " + ", ".join(f"{k}: {v}" for k, v in skipped.items()))
    if not summary.get("complete", True):
        lines.append("**Partial run**: re-run the same command to continue.")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
