"""Geometry-only sources: they need no model, only the sample's boxes.

* ``oracle`` -- the paper's geometry oracle: all relevance at B's location (its box centre),
  the theoretical ceiling (DAE 0, EA 1).
* ``random`` -- the random-sector baseline of the paper's metric validation (§4): the evidence
  points in a uniformly random direction (a point at angle phi ~ U[0, 360) from A's centre, at
  distance d_AB / 2). Expected DAE 90 deg, EA 2/K -- whatever the scene's geometry.
* ``random_relevance`` -- uniformly random relevance on the vision grid (the literal wording of
  §5.1). It is *not* a chance baseline under Eq. 5: sectors holding more grid cells within r_max
  collect more mass, and where the cells are depends on where A sits in the image, which
  correlates with where B is. docs/paper-to-code.md shows how large that geometric prior is.

All randomness is seeded by the run seed and the sample id.
"""

from __future__ import annotations

import math

import torch

from creg.explain.context import ExplainContext
from creg.plugins.relevance import RelevanceMap, RelevanceSource


def point_map(x: float, y: float) -> RelevanceMap:
    """All relevance at one pixel position (a 1x1 map with its own cell coordinate)."""
    return RelevanceMap(values=torch.ones(1, 1, dtype=torch.float64),
                        cell_xy=torch.tensor([[[x, y]]], dtype=torch.float64))


class OracleSource(RelevanceSource):
    """Relevance 1 at the true B location (a single point at B's box centre), 0 elsewhere."""

    name = "oracle"
    needs_model = False

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        return [point_map(*s.tgt_box.center) for s in ctx.samples]


class RandomDirectionSource(RelevanceSource):
    """All relevance at one point in a uniformly random direction from A (the random-sector baseline)."""

    name = "random"
    needs_model = False

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        maps = []
        for i, s in enumerate(ctx.samples):
            phi = math.radians(ctx.rng(i, self.name).uniform(0.0, 360.0))
            (xa, ya), (xb, yb) = s.ref_box.center, s.tgt_box.center
            r = max(math.hypot(xb - xa, yb - ya), 1e-6) / 2.0
            maps.append(point_map(xa + r * math.cos(phi), ya - r * math.sin(phi)))
        return maps


class RandomRelevanceSource(RelevanceSource):
    """Uniform random relevance in [0, 1) on each sample's vision grid."""

    name = "random_relevance"
    needs_model = False

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        maps = []
        for i in range(len(ctx.samples)):
            layout = ctx.layout(i)
            values = torch.from_numpy(ctx.rng(i, self.name).random(layout.grid_hw))
            maps.append(RelevanceMap(values=values * layout.in_image, cell_xy=layout.cell_xy))  # none on padding
        return maps
