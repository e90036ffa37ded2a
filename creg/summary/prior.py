"""What a source shows on blank images (the objects removed): its position prior.

Per source, from the run's records (scenes) and the blank run's records (same sample ids):

* ``peak_counts``: how many blank samples peak in each of the K compass sectors, and Pearson's
  chi-squared test of those counts against uniform (:func:`creg.summary.chi2.chi2_uniform`);
  ``prior`` is True when p < :data:`PRIOR_P` (the source points somewhere without any object);
* ``dae`` / ``dae_ci``: DAE (Eq. 6) on blanks against the same boxes' true direction;
* ``image_blind``: every blank compass equals its scene compass -- the source reads no pixels (the
  box-based controls ``oracle``, ``target_box``, ``random``): no ``blank_dae`` warning for it;
* ``by_class``: per relation class, DAE on scenes with its 95% bootstrap CI and DAE on blanks;
  ``explained_by_prior`` is True when the blank DAE lies inside the scene DAE's CI -- the class's
  score on scenes is no better than what the source scores with nothing to see.

:func:`control_warnings` turns both into warnings (``blank_prior``, ``blank_dae``), and warns
(``blank_empty``) when at least half of a source's blank maps are empty (flag ``no_mass``: a uniform
compass whose peak is drawn at random, so a uniform χ² says nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from creg.core.measures import bootstrap_ci
from creg.core.records import SampleRecord
from creg.core.sample import RELATIONS
from creg.store import RunStore
from creg.summary.chi2 import chi2_uniform

#: a source whose blank peaks differ from uniform at this level is warned about.
PRIOR_P = 0.01


def _dae(recs: Sequence[SampleRecord], seed: int) -> tuple[float | None, list[float] | None, int]:
    v = np.array([r.dae for r in recs if r.dae is not None], dtype=np.float64)
    if v.size == 0:
        return None, None, 0
    ci = bootstrap_ci(v, seed=seed)
    return float(v.mean()), list(ci) if ci is not None else None, int(v.size)


def blank_control(records: Sequence[SampleRecord], blank: Sequence[SampleRecord], *, seed: int = 0) -> dict[str, Any]:
    """``{"n_samples", "k", "sources": {source: {...}}}`` (see the module docstring); scene records
    without a blank twin (and blank records without a scene twin) are left out, so both sides
    cover the same samples."""
    scene_by = {(r.sample_id, r.source): r for r in records}
    blank_by = {(r.sample_id, r.source): r for r in blank}
    keys = [k for k in scene_by if k in blank_by]
    sources = list(dict.fromkeys(s for _, s in keys))
    k = len(blank[0].compass) if blank else (len(records[0].compass) if records else 0)
    out: dict[str, Any] = {"n_samples": len({i for i, _ in keys}), "k": k, "prior_p": PRIOR_P, "sources": {}}
    for name in sources:
        pairs = [(scene_by[key], blank_by[key]) for key in keys if key[1] == name]
        b = [p[1] for p in pairs]
        counts = np.bincount([r.peak_sector for r in b], minlength=k)[:k]
        test = chi2_uniform(counts)
        dae, dae_ci, n_dae = _dae(b, seed)
        by_class: dict[str, Any] = {}
        for rel in RELATIONS:
            sc = [s for s, _ in pairs if s.relation == rel]
            bl = [x for s, x in pairs if s.relation == rel]
            if not sc:
                continue
            s_dae, s_ci, _ = _dae(sc, seed)
            b_dae, b_ci, _ = _dae(bl, seed)
            inside = (s_ci is not None and b_dae is not None and s_ci[0] <= b_dae <= s_ci[1])
            by_class[rel] = {"n": len(sc), "dae_scene": s_dae, "dae_scene_ci": s_ci, "dae_blank": b_dae,
                             "dae_blank_ci": b_ci, "explained_by_prior": bool(inside)}
        n = int(counts.sum())
        blind = bool(pairs) and all(np.allclose(s.compass, x.compass, rtol=0, atol=1e-12) for s, x in pairs)
        out["sources"][name] = {
            "n": n, "peak_counts": [int(c) for c in counts],
            "top_sector": int(np.argmax(counts)) if n else None,
            "top_share": float(counts.max() / n) if n else None,
            "chi2": test["stat"], "df": test["df"], "p": test["p"],
            "prior": bool(test["p"] is not None and test["p"] < PRIOR_P),
            "image_blind": blind,
            "dae": dae, "dae_ci": dae_ci, "n_dae": n_dae,
            "flags": {f: sum(f in r.flags for r in b) for f in sorted({f for r in b for f in r.flags})},
            "by_class": by_class,
        }
    return out


def sector_name(sector: int, k: int) -> str:
    """``"0°"`` .. the centre angle of a compass sector (0 = right, 90 = up)."""
    return f"{sector * 360 / k:g}°"


def control_warnings(control: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``blank_prior`` for each source whose blank peaks are not uniform (p < 0.01); ``blank_dae`` for
    each source and class whose blank DAE lies inside the scene DAE's 95% CI."""
    out: list[dict[str, Any]] = []
    if not control:
        return out
    k = control.get("k") or 0
    for name, s in (control.get("sources") or {}).items():
        if s.get("prior"):
            out.append({"kind": "blank_prior", "source": name, "p": s["p"], "top_sector": s["top_sector"],
                        "top_share": s["top_share"],
                        "message": f"{name}: on blank images (objects removed) its peaks are not uniform "
                                   f"(χ² = {s['chi2']:.1f}, df {s['df']}, p = {s['p']:.2g}; {s['top_share']:.0%} at "
                                   f"{sector_name(s['top_sector'], k)}): a position prior"})
        empty = int((s.get("flags") or {}).get("no_mass", 0))
        if empty and 2 * empty >= s.get("n", 0):
            out.append({"kind": "blank_empty", "source": name, "count": empty, "n": s.get("n", 0),
                        "message": f"{name}: {empty} of {s.get('n', 0)} maps on blank images have no relevance mass "
                                   "(uniform compasses, peaks drawn at random): the χ² test cannot show a prior"})
        if s.get("image_blind"):  # the same compass with and without objects: a control that reads no pixels
            continue
        weak = [rel for rel, c in (s.get("by_class") or {}).items() if c.get("explained_by_prior")]
        if weak:
            detail = ", ".join(f"{rel} {s['by_class'][rel]['dae_scene']:.1f} vs {s['by_class'][rel]['dae_blank']:.1f}"
                               for rel in weak)
            out.append({"kind": "blank_dae", "source": name, "classes": weak,
                        "message": f"{name}: DAE on scenes is within its 95% CI of the DAE on blanks for "
                                   f"{', '.join(weak)} ({detail}): no better than with nothing to see"})
    return out


def control_markdown(control: dict[str, Any] | None) -> str:
    """The blank-image control as a Markdown table (empty without one)."""
    if not control or not control.get("sources"):
        return ""
    k = control["k"]
    heads = " | ".join(sector_name(i, k) for i in range(k))
    lines = [f"**Blank-image control** (same samples, objects removed; n={control['n_samples']}): peak sectors on "
             f"blanks, χ² against uniform (⚠ p < {control['prior_p']:g}), DAE on blanks, maps without relevance mass "
             "(empty)", "",
             f"| Method | n | {heads} | χ² | p | DAE blank [95% CI] | empty |", "|---|---:|" + "---:|" * k + "---:|---:|---:|---:|"]
    for name, s in control["sources"].items():
        counts = " | ".join(str(c) for c in s["peak_counts"])
        chi = "–" if s["chi2"] is None else f"{s['chi2']:.1f}"
        p = "–" if s["p"] is None else (f"{s['p']:.2g}" + (" ⚠" if s["prior"] else ""))
        dae = "–" if s["dae"] is None else f"{s['dae']:.1f}" + (
            f" [{s['dae_ci'][0]:.1f}, {s['dae_ci'][1]:.1f}]" if s.get("dae_ci") else "")
        blind = " (reads no pixels)" if s.get("image_blind") else ""
        empty = int((s.get("flags") or {}).get("no_mass", 0))
        lines.append(f"| {name}{blind} | {s['n']} | {counts} | {chi} | {p} | {dae} | {empty} |")
    return "\n".join(lines) + "\n"


#: the nested run directory of the blank-image control.
BLANK_DIR = "blank"


def stored_controls(run_dir, records, *, seed: int = 0) -> dict[str, Any]:
    """``{"controls": {"blank": ...}}`` when ``run_dir`` holds a blank-image control run
    (:func:`creg.summary.prior.blank_control` against ``records``), else ``{}``."""
    path = Path(run_dir) / BLANK_DIR
    if not RunStore.is_run_dir(path):
        return {}
    blank = RunStore.read(path).records()
    if not blank:
        return {}
    return {"controls": {"blank": blank_control(records, blank, seed=seed)}}
