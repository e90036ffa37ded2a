"""``--source-opt creg.layers=auto``: CREG's layers from the layer analysis, once per run.

Before a run's first sample, :func:`resolve_auto_layers` finds the sources whose ``layers`` is
``"auto"`` (``creg``, ``creg_gt``, ``random_ref``), runs :func:`creg.explain.layers.layer_effects`
on the benchmark's first :data:`AUTO_N` samples (and their blanks) and gives those sources the
recommended layers (:func:`creg.explain.layers.recommend_layers`; when there is none, the paper's
default layers that the model has, marked ``fallback``). The result is cached in ``RUN_DIR/layers.json`` with
the model it was measured on, so a resume (and the blank-image control, which shares the
sources) uses the same layers without measuring again; ``config.json`` and ``summary.json`` record
it under ``layers_auto``.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from creg.core.errors import RunError
from creg.store.identity import CHECKED_ADAPTER

#: samples the layer analysis of ``layers=auto`` measures.
AUTO_N = 16
#: the cache, inside the run directory.
CACHE = "layers.json"


def auto_sources(sources) -> list:
    return [s for s in sources if getattr(s, "layers", None) == "auto"]


def resolve_auto_layers(runner) -> dict[str, Any] | None:
    """Resolve every ``layers=auto`` source of ``runner`` (module docstring); the record, or None when none asks."""
    from creg.explain.layers import layer_effects  # lazy: torch

    sources = auto_sources(runner.sources)
    if not sources:
        return None
    if runner.adapter is None:
        raise RunError("layers=auto measures the model's layers: choose a model with --adapter")
    adapter_doc = runner.describe().get("adapter") or {}
    model = {k: adapter_doc.get(k) for k in CHECKED_ADAPTER}
    model = json.loads(json.dumps(model, default=str))
    cache = runner.out / CACHE
    record = None
    if cache.is_file() and not runner.overwrite:
        try:
            stored = json.loads(cache.read_text())
            record = stored if isinstance(stored, dict) and stored.get("model") == model else None
        except ValueError:
            record = None
    if record is None:
        n = AUTO_N if runner.config.n is None else min(AUTO_N, runner.config.n)
        samples = list(islice(runner.benchmark.samples(), n))
        if not samples:
            raise RunError("layers=auto: the benchmark gave no sample to measure the layers on")
        runner.log(f"layers=auto: measuring which blocks read the image on {len(samples)} samples ...")
        analysis = layer_effects(runner.adapter, samples, runner.benchmark.blank_sample)
        rec = analysis["recommendation"]
        fallback = getattr(sources[0], "auto_fallback_layers", ())  # declared by the source: its default layers
        default = [l for l in fallback if l >= -(runner.adapter.num_layers + 1)]  # those the model has
        record = {"model": model, "n": len(samples), "layers": rec["layers"] or default,
                  "fallback": rec["layers"] is None, "read_blocks": rec["read_blocks"], "note": rec["note"],
                  "analysis": analysis}
    for s in sources:
        s.layers = tuple(record["layers"])
    record["sources"] = [s.name for s in sources]
    runner.log(f"layers=auto: {', '.join(record['sources'])} use layers {','.join(map(str, record['layers']))}"
               + (" (no recommendation: the paper's default)" if record["fallback"] else ""))
    return record


def brief(record: dict[str, Any]) -> dict[str, Any]:
    """What config.json and summary.json keep of the record (not the whole table)."""
    return {k: record[k] for k in ("layers", "fallback", "read_blocks", "n", "note", "sources") if k in record}


def resolved_source_options(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run's ``source_options`` (its ``config.json`` document ``doc``) with every ``layers=auto`` replaced by
    the layers the run resolved (``layers_auto``), for code that rebuilds the run's sources (report heatmaps,
    the flip run). Unchanged when the run recorded none."""
    options = {k: dict(v) for k, v in ((doc.get("run") or {}).get("source_options") or {}).items()}
    layers = (doc.get("layers_auto") or {}).get("layers")
    if layers:
        for opts in options.values():
            if isinstance(opts.get("layers"), str) and opts["layers"].strip().lower() == "auto":
                opts["layers"] = list(layers)
    return options
