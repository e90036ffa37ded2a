"""InternVL tiling geometry: hand-computed cases, transformers' own helpers and processed pixels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from creg_internvl.layouts import internvl_tiles, tile_arrangement

SIZES = [(112, 112), (168, 84), (84, 140), (300, 97), (61, 203)]


def test_tiles_by_hand():
    # 224x112 with 112 px tiles: 2 columns x 1 row, then the thumbnail; 14 px patches, 2x2 merged.
    tiles = internvl_tiles((224, 112), tile_px=112, patch=14)
    assert [t.name for t in tiles] == ["tile0", "tile1", "thumbnail"]
    assert [t.offsets[0].item() for t in tiles] == [0, 16, 32]
    assert tiles[1].cell_xy[0, 0].tolist() == pytest.approx([112 + 14, 14])
    assert tiles[2].cell_xy[0, 0].tolist() == pytest.approx([28, 14])  # thumbnail: 224/112 x, 112/112 y
    assert tiles[0].patch_xy.shape == (8, 8, 2) and tiles[0].patch_xy[0, 1].tolist() == pytest.approx([21, 7])
    # one tile: no thumbnail
    assert [t.name for t in internvl_tiles((100, 100), tile_px=112, patch=14)] == ["tile0"]
    assert [t.name for t in internvl_tiles((300, 100), tile_px=112, patch=14, crop_to_patches=False)] == ["tile0"]


def test_arrangement_matches_transformers():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    for w in range(20, 1500, 53):
        for h in range(20, 1500, 61):
            for lo, hi in ((1, 12), (1, 6), (2, 4)):
                assert tile_arrangement((h, w), 448, lo, hi) == tuple(get_optimal_tiled_canvas((h, w), (448, 448), lo, hi))


def test_pixel_shuffle_keeps_raster_order_of_2x2_windows():
    from transformers.models.internvl.modeling_internvl import InternVLModel

    n = 8
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    feats = torch.stack([rows, cols], -1).float().reshape(1, n, n, 2)
    out = InternVLModel.pixel_shuffle(None, feats, 0.5)  # (1, n/2, n/2, 8): token (r, c)
    for r in range(n // 2):
        for c in range(n // 2):
            pos = out[0, r, c].reshape(4, 2)
            assert set(map(tuple, pos.long().tolist())) == {(2 * r + i, 2 * c + j) for i in (0, 1) for j in (0, 1)}


@pytest.mark.parametrize("size", SIZES)
def test_cells_follow_the_processor(size):
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    ip = GotOcr2ImageProcessorPil(size={"height": 112, "width": 112}, crop_to_patches=True, max_patches=12)
    w, h = size
    box = (int(w * 0.65), int(h * 0.3), int(w * 0.65) + 10, int(h * 0.3) + 10)
    image = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 255, 255))
    out = ip(images=[image], return_tensors="pt")
    crops = out["pixel_values"]
    tiles = internvl_tiles(size, tile_px=112, patch=14)
    assert len(tiles) == int(out["num_patches"][0]) == crops.shape[0]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    checked = 0
    for crop, tile in zip(crops, tiles):
        means = crop.mean(0).reshape(8, 14, 8, 14).mean((1, 3))
        if means.max() < means.min() + 0.5:
            continue  # the marker is not on this tile
        u, v = divmod(int(means.argmax()), 8)
        x, y = tile.patch_xy[u, v].tolist()
        step_x, step_y = (tile.patch_xy[0, 1] - tile.patch_xy[0, 0])[0].item(), (tile.patch_xy[1, 0] - tile.patch_xy[0, 0])[1].item()
        assert abs(x - cx) <= step_x and abs(y - cy) <= step_y, (tile.name, (x, y), box)
        checked += 1
    assert checked >= (2 if len(tiles) > 1 else 1)  # a tile and the thumbnail


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1024, 256), (448, 448), (4000, 3000)])
def test_released_checkpoint_settings(size):
    """InternVL3-*-hf: 448 px tiles, up to 12, 256 tokens each; the processor's own crop count."""
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    ip = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448})
    tiles = internvl_tiles(size, tile_px=448, patch=14)
    assert len(tiles) == ip.get_number_of_image_patches(size[1], size[0], {"crop_to_patches": True})
    assert all(t.cell_xy.shape == (16, 16, 2) and t.patch_xy.shape == (32, 32, 2) for t in tiles)
