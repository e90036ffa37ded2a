"""Multi-grid relevance as one heatmap: every cell's relevance spread over the pixels it covers.

A tiled model (tiles plus a global image, an any-resolution grid plus a base image) sees each part
of the image through several grids at once, and a source's map is their union as one row of
cells (:class:`creg.plugins.adapter.VisionLayout`). Drawn cell by cell those grids overlap and read as
stripes. Here each cell's relevance is treated as mass, as the compass treats it: spread evenly
over the cell's footprint in the original image (edges halfway between neighbouring centres of its
own grid, clipped to the image), and the grids are summed on a pixel raster. The raster holds the
same total relevance as the cells (up to cells on padding outside the image), so a region that
several grids see, each relevant there, is brighter, and a global-image cell, which covers more
pixels, spreads its mass thinner than a tile cell of the same value. One panel per source stays one
panel, however many grids the model uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from creg.explain.grids import GridSpan

if TYPE_CHECKING:  # pragma: no cover - pulls in torch
    pass

#: The longest side of the pixel raster (raster pixels, not image pixels).
RASTER_PX = 240


def split_grids(relevance: np.ndarray, cell_xy: np.ndarray, grids: Sequence[GridSpan]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A flat map ``(1, n)`` with centres ``(1, n, 2)`` -> per grid ``(values (h, w), centres (h, w, 2))``."""
    values = np.asarray(relevance, dtype=np.float64).reshape(-1)
    xy = np.asarray(cell_xy, dtype=np.float64).reshape(-1, 2)
    n = sum(g.h * g.w for g in grids)
    if values.size != n or xy.shape[0] != n:
        raise ValueError(f"a map of {values.size} cells with {xy.shape[0]} centres does not fit grids of {n} cells")
    out, at = [], 0
    for g in grids:
        k = g.h * g.w
        out.append((values[at:at + k].reshape(g.h, g.w), xy[at:at + k].reshape(g.h, g.w, 2)))
        at += k
    return out


def _edges(centres: np.ndarray) -> np.ndarray:
    """``(n + 1,)`` edges of ``n >= 2`` sorted cell centres: midpoints inside, half a spacing outside."""
    c = np.asarray(centres, dtype=np.float64)
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def cell_edges(cell_xy: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(w + 1,)`` x-edges and ``(h + 1,)`` y-edges of one axis-aligned grid's cells, in image pixels.

    A grid with one column (row) spans the spacing of its other axis; a single cell spans the image.
    """
    h, w = cell_xy.shape[:2]
    xs, ys = cell_xy[0, :, 0], cell_xy[:, 0, 1]
    dx = float(np.mean(np.diff(xs))) if w > 1 else None
    dy = float(np.mean(np.diff(ys))) if h > 1 else None
    dx, dy = dx or dy, dy or dx
    ex = _edges(xs) if w > 1 else (np.array([xs[0] - dx / 2, xs[0] + dx / 2]) if dx else np.array([0.0, image_size[0]]))
    ey = _edges(ys) if h > 1 else (np.array([ys[0] - dy / 2, ys[0] + dy / 2]) if dy else np.array([0.0, image_size[1]]))
    return ex, ey


def raster_shape(image_size: tuple[int, int], longest: int = RASTER_PX) -> tuple[int, int]:
    """``(rows, cols)`` of the pixel raster of an image ``(W, H)``: its longest side ``longest``."""
    w, h = image_size
    scale = longest / max(w, h)
    return max(1, round(h * scale)), max(1, round(w * scale))


def spread_to_pixels(relevance: np.ndarray, cell_xy: np.ndarray, grids: Sequence[GridSpan],
                     image_size: tuple[int, int], *, longest: int = RASTER_PX) -> np.ndarray:
    """``(rows, cols)`` relevance per raster pixel of an image ``(W, H)``: each cell's value spread
    evenly over the raster pixels whose centres fall in its footprint, summed over the grids.

    A cell whose footprint holds no raster pixel centre (smaller than a raster pixel, or off the
    image) adds nothing; otherwise the raster's total equals the cells' total.
    """
    rows, cols = raster_shape(image_size, longest)
    px = (np.arange(cols) + 0.5) * (image_size[0] / cols)
    py = (np.arange(rows) + 0.5) * (image_size[1] / rows)
    out = np.zeros((rows, cols))
    for values, xy in split_grids(relevance, cell_xy, grids):
        v = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
        ex, ey = cell_edges(xy, image_size)
        col = np.searchsorted(ex, px, side="right") - 1  # cols: the cell column of each raster column
        row = np.searchsorted(ey, py, side="right") - 1
        in_x, in_y = (col >= 0) & (col < v.shape[1]), (row >= 0) & (row < v.shape[0])
        count_x = np.bincount(col[in_x], minlength=v.shape[1])
        count_y = np.bincount(row[in_y], minlength=v.shape[0])
        area = count_y[:, None] * count_x[None, :]
        density = np.divide(v, area, out=np.zeros_like(v), where=area > 0)
        out[np.ix_(in_y, in_x)] += density[np.ix_(row[in_y], col[in_x])]
    return out


def outlines(cell_xy: np.ndarray, grids: Sequence[GridSpan], image_size: tuple[int, int]) -> list[tuple[str, tuple[float, float, float, float]]]:
    """``(name, (x0, y0, x1, y1))`` of each grid's footprint on the image that does not cover the whole
    image (the tiles; a global image needs no outline)."""
    dummy = np.zeros(sum(g.h * g.w for g in grids))
    out = []
    w, h = image_size
    for g, (_, xy) in zip(grids, split_grids(dummy, cell_xy, grids)):
        ex, ey = cell_edges(xy, image_size)
        box = (max(0.0, ex[0]), max(0.0, ey[0]), min(float(w), ex[-1]), min(float(h), ey[-1]))
        if box[0] > 0.5 or box[1] > 0.5 or box[2] < w - 0.5 or box[3] < h - 0.5:
            out.append((g.name, box))
    return out
