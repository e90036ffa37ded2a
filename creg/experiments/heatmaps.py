"""Relevance maps recomputed for a report's examples when the run stored none: the run's model loaded again and
the chosen samples explained once more with the run's settings (one forward pass per sample for all sources)."""

from __future__ import annotations

from typing import Any, Callable

from creg.config.hub import check_available
from creg.config.presets import load_registry
from creg.config.resolve import build_sources, resolve_adapter
from creg.config.run_config import RunConfig
from creg.execution.auto_layers import resolved_source_options
from creg.explain.samples import explain_samples
from creg.plugins.manager import get_plugins


def recompute_maps(config: dict[str, Any], samples: dict[str, Any], wanted: dict[str, set[str]],
                   log: Callable[[str], None]) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None]:
    """Relevance maps of ``wanted`` ({sample id: source names}) with the run's model and settings.

    Returns ({(sample id, source): {relevance, cell_xy, r_max, peak_sector}}, None) or ({}, the
    reason nothing could be computed)."""
    run = config["run"]
    try:
        cfg = RunConfig(**run).model_copy(update={"source_options": resolved_source_options(config)})
        plugins = get_plugins()
        adapter_cls, adapter_config = resolve_adapter(cfg, plugins, load_registry(cfg.registry))
        asked = {n for v in wanted.values() for n in v}
        names = [n for n in cfg.sources if n in asked] + sorted(asked - set(cfg.sources))
        sources = build_sources(cfg.model_copy(update={"sources": names, "source_options": {
            k: v for k, v in cfg.source_options.items() if k in names}}), plugins, adapter_cls is not None)
        if adapter_cls is not None:
            check_available(adapter_config.model)
            log(f"heatmaps: loading {cfg.adapter} to recompute the example samples' relevance maps ...")
            adapter = adapter_cls.load(adapter_config)
        else:
            adapter = None
    except Exception as e:  # noqa: BLE001 - the report completes without heatmaps and says why
        return {}, f"the run's model and sources could not be set up again here ({type(e).__name__}: {e})"
    out: dict[tuple[str, str], dict[str, Any]] = {}
    problems = []
    for sid, srcs in wanted.items():
        if sid not in samples:
            problems.append(f"{sid}: sample not recoverable")
            continue
        chosen = [s for s in sources if s.name in srcs]
        try:
            results, _ = explain_samples([samples[sid]], chosen, adapter, k=cfg.k, sigma_r=cfg.sigma_r,
                                         rho_r=cfg.rho_r, seed=cfg.seed)
        except Exception as e:  # noqa: BLE001 - one unreadable image must not sink the report
            problems.append(f"{sid}: {type(e).__name__}: {e}")
            continue
        for name, (ex,) in results.items():
            out[(sid, name)] = {"relevance": ex.relevance, "cell_xy": ex.cell_xy, "r_max": ex.r_max or None, "grids": ex.grids,
                                "peak_sector": ex.peak_sector}
    return out, ("; ".join(problems[:3]) if problems else None)
