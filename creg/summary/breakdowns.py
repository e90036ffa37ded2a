"""The paper's analyses computed from a run's records (paper §5.3, §5.5, §6.1, App. A.1): plain JSON-able dicts
that :mod:`creg.report.report` renders.

* :func:`per_class` -- VLM accuracy and DAE/EA per relation class, with the random baselines (Fig. 4).
* :func:`correctness_split` -- DAE/EA on all / correct / incorrect samples for gt- and
  prediction-targeted CREG (Table 3; sources ``creg_gt`` and ``creg``).
* :func:`flip_equivariance` -- Pearson r between a sample's compass and the mirrored compass of the
  horizontally flipped sample (§6.1); :func:`mirror_compass` maps sector k to (K/2 - k) mod K.
* :func:`variants_table` -- Table 5 / Table 6 rows from the variant runs' summaries
  (the runs themselves: :mod:`creg.experiments.variants`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from creg.core.records import SampleRecord
from creg.core.sample import RELATIONS
from creg.store import RunStore
from creg.summary.groups import answers as _answers
from creg.summary.groups import mean_or_none, metric_group, metrics_or_installed

#: What a horizontal flip does to the relation classes.
FLIPPED_RELATION = {"left": "right", "right": "left", "above": "above", "below": "below"}

ABLATION_LABELS = {"default": "CREG (default)", "k4": "K = 4 sectors", "single_layer": "Single layer (l = -2)",
                   "no_contrastive": "No contrastive"}


# -- loading ------------------------------------------------------------------------------------

def load_records(path: Path) -> list[SampleRecord]:
    """The records of a run directory (or of the run directory holding ``path``), read through
    :class:`creg.store.RunStore`: a bad line is skipped (and reported there), never the lines after it."""

    path = Path(path)
    return RunStore.read(path if path.is_dir() else path.parent).records()


def by_source(records: Iterable[SampleRecord]) -> dict[str, list[SampleRecord]]:
    """Records grouped by source, in first-seen order."""
    out: dict[str, list[SampleRecord]] = {}
    for r in records:
        out.setdefault(r.source, []).append(r)
    return out


def _dae_ea(recs: Sequence[SampleRecord], metrics=None) -> dict[str, Any]:
    """``{"n", METRIC: aggregate}`` for every breakdown metric (DAE, EA, ...)."""
    return metric_group(recs, metrics, ci=False, breakdown=True)


# -- Fig. 4: per class --------------------------------------------------------------------------

def per_class(records: Sequence[SampleRecord], metrics=None, *, seed: int = 0) -> dict[str, Any]:
    """VLM accuracy per class (one answer per sample) and the breakdown metrics (DAE, EA, ...) per
    class and source with their 95% bootstrap CIs (``dae_ci``, ...), with the chance levels:
    accuracy 1/4, and each metric's value for a uniformly random peak for the run's K (§4)."""
    metrics = metrics_or_installed(metrics)
    k = len(records[0].compass) if records else 8
    answers = _answers(records)
    accuracy = None
    if answers:
        accuracy = {}
        for rel in RELATIONS:
            hits = np.array([r.correct for r in answers.values() if r.relation == rel], dtype=np.float64)
            accuracy[rel] = {"n": int(hits.size), "accuracy": mean_or_none(hits)}
    sources = {
        name: {rel: metric_group([r for r in recs if r.relation == rel], metrics, seed, ci=True, breakdown=True)
               for rel in RELATIONS}
        for name, recs in by_source(records).items()
    }
    chance = {"accuracy": 0.25, **{m.name: float(m.chance(k)) for m in metrics if m.breakdown and m.chance is not None}}
    return {"k": k, "accuracy": accuracy, "sources": sources, "chance": chance}


# -- Table 3: correct vs incorrect x gt/pred targeting -------------------------------------------

def correctness_split(records: Sequence[SampleRecord], *, gt_source: str = "creg_gt",
                      pred_source: str = "creg", metrics=None) -> dict[str, Any] | None:
    """DAE/EA of gt- and prediction-targeted attribution on all, correct and incorrect samples
    (Table 3). None unless the run has a model and both sources."""
    groups = by_source(records)
    if gt_source not in groups or pred_source not in groups or not _answers(records):
        return None
    rows: dict[str, Any] = {}
    for subset, keep in (("all", lambda r: True), ("correct", lambda r: r.correct is True),
                         ("incorrect", lambda r: r.correct is False)):
        rows[subset] = {mode: _dae_ea([r for r in groups[src] if keep(r)], metrics)
                        for mode, src in (("gt", gt_source), ("pred", pred_source))}
    acc = np.array([r.correct for r in _answers(records).values()], dtype=np.float64)
    return {"gt_source": gt_source, "pred_source": pred_source, "vlm_accuracy": float(acc.mean()), "rows": rows}


# -- §6.1: flip equivariance ---------------------------------------------------------------------

def mirror_sectors(k: int) -> np.ndarray:
    """``(K,)`` index map of a horizontal flip: sector k (centre c_k) goes to the sector centred at
    180 - c_k, i.e. (K/2 - k) mod K. Defined for even K only (odd K has no mirrored centres)."""
    if k % 2:
        raise ValueError(f"a horizontal flip maps sector centres onto sector centres only for even K, got K={k}")
    return (k // 2 - np.arange(k)) % k


def mirror_compass(probs) -> np.ndarray:
    """``(..., K)``: the compass of a flipped image re-indexed into the original frame,
    ``out[..., k] = probs[..., (K/2 - k) mod K]`` (the map is its own inverse)."""
    p = np.asarray(probs, dtype=np.float64)
    return p[..., mirror_sectors(p.shape[-1])]


def pearson_rows(a, b) -> np.ndarray:
    """Pearson r of each row pair of two ``(n, K)`` arrays; NaN where a row is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-15, (a * b).sum(-1) / np.where(den > 1e-15, den, 1.0), np.nan)


def flip_equivariance(records: Sequence[SampleRecord], flipped: Sequence[SampleRecord]) -> dict[str, Any]:
    """Per source: Pearson r between P (original) and the mirrored P of the flipped image (§6.1).

    ``r_mean``: mean of the per-sample r (K values each; samples with a constant compass are left
    out and counted in ``n_constant``); ``r_pooled``: one r over all (sample, sector) pairs;
    ``peak_agreement``: share of samples whose mirrored flipped peak is the original peak.
    """
    flipped_by = {(r.sample_id, r.source): r for r in flipped}
    out: dict[str, Any] = {}
    for name, recs in by_source(records).items():
        pairs = [(r, flipped_by[(r.sample_id, name)]) for r in recs if (r.sample_id, name) in flipped_by]
        if not pairs:
            continue
        p = np.array([a.compass for a, _ in pairs])
        q = mirror_compass(np.array([b.compass for _, b in pairs]))
        r = pearson_rows(p, q)
        ok = ~np.isnan(r)
        pooled = pearson_rows(p.reshape(1, -1), q.reshape(1, -1))[0]
        mirrored_peak = mirror_sectors(p.shape[1])[[b.peak_sector for _, b in pairs]]
        out[name] = {
            "n": len(pairs),
            "r_mean": float(r[ok].mean()) if ok.any() else None,
            "r_pooled": None if np.isnan(pooled) else float(pooled),
            "n_constant": int((~ok).sum()),
            "peak_agreement": float(np.mean(mirrored_peak == np.array([a.peak_sector for a, _ in pairs]))),
        }
    return out


def variants_table(summaries: dict[str, dict[str, Any]], *, source: str = "creg",
                   labels: dict[str, str] | None = None, accuracy: bool = False) -> dict[str, Any]:
    """Rows ``{name: {"label", "n", "dae", "ea", "vlm_accuracy"}}`` of ``source`` in each summary."""
    rows = {}
    for name, s in summaries.items():
        src = s["sources"].get(source, {})
        rows[name] = {"label": (labels or {}).get(name, name), "n": src.get("n"), "dae": src.get("dae"),
                      "ea": src.get("ea"), "vlm_accuracy": s.get("vlm_accuracy") if accuracy else None}
    return rows
