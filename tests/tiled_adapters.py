"""A tiled adapter for the multi-grid heatmap tests and the docs figure: the example adapter's tiny
VLM fed ``rows x cols`` tiles plus a global image (last, as Idefics3 / SmolVLM put it), each tile
``TILE_CELLS x TILE_CELLS`` tokens (``from tiled_adapters import GridTilesAdapter``)."""

from __future__ import annotations

import torch

from contract_adapters import TiledExampleAdapter
from creg.plugins.adapter import VisionGrid, VisionLayout
from creg.hf import load_images, region_cell_xy
from creg.core.prompts import render_prompt
from creg_example_adapter.model import IMG, left_pad, sequence, to_patches

TILE_CELLS = 4


def tile_boxes(size, rows: int, cols: int):
    """``(x0, y0, x1, y1)`` of the ``rows x cols`` tiles (raster order), then the whole image."""
    w, h = size
    tiles = [(c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows) for r in range(rows) for c in range(cols)]
    return [*tiles, (0, 0, w, h)]


class GridTilesAdapter(TiledExampleAdapter):
    """``ROWS x COLS`` tiles and a global image: ``ROWS * COLS + 1`` grids of ``TILE_CELLS**2`` tokens."""

    ROWS, COLS = 2, 3

    def _inputs(self, samples, images):
        side, n_grids = TILE_CELLS * 28, self.ROWS * self.COLS + 1
        patches, regions = [], []
        for s, image in zip(samples, load_images(samples, images)):
            boxes = tile_boxes(image.size, self.ROWS, self.COLS)
            tiles = [image.crop(tuple(round(v) for v in b)).resize((side, side)) for b in boxes]
            patches.append(torch.cat([to_patches(t, (side, side)) for t in tiles]).to(self.device))
            regions.append(boxes)
        ids = left_pad([sequence(n_grids * TILE_CELLS**2, render_prompt(self.config.prompt, s.ref_name, s.tgt_name))
                        for s in samples]).to(self.device)
        return ids, ids != 0, patches, [self.layout(ids[i], regions[i]) for i in range(len(samples))]

    def layout(self, row, boxes):
        positions = (row == IMG).nonzero()[:, 0].cpu()
        n, p = TILE_CELLS**2, 2 * TILE_CELLS
        names = [f"tile {k}" for k in range(len(boxes) - 1)] + ["global"]
        grids = [VisionGrid(token_index=positions[k * n:(k + 1) * n], grid_hw=(TILE_CELLS, TILE_CELLS),
                            cell_xy=region_cell_xy((TILE_CELLS, TILE_CELLS), box), name=names[k])
                 for k, box in enumerate(boxes)]
        patch_xy = torch.cat([region_cell_xy((p, p), box) for box in boxes])
        return VisionLayout.from_grids(grids, patch_hw=(len(boxes) * p, p), patch_xy=patch_xy)
