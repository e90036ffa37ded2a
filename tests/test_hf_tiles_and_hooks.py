"""creg.hf.tiles (tiles plus a global image) and the VisionHook builders, on hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from creg.hf import TiledImage, VisionHook, even_tiles, strip_tiles
from creg.hf.chat_inputs import ChatInputs


def test_even_tiles_split_the_image_into_equal_rectangles():
    assert even_tiles((300, 200), 2, 3) == [[(0, 0, 100, 100), (100, 0, 200, 100), (200, 0, 300, 100)],
                                             [(0, 100, 100, 200), (100, 100, 200, 200), (200, 100, 300, 200)]]


def test_strip_tiles_are_gemma3_pan_and_scan_crops():
    # ceil(640 / 3) = 214 px a crop, the last one cut at the image's edge
    assert strip_tiles((640, 320), 3) == [[(0, 0, 214, 320), (214, 0, 428, 320), (428, 0, 640, 320)]]
    assert strip_tiles((300, 640), 2) == [[(0, 0, 300, 320)], [(0, 320, 300, 640)]]
    assert strip_tiles((300, 640), 0) == []


@pytest.mark.parametrize("where, names", [
    ("last", ["tile r1 c1", "tile r1 c2", "tile r2 c1", "tile r2 c2", "global image"]),
    ("first", ["global image", "tile r1 c1", "tile r1 c2", "tile r2 c1", "tile r2 c2"]),
    (None, ["tile r1 c1", "tile r1 c2", "tile r2 c1", "tile r2 c2"]),
])
def test_tiled_image_reads_the_global_image_where_the_model_does(where, names):
    tiled = TiledImage.from_tiles((200, 100), even_tiles((200, 100), 2, 2), cells_hw=(2, 2), patches_hw=(4, 4),
                                  global_image=where)
    assert [c.name for c in tiled.crops] == names and tiled.arrangement == (2, 2)
    assert [c.tile for c in tiled.crops if c.tile is not None] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    layout = tiled.layout(torch.arange(10, 10 + 4 * len(names)))
    assert [g.name for g in layout.grids] == names
    tile = layout.grids[names.index("tile r2 c2")]
    # tile (r2, c2) covers x 100..200, y 50..100: 2 x 2 cells of 50 x 25 px
    torch.testing.assert_close(tile.cell_xy, torch.tensor([[[125.0, 62.5], [175.0, 62.5]], [[125.0, 87.5], [175.0, 87.5]]],
                                                          dtype=torch.float64))
    assert layout.patch_hw == (4 * len(names), 4) and layout.patch_xy.shape == (4 * len(names), 4, 2)


def test_one_tile_is_no_tiling_and_a_wrong_token_count_is_refused():
    tiled = TiledImage.from_tiles((90, 60), [], cells_hw=(3, 3), patches_hw=(6, 6), global_image="last")
    assert [c.name for c in tiled.crops] == ["global image"] and tiled.arrangement == (0, 0)
    with pytest.raises(RuntimeError, match="8 image tokens .* expect 9"):
        tiled.layout(torch.arange(8))


def _round_trip(hook: VisionHook, output: torch.Tensor) -> list[torch.Tensor]:
    rasters = hook.split(output)
    assert torch.equal(hook.join(rasters), output)
    return rasters


def test_square_crops_without_cls_stack_each_samples_crops():
    out = torch.arange(3 * 4 * 1, dtype=torch.float32).reshape(3, 4, 1)  # 3 crops of 2 x 2 patches
    a, b = _round_trip(VisionHook.square_crops(nn.Identity(), [2, 1], 2), out)
    assert a.shape == (4, 2, 1) and b.shape == (2, 2, 1)
    assert a[:, :, 0].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]] and b[:, :, 0].tolist() == [[8, 9], [10, 11]]


def test_stacked_square_crops_read_crops_and_side_from_the_layouts():
    tiled = TiledImage.from_tiles((40, 20), even_tiles((40, 20), 1, 2), cells_hw=(1, 1), patches_hw=(2, 2))
    layout = tiled.layout(torch.arange(3))
    hook = VisionHook.stacked_square_crops(nn.Identity(), [layout])
    (raster,) = _round_trip(hook, torch.randn(3, 4, 5))
    assert raster.shape == (6, 2, 5)


@pytest.mark.parametrize("batched", [True, False])
def test_packed_sequence_splits_images_in_raster_order(batched):
    flat = torch.arange(2 * 3 + 1 * 2, dtype=torch.float32)[:, None]  # a 2 x 3 image, then a 1 x 2 image
    out = flat[None] if batched else flat
    a, b = _round_trip(VisionHook.packed_sequence(nn.Identity(), [(2, 3), (1, 2)]), out)
    assert a[:, :, 0].tolist() == [[0, 1, 2], [3, 4, 5]] and b[:, :, 0].tolist() == [[6, 7]]
    with pytest.raises(RuntimeError, match="has 8 patches, the layouts 9"):
        VisionHook.packed_sequence(nn.Identity(), [(3, 3)]).split(out)


def test_chat_inputs_takes_one_way_of_expanding_the_image():
    class Tok:
        padding_side = "right"

        def convert_tokens_to_ids(self, token):
            return 7

    with pytest.raises(TypeError, match="exactly one of image_token_count and image_text"):
        ChatInputs(Tok(), None, "", image_token="<i>")
    with pytest.raises(TypeError, match="exactly one"):
        ChatInputs(Tok(), None, "", image_token="<i>", image_token_count=lambda *a: 1, image_text=lambda *a: "")
    counted = ChatInputs(Tok(), None, "", image_token="<i>", image_token_count=lambda inputs, vision, i: 3)
    assert counted.image_text(counted, {}, 0) == "<i><i><i>"
