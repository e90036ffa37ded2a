"""Adapters that exist to test the contract: preprocessing the first-party ones do not have.

* :class:`CentreCropQwen2VLAdapter` -- Qwen2-VL fed the centre square of each image (as
  LLaVA-1.5's processor crops); ``cell_xy`` says where that square lies in the original.
* :class:`LlamaStyleChatQwen2VLAdapter` -- Qwen2-VL with a LLaVA-style chat
  (``... ASSISTANT:`` then `` 1``): the tokenizer puts a prefix-space piece before the digit.
* :class:`TiledExampleAdapter` -- the example adapter's tiny VLM fed three tiles per image (left
  half, right half, whole-image thumbnail): a multi-grid layout with encoder patch centres.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from creg.plugins.adapter import VisionGrid, VisionLayout
from creg.hf import centre_crop_region, load_images, region_cell_xy, token_grid_layout
from creg.core.prompts import render_prompt
from creg_qwen2vl.adapter import Qwen2VLAdapter

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "creg-example-adapter"
sys.path.insert(0, str(EXAMPLE / "src"))

from creg_example_adapter.adapter import ExampleTinyAdapter  # noqa: E402
from creg_example_adapter.model import IMG, left_pad, sequence, to_patches  # noqa: E402


CROP = 224  # as CLIP's processor (LLaVA-1.5): shortest side to CROP, then the centre CROP x CROP


def resized_wh(size):
    w, h = size
    return (CROP, round(h * CROP / w)) if w <= h else (round(w * CROP / h), CROP)


def centre_crop(image):
    rw, rh = resized_wh(image.size)
    left, top = (rw - CROP) // 2, (rh - CROP) // 2
    return image.resize((rw, rh)).crop((left, top, left + CROP, top + CROP))


class CentreCropQwen2VLAdapter(Qwen2VLAdapter):
    """Resizes the shortest side to 224 px and keeps the centre 224 x 224 before Qwen's processor."""

    def encode_texts(self, texts, images):
        return super().encode_texts(texts, [centre_crop(im) for im in images])

    def reference_inputs(self, texts, images):  # this "model" crops before its processor
        return super().reference_inputs(texts, [centre_crop(im) for im in images])

    def crop_region(self, image):
        return centre_crop_region(image.size, resized_wh(image.size), (CROP, CROP))

    def vision_layouts(self, batch, images):
        m = self.merge_size
        out = []
        for row, (_, h_p, w_p), image in zip(batch["input_ids"], batch["image_grid_thw"].tolist(), images):
            out.append(token_grid_layout(row, self.processor.image_token_id, (h_p // m, w_p // m),
                                         self.crop_region(image), image.size, patch_hw=(h_p, w_p)))
        return out


class LlamaStyleChatQwen2VLAdapter(Qwen2VLAdapter):
    """``USER: <image>\\n{question} ASSISTANT:`` -- the answer follows a space: " 1"."""

    def chat(self, question, answer=None):
        text = f"USER: <|vision_start|><|image_pad|><|vision_end|>\n{question} ASSISTANT:"
        return text if answer is None else f"{text} {answer}<|im_end|>"


TILE_CELLS = 3  # each tile becomes TILE_CELLS x TILE_CELLS tokens (2 x 2 patches each)


def tile_regions(size):
    """(x0, y0, x1, y1) of the three tiles in the original image: left half, right half, all."""
    w, h = size
    return [(0, 0, w / 2, h), (w / 2, 0, w, h), (0, 0, w, h)]


class TiledExampleAdapter(ExampleTinyAdapter):
    """Three tiles per image, each resized to a fixed square and stacked along the patch rows."""

    NAMES = ("tile 0", "tile 1", "thumbnail")

    def _inputs(self, samples, images):
        side = TILE_CELLS * 28
        patches, regions = [], []
        for s, image in zip(samples, load_images(samples, images)):
            boxes = tile_regions(image.size)
            tiles = [image.crop(tuple(round(v) for v in b)).resize((side, side)) for b in boxes]
            patches.append(torch.cat([to_patches(t, (side, side)) for t in tiles]).to(self.device))
            regions.append((boxes, image.size))
        ids = left_pad([sequence(3 * TILE_CELLS**2, render_prompt(self.config.prompt, s.ref_name, s.tgt_name))
                        for s in samples]).to(self.device)
        return ids, ids != 0, patches, [self.layout(ids[i], *regions[i]) for i in range(len(samples))]

    def layout(self, row, boxes, size):
        positions = (row == IMG).nonzero()[:, 0].cpu()
        n, p = TILE_CELLS**2, 2 * TILE_CELLS
        grids = [VisionGrid(token_index=positions[k * n:(k + 1) * n], grid_hw=(TILE_CELLS, TILE_CELLS),
                            cell_xy=self.cell_xy(k, box), name=self.NAMES[k]) for k, box in enumerate(boxes)]
        patch_xy = torch.cat([region_cell_xy((p, p), box) for box in boxes])
        return VisionLayout.from_grids(grids, patch_hw=(3 * p, p), patch_xy=patch_xy)

    def cell_xy(self, k, box):
        return region_cell_xy((TILE_CELLS, TILE_CELLS), box)


class MirroredThumbnailAdapter(TiledExampleAdapter):
    """Lists the thumbnail's tokens right to left in each row (the tiles are right)."""

    def layout(self, row, boxes, size):
        lay = super().layout(row, boxes, size)
        grids = list(lay.grids)
        thumb = grids[2]
        flipped = thumb.token_index.reshape(thumb.grid_hw).flip(1).reshape(-1)
        grids[2] = thumb.model_copy(update={"token_index": flipped})
        return VisionLayout.from_grids(grids, patch_hw=lay.patch_hw, patch_xy=lay.patch_xy)
