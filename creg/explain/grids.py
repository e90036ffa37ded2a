"""The grids of a multi-grid vision layout (tiles and a global image) that a map's flat row of cells lies on."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence

if TYPE_CHECKING:
    from creg.plugins.adapter import VisionLayout


class GridSpan(NamedTuple):
    """One grid of a multi-grid map: its name and its ``(h, w)``; grids follow each other in the
    map's flat row of cells in this order."""

    name: str
    h: int
    w: int


def grid_spans(layout: "VisionLayout", values_shape: Sequence[int]) -> tuple[GridSpan, ...] | None:
    """The grids of a multi-grid ``layout`` when a map of ``values_shape`` lies on its cells (a
    source's map on the layout's flat row), else None (a single grid, a point, another grid)."""
    if not layout.is_multi_grid or tuple(values_shape) != tuple(layout.grid_hw):
        return None
    return tuple(GridSpan(g.name, *g.grid_hw) for g in layout.grids)
