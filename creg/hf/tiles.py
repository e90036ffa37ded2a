"""Tiles plus a global image: the grids of a tiled (dynamic-resolution) image, in reading order.

Tiling processors (Idefics3 / SmolVLM, Gemma 3's pan-and-scan, InternVL) cut the image into a
``rows x cols`` arrangement of crops, resize each crop to the vision tower's square input, and
add the whole image resized the same way -- the *global image* -- before the tiles (Gemma 3) or
after them (Idefics3, InternVL). Every crop becomes a ``cells_hw`` grid of language tokens and a
``patches_hw`` raster of vision-encoder patches, each spread evenly over the crop's rectangle of
the *original* image. :class:`TiledImage` holds that arrangement once and gives everything an
adapter and a report need from it:

* :attr:`TiledImage.crops`: one :class:`Crop` per grid in the order the model reads them, with
  its name, its (row, col) in the arrangement (None for the global image) and its rectangle of
  the original image -- what a multi-grid heatmap draws panel by panel;
* :meth:`TiledImage.layout`: the :class:`~creg.plugins.adapter.VisionLayout` for the positions of the
  image tokens in a row of input ids (crops one after the other, each in raster order);
* :meth:`TiledImage.patch_xy`: the patch centres of every crop, stacked along the height
  (the order of :meth:`creg.hf.VisionHook.square_crops` rasters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from creg.hf.geometry import cells_in_image, region_cell_xy
from creg.plugins.adapter import VisionGrid, VisionLayout

Region = tuple[float, float, float, float]
GlobalImage = Literal["first", "last", None]


@dataclass(frozen=True)
class Crop:
    """One grid of a tiled image: ``region`` = (x0, y0, x1, y1) in original-image pixels,
    ``tile`` = its (row, col) in the arrangement or None for the global image."""

    name: str
    region: Region
    tile: tuple[int, int] | None
    cells_hw: tuple[int, int]
    patches_hw: tuple[int, int]

    @property
    def n_cells(self) -> int:
        return self.cells_hw[0] * self.cells_hw[1]

    def cell_xy(self) -> torch.Tensor:
        """``(h, w, 2)`` float64 original-image centres of the crop's language-token cells."""
        return region_cell_xy(self.cells_hw, self.region)

    def patch_xy(self) -> torch.Tensor:
        """``(h_p, w_p, 2)`` float64 original-image centres of the crop's encoder patches."""
        return region_cell_xy(self.patches_hw, self.region)


def even_tiles(image_wh: tuple[float, float], rows: int, cols: int) -> list[list[Region]]:
    """``rows x cols`` equal rectangles covering the (W, H) image: the tiles of a processor that
    resizes the image to ``cols x rows`` tiles and cuts them out (Idefics3, InternVL)."""
    w, h = image_wh
    return [[(c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows) for c in range(cols)]
            for r in range(rows)]


def strip_tiles(image_wh: tuple[float, float], n: int) -> list[list[Region]]:
    """``n`` crops of ``ceil(side / n)`` px along the image's longer side, the last cut at the edge:
    one row of them for a wide (or square) image, one column for a tall one (Gemma 3's
    pan-and-scan); [] for ``n = 0``."""
    w, h = image_wh
    if n <= 0:
        return []
    if w >= h:
        s = math.ceil(w / n)
        return [[(i * s, 0, min((i + 1) * s, w), h) for i in range(n)]]
    s = math.ceil(h / n)
    return [[(0, i * s, w, min((i + 1) * s, h))] for i in range(n)]


@dataclass(frozen=True)
class TiledImage:
    """The crops of one image in the order the model reads them (see the module docstring)."""

    image_wh: tuple[int, int]
    crops: tuple[Crop, ...]

    @classmethod
    def from_tiles(cls, image_wh: tuple[int, int], tiles: Sequence[Sequence[Region]], *, cells_hw: tuple[int, int],
                   patches_hw: tuple[int, int], global_image: GlobalImage = "last",
                   global_region: Region | None = None) -> "TiledImage":
        """``tiles[r][c]``: the rectangle of tile (r, c); each crop has ``cells_hw`` tokens and
        ``patches_hw`` patches; the global image (the whole image unless ``global_region``) comes
        ``first``, ``last`` or not at all (None). A single tile is no tiling: just one crop."""
        w, h = image_wh
        tile_crops = [Crop(f"tile r{r + 1} c{c + 1}", tuple(map(float, region)), (r, c), cells_hw, patches_hw)
                      for r, row in enumerate(tiles) for c, region in enumerate(row)]
        whole = Crop("global image", tuple(map(float, global_region or (0, 0, w, h))), None, cells_hw, patches_hw)
        if len(tile_crops) <= 1:
            return cls(image_wh, (whole,) if global_image else tuple(tile_crops))
        if global_image == "first":
            return cls(image_wh, (whole, *tile_crops))
        return cls(image_wh, (*tile_crops, whole) if global_image == "last" else tuple(tile_crops))

    @property
    def n_cells(self) -> int:
        return sum(c.n_cells for c in self.crops)

    @property
    def arrangement(self) -> tuple[int, int]:
        """(rows, cols) of the tiles ((0, 0) without tiles)."""
        tiles = [c.tile for c in self.crops if c.tile is not None]
        return (max(r for r, _ in tiles) + 1, max(c for _, c in tiles) + 1) if tiles else (0, 0)

    def patch_xy(self) -> torch.Tensor:
        """``(n_crops * h_p, w_p, 2)``: every crop's patch centres, crops stacked along the height."""
        return torch.cat([c.patch_xy() for c in self.crops])

    def grids(self, positions: torch.Tensor) -> list[VisionGrid]:
        """One :class:`VisionGrid` per crop; ``positions`` ``(n_cells,)``: where the image tokens
        sit in the row, crop after crop, each crop's cells in raster order."""
        positions = positions.cpu().long()
        if positions.numel() != self.n_cells:
            raise RuntimeError(f"{positions.numel()} image tokens in the sequence, the {len(self.crops)} crops "
                               f"of a {self.image_wh[0]}x{self.image_wh[1]} image expect {self.n_cells}")
        grids, start = [], 0
        for crop in self.crops:
            xy = crop.cell_xy()
            inside = cells_in_image(xy, self.image_wh)
            grids.append(VisionGrid(token_index=positions[start:start + crop.n_cells], grid_hw=crop.cells_hw, cell_xy=xy,
                                    cell_in_image=None if bool(inside.all()) else inside, name=crop.name))
            start += crop.n_cells
        return grids

    def layout(self, positions: torch.Tensor, *, non_spatial_index: torch.Tensor | None = None) -> VisionLayout:
        """The sample's :class:`VisionLayout`: :meth:`grids`, and :meth:`patch_xy` for GradCAM."""
        patch_xy = self.patch_xy()
        return VisionLayout.from_grids(self.grids(positions), non_spatial_index=non_spatial_index,
                                       patch_hw=tuple(patch_xy.shape[:2]), patch_xy=patch_xy)
