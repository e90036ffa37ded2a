"""Geometry-only sources: they need no model, only the sample's boxes.

* ``oracle`` -- the paper's geometry oracle: all relevance at B's location (its box centre),
  the theoretical ceiling (DAE 0, EA 1).
* ``random`` -- uniformly random relevance on the vision grid, seeded per sample.
"""

from __future__ import annotations

import torch

from ..explain import ExplainContext
from ..relevance import RelevanceMap, RelevanceSource


class OracleSource(RelevanceSource):
    """Relevance 1 at the true B location (a single point at B's box centre), 0 elsewhere."""

    name = "oracle"
    description = "geometry oracle: all relevance at B's centre (ceiling: DAE 0, EA 1)"
    needs_model = False

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        maps = []
        for s in ctx.samples:
            xb, yb = s.tgt_box.center
            maps.append(RelevanceMap(values=torch.ones(1, 1, dtype=torch.float64),
                                     cell_xy=torch.tensor([[[xb, yb]]], dtype=torch.float64)))
        return maps


class RandomSource(RelevanceSource):
    """Uniform random relevance in [0, 1) on each sample's vision grid (seeded by run seed and sample id)."""

    name = "random"
    description = "uniformly random relevance on the vision grid (seeded)"
    needs_model = False

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        maps = []
        for i in range(len(ctx.samples)):
            layout = ctx.layout(i)
            values = torch.from_numpy(ctx.rng(i, self.name).random(layout.grid_hw))
            maps.append(RelevanceMap(values=values, cell_xy=layout.cell_xy))
        return maps
