"""The sources' own diagnostics in the summary: IG's completeness gap and the per-layer
cancellation ratios of Grad x Act (records' ``extra``; :mod:`creg.sources.integrated_gradients`,
:mod:`creg.sources.roundoff`).

``summary.json`` gets, per source whose records carry them::

    "completeness_gap": {"n", "median", "max", "steps": [min, max]}
                        (+ "tolerance", "above": how many gaps exceed it, when the records name one),
    "cancellation": {LAYER: median ratio}

and ``table.md`` (so the terminal and ``report.md``) one line per source with a gap.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from creg.core.records import SampleRecord
from creg.core.roundoff import CANCELLATION_KEY

GAP_KEY = "completeness_gap"
STEPS_KEY = "ig_steps"
TOLERANCE_KEY = "ig_tolerance"


def source_diagnostics(recs: Sequence[SampleRecord]) -> dict[str, Any]:
    """The ``completeness_gap`` and ``cancellation`` entries of one source's summary (absent when
    no record carries them)."""
    out: dict[str, Any] = {}
    gaps = [r.extra[GAP_KEY] for r in recs if isinstance(r.extra.get(GAP_KEY), (int, float))]
    if gaps:
        steps = [int(r.extra[STEPS_KEY]) for r in recs if isinstance(r.extra.get(STEPS_KEY), int)]
        out[GAP_KEY] = {"n": len(gaps), "median": float(np.median(gaps)), "max": float(max(gaps)),
                        "steps": [min(steps), max(steps)] if steps else None}
        tolerances = {float(r.extra[TOLERANCE_KEY]) for r in recs if isinstance(r.extra.get(TOLERANCE_KEY), (int, float))}
        if len(tolerances) == 1:
            (tol,) = tolerances
            out[GAP_KEY].update(tolerance=tol, above=sum(g > tol for g in gaps))
    ratios: dict[str, list[float]] = {}
    for r in recs:
        for layer, value in (r.extra.get(CANCELLATION_KEY) or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                ratios.setdefault(str(layer), []).append(float(value))
    if ratios:
        out[CANCELLATION_KEY] = {layer: float(np.median(v)) for layer, v in ratios.items()}
    return out


def diagnostics_lines(summary: dict[str, Any]) -> list[str]:
    """One line per source with a completeness gap, for the Markdown table's footer."""
    lines = []
    for name, s in (summary.get("sources") or {}).items():
        gap = s.get(GAP_KEY)
        if not gap:
            continue
        steps = gap.get("steps")
        used = "" if not steps else f", {steps[0]} steps" if steps[0] == steps[1] else f", {steps[0]}-{steps[1]} steps"
        within = "" if gap.get("tolerance") is None else (
            f"; tolerance {gap['tolerance']:g}: " + ("all within" if not gap["above"] else f"{gap['above']} above"))
        lines.append(f"Completeness gap of {name} (|Σ attr − (z(x) − z(0))| / |z(x) − z(0)|, n={gap['n']}): "
                     f"median {gap['median']:.2g}, max {gap['max']:.2g}{used}{within}")
    return lines
