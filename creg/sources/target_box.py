"""The pure-localisation control (paper §6.3): uniform relevance inside the target box B.

Relevance is 1 on every grid cell whose centre lies inside B's box (borders included) and 0
elsewhere; if B is too small to contain any cell centre, the cell nearest B's centre gets 1.
The grid is the model's vision grid when the run has a model, else the default grid. If this
control scores like CREG, the polar projection of a localised B -- not relational evidence --
explains the score.
"""

from __future__ import annotations

import torch

from creg.core.sample import Box
from creg.explain.context import ExplainContext
from creg.plugins.relevance import RelevanceMap, RelevanceSource


def box_mask(cell_xy: torch.Tensor, box: Box) -> torch.Tensor:
    """``(h, w, 2)`` cell centres -> ``(h, w)`` float64, 1 inside ``box``, else 0 (never all zero)."""
    x, y = cell_xy[..., 0].double(), cell_xy[..., 1].double()
    inside = (x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)
    if not inside.any():
        cx, cy = box.center
        nearest = ((x - cx) ** 2 + (y - cy) ** 2).flatten().argmin()
        inside = torch.zeros_like(inside).flatten()
        inside[nearest] = True
        inside = inside.view(x.shape)
    return inside.double()


class TargetBoxSource(RelevanceSource):
    """Uniform relevance inside B's box on the vision grid (control, §6.3). No options."""

    name = "target_box"
    needs_model = False

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        maps = []
        for i, s in enumerate(ctx.samples):
            layout = ctx.layout(i)
            maps.append(RelevanceMap(values=box_mask(layout.cell_xy, s.tgt_box), cell_xy=layout.cell_xy))
        return maps
