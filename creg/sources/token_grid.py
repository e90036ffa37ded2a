"""From per-token relevance to a sample's vision grid and a :class:`RelevanceMap`.

A single-grid layout gives an ``(H_g, W_g)`` map; a multi-grid layout (tiles, thumbnail, base
image) gives its union of cells as one row ``(1, n_cells)`` with every cell's own pixel centre
(see :class:`creg.plugins.adapter.VisionLayout`). Cells on padding outside the image carry no relevance:
:func:`relevance_map` sets them to 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from creg.core.sample import Box
from creg.plugins.adapter import VisionLayout
from creg.plugins.relevance import RelevanceMap

if TYPE_CHECKING:  # pragma: no cover
    from creg.explain.context import ExplainContext


def vision_tokens(token_values: torch.Tensor, layout: VisionLayout) -> torch.Tensor:
    """``(seq, ...)`` values of one sample -> ``(n_vis, ...)`` at its vision tokens, raster order."""
    return token_values[layout.token_index.to(token_values.device)]


def to_grid(vision_values: torch.Tensor, layout: VisionLayout) -> torch.Tensor:
    """``(n_vis,)`` in raster order -> ``(H_g, W_g)``."""
    h, w = layout.grid_hw
    if vision_values.numel() != h * w:
        raise ValueError(f"{vision_values.numel()} vision values for a {h}x{w} grid")
    return vision_values.reshape(h, w)


def relevance_map(grid: torch.Tensor, layout: VisionLayout, ref_box: Box | None = None) -> RelevanceMap:
    """A detached float32 CPU :class:`RelevanceMap` on the layout's cells (``(H_g, W_g)`` values);
    cells on padding (``layout.in_image`` False) get 0."""
    values = grid.detach().float().cpu()
    if layout.cell_in_image is not None:
        values = values * layout.in_image
    return RelevanceMap(values=values, cell_xy=layout.cell_xy, ref_box=ref_box)


def token_relevance_maps(token_values: torch.Tensor, ctx: "ExplainContext") -> list[RelevanceMap]:
    """``(b, seq)`` per-token relevance of ``ctx``'s batch -> one map per sample on its vision grid."""
    maps = []
    values = token_values.detach().float().cpu()  # one device-to-host copy per batch, not one per sample
    for i in range(len(ctx.samples)):
        layout = ctx.layout(i)
        maps.append(relevance_map(to_grid(vision_tokens(values[i], layout), layout), layout))
    return maps
