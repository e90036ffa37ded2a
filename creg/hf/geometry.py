"""Pixel centres of vision cells in the original image, for any preprocessing.

Every preprocessing step a VLM applies before its patch grid -- resize, centre crop, pad to a
square, cutting into tiles, a downscaled thumbnail -- maps a rectangle of the *original* image
(possibly reaching beyond it, for padding) onto a grid of cells. :func:`region_cell_xy` gives the
cell centres of a grid laid evenly over such a rectangle, so an adapter only has to say which
rectangle each grid covers:

* plain resize: the whole image ``(0, 0, W, H)``;
* centre crop of the resized image: the crop's rectangle in original pixels;
* pad to square (image centred): ``(-(S-W)/2, -(S-H)/2, (S+W)/2, (S+H)/2)`` with ``S = max(W, H)``;
* a tile of a tiled (dynamic-resolution) image: the tile's rectangle, scaled back to the original.
"""

from __future__ import annotations

import torch

from creg.plugins.adapter import VisionLayout


def region_cell_xy(grid_hw: tuple[int, int], region: tuple[float, float, float, float]) -> torch.Tensor:
    """``(h, w, 2)`` float64 (x, y) centres of an (h, w) grid spread evenly over ``region``
    = (x0, y0, x1, y1) in original-image pixels (it may extend beyond the image)."""
    gh, gw = grid_hw
    x0, y0, x1, y1 = region
    xs = x0 + (torch.arange(gw, dtype=torch.float64) + 0.5) * ((x1 - x0) / gw)
    ys = y0 + (torch.arange(gh, dtype=torch.float64) + 0.5) * ((y1 - y0) / gh)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def cells_in_image(cell_xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """``(..., 2) -> (...)`` bool: the cell centre lies on the (W, H) image (cells on padding: False)."""
    w, h = image_size
    x, y = cell_xy[..., 0], cell_xy[..., 1]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


def centre_crop_region(image_size: tuple[int, int], resized_wh: tuple[int, int], crop_wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """The rectangle of the original image that survives resizing to ``resized_wh`` and then a
    centre crop of ``crop_wh`` (both (width, height); the crop is centred as PIL/transformers do:
    offset ``(resized - crop) // 2``)."""
    w, h = image_size
    rw, rh = resized_wh
    cw, ch = crop_wh
    left, top = (rw - cw) // 2, (rh - ch) // 2
    sx, sy = w / rw, h / rh
    return (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)


def pad_to_square_region(image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The square (side max(W, H)) the image is centred on by pad-to-square preprocessing."""
    w, h = image_size
    s = max(w, h)
    return (-(s - w) / 2, -(s - h) / 2, (s + w) / 2, (s + h) / 2)


def token_grid_layout(row_ids: torch.Tensor, image_token_id: int, grid_hw: tuple[int, int],
                      region: tuple[float, float, float, float], image_size: tuple[int, int], *,
                      patch_hw: tuple[int, int] | None = None) -> VisionLayout:
    """A single-grid layout: the ``image_token_id`` positions of one row ``(seq,)`` of input ids,
    in raster order, form a ``grid_hw`` grid laid evenly over ``region`` of the original image."""
    token_index = (row_ids.cpu() == image_token_id).nonzero()[:, 0]
    if token_index.numel() != grid_hw[0] * grid_hw[1]:
        raise RuntimeError(f"{token_index.numel()} image tokens in the sequence but a {grid_hw[0]}x{grid_hw[1]} grid")
    cell_xy = region_cell_xy(grid_hw, region)
    inside = cells_in_image(cell_xy, image_size)
    return VisionLayout(token_index=token_index, grid_hw=grid_hw, cell_xy=cell_xy, patch_hw=patch_hw,
                        cell_in_image=None if bool(inside.all()) else inside)
