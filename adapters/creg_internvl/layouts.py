"""InternVL's dynamic tiling, as ``GotOcr2ImageProcessor`` does it with ``crop_to_patches``.

The image is stretched onto a canvas of ``cols x rows`` tiles of T x T pixels, the arrangement
whose aspect ratio is closest to the image's among those with ``min_tiles..max_tiles`` tiles
(ties: more tiles while the image area exceeds half the canvas). The tiles go to the vision
tower in raster order, then -- when there is more than one tile -- a thumbnail, the whole
image stretched to T x T. Each tile has (T/p)^2 patches; pixel shuffle merges 2 x 2 of them
into one token (``downsample_ratio`` 0.5), so a tile gives (T/2p)^2 tokens in raster order,
and the sample's ``<IMG_CONTEXT>`` run holds the tiles' tokens one tile after the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tile:
    """One crop the vision tower sees. ``cell_xy`` ``(h, w, 2)`` / ``patch_xy`` ``(h_p, w_p, 2)``
    float64: original-image centres of its tokens / of its patches; ``offsets`` ``(h * w,)``:
    where its tokens sit in the sample's run of image tokens."""

    name: str
    offsets: torch.Tensor
    cell_xy: torch.Tensor
    patch_xy: torch.Tensor


def tile_arrangement(image_hw: tuple[int, int], tile_px: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """(cols, rows) of the canvas (``get_optimal_tiled_canvas``)."""
    h, w = image_hw
    candidates = sorted(
        ((c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1) if min_tiles <= c * r <= max_tiles),
        key=lambda g: g[0] * g[1],
    )
    best, best_diff = (1, 1), float("inf")
    for c, r in candidates:
        diff = abs(w / h - c / r)
        if diff < best_diff:
            best, best_diff = (c, r), diff
        elif diff == best_diff and w * h > 0.5 * tile_px * tile_px * c * r:
            best = (c, r)
    return best


def _centres(n: int, px: float, origin: tuple[float, float], scale: tuple[float, float]) -> torch.Tensor:
    """``(n, n, 2)`` centres of an n x n grid of ``px`` cells at canvas ``origin``, times ``scale``."""
    axis = (torch.arange(n, dtype=torch.float64) + 0.5) * px
    yy, xx = torch.meshgrid((origin[1] + axis) * scale[1], (origin[0] + axis) * scale[0], indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def internvl_tiles(image_wh: tuple[int, int], *, tile_px: int, patch: int, downsample: float = 0.5, min_tiles: int = 1, max_tiles: int = 12, crop_to_patches: bool = True, use_thumbnail: bool = True) -> list[Tile]:
    """The crops of one image, in the order the model reads them (tiles, then the thumbnail)."""
    w, h = image_wh
    cols, rows = tile_arrangement((h, w), tile_px, min_tiles, max_tiles) if crop_to_patches and max_tiles > 1 else (1, 1)
    n_cell, n_patch = round(tile_px / patch * downsample), tile_px // patch
    cell_px = tile_px / n_cell
    scale = (w / (cols * tile_px), h / (rows * tile_px))
    crops = [(f"tile{i}", (i % cols * tile_px, i // cols * tile_px), scale) for i in range(cols * rows)]
    if use_thumbnail and cols * rows > 1:
        crops.append(("thumbnail", (0, 0), (w / tile_px, h / tile_px)))
    per = n_cell * n_cell
    return [
        Tile(name, torch.arange(k * per, (k + 1) * per), _centres(n_cell, cell_px, origin, sc), _centres(n_patch, patch, origin, sc))
        for k, (name, origin, sc) in enumerate(crops)
    ]
