"""Which of a sample's image tokens form which grid, and where each cell sits on the image.

A sample's ``<image>`` placeholder expands into a run of image tokens. For LLaVA-1.5 the run
is one raster grid (after a CLS token when ``vision_feature_select_strategy == "full"``). For
LLaVA-NeXT it is the base image's grid, then the unpadded any-resolution grid row by row, each
row followed by a newline token that has no pixel position. The vision tower's patches (for
GradCAM) are one grid per crop it sees: the base image, then each tile in raster order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .geometry import Axis, Grid, canvas_axes, centres, clip_axes, select_best_resolution, unpadded_span


@dataclass(frozen=True)
class ImageTokens:
    """One sample's image tokens: ``n_tokens`` in the run, the ``grids`` among them, and the
    vision tower's per-crop patch centres ``patch_xy`` (each ``(h_p, w_p, 2)`` float64)."""

    n_tokens: int
    grids: list[Grid]
    patch_xy: list[torch.Tensor]


def llava15_tokens(image_wh: tuple[int, int], *, size: dict, crop_hw: tuple[int, int] | None, patch: int, square_pad: bool = False, cls_token: bool = False) -> ImageTokens:
    """LLaVA-1.5: one crop, one patch per token; ``cls_token`` for the "full" feature strategy."""
    x, y, (h, w) = clip_axes(image_wh, size=size, crop_hw=crop_hw, square_pad=square_pad)
    xy = centres((h // patch, w // patch), patch, x, y)
    n = xy.shape[0] * xy.shape[1]
    first = 1 if cls_token else 0
    return ImageTokens(first + n, [Grid("image", torch.arange(first, first + n), xy)], [xy])


def _base_axes(image_wh: tuple[int, int], size: dict, crop_hw: tuple[int, int] | None) -> tuple[Axis, Axis, tuple[int, int]]:
    """The base image: stretched to S x S (the processor's ``size_tuple``), then processed like a crop."""
    s_h, s_w = (size["height"], size["width"]) if size.get("height") else (size["shortest_edge"],) * 2
    x, y, hw = clip_axes((s_w, s_h), size=size, crop_hw=crop_hw)
    return x.then(Axis(image_wh[0] / s_w, 0.0)), y.then(Axis(image_wh[1] / s_h, 0.0)), hw


def llava_next_tokens(image_wh: tuple[int, int], *, size: dict, crop_hw: tuple[int, int] | None, patch: int, tile_px: int, pinpoints: list[list[int]]) -> ImageTokens:
    """LLaVA-NeXT ("default" feature strategy): base grid, then the unpadded tile grid + newlines.

    ``tile_px`` is the vision tower's image size (one tile); ``pinpoints`` the checkpoint's
    ``image_grid_pinpoints`` as (h, w).
    """
    w_img, h_img = image_wh
    bx, by, (bh, bw) = _base_axes(image_wh, size, crop_hw)
    base = centres((bh // patch, bw // patch), patch, bx, by)
    n_base = base.shape[0] * base.shape[1]

    canvas_h, canvas_w = select_best_resolution((h_img, w_img), pinpoints)
    tiles_hw = (canvas_h // tile_px, canvas_w // tile_px)
    per_tile = tile_px // patch
    cx, cy = canvas_axes(image_wh, (canvas_h, canvas_w))
    full = centres((tiles_hw[0] * per_tile, tiles_hw[1] * per_tile), patch, cx, cy)
    rows, cols = unpadded_span((h_img, w_img), full.shape[:2])
    kept = full[rows, cols]
    r, c = kept.shape[:2]
    offsets = n_base + (torch.arange(r)[:, None] * (c + 1) + torch.arange(c)[None, :]).reshape(-1)
    tiles = [
        centres((per_tile, per_tile), patch, cx, cy, origin=(j * tile_px, i * tile_px))
        for i in range(tiles_hw[0])
        for j in range(tiles_hw[1])
    ]
    grids = [Grid("base", torch.arange(n_base), base), Grid("anyres", offsets, kept)]
    return ImageTokens(n_base + r * (c + 1), grids, [base, *tiles])
