"""Explaining a few samples with several built sources and one shared forward pass, scored as a run scores them:
the one explain path under ``creg.load(...).explain``, ``creg explain`` and the report's heatmap redraws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from creg.core.compass import sector_names, uniform_cell_xy
from creg.core.records import join
from creg.core.sample import InvalidSample
from creg.explain.grids import grid_spans
from creg.explain.pipeline import PluginError, ScoringSettings, explain_batch
from creg.plugins.adapter import LayerOutOfRange


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
    It is a run's path (:func:`creg.explain.pipeline.explain_batch` with the maps kept), so the records
    equal a run's. A sample the run would skip raises here: the error of the first such sample (a name the
    model cannot take as text raises :class:`creg.core.sample.InvalidSample` itself, a layer the model does not have
    :class:`creg.plugins.adapter.LayerOutOfRange`).
    """
    samples = list(samples)
    try:
        result = explain_batch(samples, sources, adapter, ScoringSettings(k=k, sigma_r=sigma_r, rho_r=rho_r), seed=seed,
                               keep_maps=True)
    except PluginError as e:  # the run names the plugin; a caller's own mistake keeps its own one-line error
        raise e.__cause__ if isinstance(e.__cause__, (InvalidSample, LayerOutOfRange)) else e
    if result.errors:
        raise result.errors[0].error
    scored = {facts.id: (facts, rows) for facts, rows in result.scored}
    logits = np.array([scored[s.id][0].logits for s in samples], dtype=np.float32) if adapter is not None else None
    out: dict[str, list[SourceExplanation]] = {}
    for src in sources:
        items = []
        for sample in samples:
            facts, rows = scored[sample.id]
            row = next(r for r in rows if r.source == src.name)
            compass, stored = result.compasses[(sample.id, src.name)], result.maps[sample.id][src.name]
            record = join(facts, row)
            values = stored.values
            cell_xy = (stored.cell_xy.astype(np.float64) if stored.cell_xy is not None
                       else uniform_cell_xy(tuple(values.shape), sample.image_size).numpy())
            layout = result.layouts.get(sample.id)
            items.append(SourceExplanation(
                source=src.name, relevance=values, cell_xy=cell_xy, compass=compass.probs.numpy(),
                sectors=sector_names(compass.k), peak_sector=compass.peak_sector, peak_angle=compass.peak_angle,
                sector_angle=compass.sector_angle, dae=record.dae, ea=record.ea, d_ab=compass.d_ab,
                r_max=compass.r_max, sigma=compass.sigma, flags=list(compass.flags), record=record,
                grids=grid_spans(layout, values.shape) if layout is not None and stored.cell_xy is not None else None))
        out[src.name] = items
    return out, logits
