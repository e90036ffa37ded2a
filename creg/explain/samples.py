"""Explaining a few samples with several built sources and one shared forward pass, scored as a run scores them:
the one explain path under ``creg.load(...).explain``, ``creg explain`` and the report's heatmap redraws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from creg.core.compass import sector_names, uniform_cell_xy
from creg.explain.context import ExplainContext
from creg.explain.grids import grid_spans
from creg.explain.pipeline import ScoringSettings, sample_facts, score_map
from creg.store import join


@dataclass
class SourceExplanation:
    """One source's explanation of one image.

    ``relevance``: ``(h, w)`` relevance on the model's vision grid; ``cell_xy``: ``(h, w, 2)``
    pixel centres (x, y) of those cells in the original image; ``compass``: ``(K,)`` P(theta_k),
    sector k centred at k * 360 / K (``sectors`` names them); angles in degrees, 0 = right, 90 = up.
    ``dae``/``ea``: Eq. 6-7 against the true direction A -> B of the boxes (None when A and B share
    their centre); ``record``: the same numbers as a run's ``records.jsonl`` line.
    """

    source: str
    relevance: np.ndarray
    cell_xy: np.ndarray
    compass: np.ndarray
    sectors: list[str]
    peak_sector: int
    peak_angle: float
    sector_angle: float
    dae: float | None
    ea: bool | None
    d_ab: float
    r_max: float
    sigma: float
    flags: list[str]
    record: Any
    #: a multi-grid map (tiles + global image): its grids in the order of ``relevance``'s cells
    #: (:class:`creg.explain.grids.GridSpan`); None for a single grid. Plots spread it to pixel space.
    grids: tuple | None = None

    @property
    def peak(self) -> str:
        """The name of the peak sector (E, NE, ...)."""
        return self.sectors[self.peak_sector]

    def __repr__(self) -> str:
        dae = f"{self.dae:.1f}°" if self.dae is not None else "undefined"
        return (f"SourceExplanation({self.source!r}, peak {self.peak} ({self.peak_angle:.1f}°), DAE {dae}, "
                f"EA {self.ea}, grid {tuple(self.relevance.shape)})")

    def to_dict(self, *, maps: bool = False) -> dict[str, Any]:
        out = {"source": self.source, "compass": dict(zip(self.sectors, map(float, self.compass))),
               "peak": self.peak, "peak_sector": self.peak_sector, "peak_angle": self.peak_angle,
               "sector_angle": self.sector_angle, "dae": self.dae, "ea": self.ea, "d_ab": self.d_ab,
               "r_max": self.r_max, "sigma": self.sigma, "flags": self.flags, "grid_hw": list(self.relevance.shape)}
        if maps:
            out["relevance"] = self.relevance.tolist()
            out["cell_xy"] = self.cell_xy.tolist()
            out["grids"] = [g._asdict() for g in self.grids] if self.grids else None
        return out


def explain_samples(samples, sources, adapter, *, k: int = 8, sigma_r: float = 0.6, rho_r: float = 2.0,
                    seed: int = 0) -> tuple[dict[str, list[SourceExplanation]], np.ndarray | None]:
    """Explain a batch of samples with several built sources and one shared forward pass.

    Returns ({source name: one :class:`SourceExplanation` per sample}, ``(b, 4)`` class logits or None).
    The projection and the scoring are a run's (:func:`_score`), so the numbers equal a run's records.
    """
    ctx = ExplainContext.for_sources(list(samples), adapter, sources, seed=seed)  # planned as a run plans it
    logits = ctx.output.class_logits.detach().float().cpu().numpy() if adapter is not None else None
    out: dict[str, list[SourceExplanation]] = {}
    for src in sources:
        maps = src.explain(ctx)
        rows = []
        for i, (sample, rmap) in enumerate(zip(ctx.samples, maps)):
            record, compass = _score(sample, src.name, rmap, None if logits is None else logits[i], k=k,
                                     sigma_r=sigma_r, rho_r=rho_r, rng=ctx.rng(i, f"tie/{src.name}"))
            values = rmap.values.detach().float().cpu().numpy()
            if rmap.cell_xy is not None:
                cell_xy = rmap.cell_xy.detach().double().cpu().numpy()
            else:
                cell_xy = uniform_cell_xy(tuple(values.shape), sample.image_size).numpy()
            rows.append(SourceExplanation(
                source=src.name, relevance=values, cell_xy=cell_xy, compass=compass.probs.numpy(),
                sectors=sector_names(compass.k), peak_sector=compass.peak_sector, peak_angle=compass.peak_angle,
                sector_angle=compass.sector_angle, dae=record.dae, ea=record.ea, d_ab=compass.d_ab,
                r_max=compass.r_max, sigma=compass.sigma, flags=list(compass.flags), record=record,
                grids=grid_spans(ctx.layout(i), values.shape) if adapter is not None and rmap.cell_xy is not None else None))
        out[src.name] = rows
    return out, logits


def _score(sample, source: str, rmap, logits, *, k: int, sigma_r: float, rho_r: float, rng):
    """(record, compass) of one map through the run's scoring pipeline (:func:`creg.explain.score_map`)."""
    settings = ScoringSettings(k=k, sigma_r=sigma_r, rho_r=rho_r)
    row, compass = score_map(sample, rmap, settings, source=source, rng=rng)
    return join(sample_facts(sample, settings, logits), row), compass
