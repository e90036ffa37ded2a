"""LLaVA preprocessing geometry: hand-computed cases, and the real PIL image processors' pixels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from creg_llava.geometry import Axis, canvas_axes, clip_axes, select_best_resolution, unpadded_span
from creg_llava.layouts import llava15_tokens, llava_next_tokens

SIZES = [(112, 112), (168, 84), (84, 140), (300, 97), (61, 203)]
PINPOINTS = [[112, 224], [224, 112], [224, 224], [336, 112], [112, 336]]


def test_axis_composition():
    inner, outer = Axis(2.0, 1.0), Axis(0.5, -3.0)
    x = 7.0
    composed = inner.then(outer)
    assert composed.scale * x + composed.shift == pytest.approx((x * 2 + 1) * 0.5 - 3)


def test_centre_crop_of_a_wide_image_by_hand():
    # 168x84 -> shortest edge 112 -> 224x112 -> centre crop 112: columns 56..168 of the resized image.
    x, y, hw = clip_axes((168, 84), size={"shortest_edge": 112}, crop_hw=(112, 112))
    assert hw == (112, 112)
    assert (x.scale, x.shift) == pytest.approx((0.75, 42.0))
    assert (y.scale, y.shift) == pytest.approx((0.75, 0.0))
    cells = llava15_tokens((168, 84), size={"shortest_edge": 112}, crop_hw=(112, 112), patch=14).grids[0].cell_xy
    assert cells.shape == (8, 8, 2)
    assert cells[0, 0].tolist() == pytest.approx([(7 + 56) * 0.75, 7 * 0.75])
    assert cells[-1, -1].tolist() == pytest.approx([(105 + 56) * 0.75, 105 * 0.75])


def test_pad_to_square_by_hand():
    # 100x50 padded to 100x100 (25 rows above), resized to 50x50: y_orig = y * 2 - 25.
    x, y, hw = clip_axes((100, 50), size={"height": 50, "width": 50}, crop_hw=None, square_pad=True)
    assert hw == (50, 50)
    assert (x.scale, x.shift) == pytest.approx((2.0, 0.0))
    assert (y.scale, y.shift) == pytest.approx((2.0, -25.0))


def test_canvas_and_unpad_by_hand():
    # 300x100 into a 112x336 (h, w) canvas: resized to 336x112, no padding.
    assert select_best_resolution((100, 300), PINPOINTS) == (112, 336)
    x, y = canvas_axes((300, 100), (112, 336))
    assert (x.scale, y.scale) == pytest.approx((300 / 336, 100 / 112))
    # 168x84 into 224x224: resized 224x112, 56 rows of padding above -> y_orig = (y - 56) * 84/112.
    x, y = canvas_axes((168, 84), (224, 224))
    assert (y.scale, y.shift) == pytest.approx((0.75, -42.0))
    rows, cols = unpadded_span((84, 168), (16, 16))
    assert (rows, cols) == (slice(4, 12), slice(0, 16))


def test_best_resolution_matches_transformers():
    from transformers.image_processing_utils import select_best_resolution as reference

    for w in range(20, 700, 37):
        for h in range(20, 700, 41):
            assert select_best_resolution((h, w), PINPOINTS) == tuple(reference((h, w), PINPOINTS))


def _marker_image(size, box):
    image = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 255, 255))
    return image


def _brightest_patch(pixels: torch.Tensor, patch: int) -> tuple[int, int]:
    """(row, col) of the patch of a (3, H, W) processed crop with the highest mean."""
    h, w = pixels.shape[-2:]
    means = pixels.mean(0).reshape(h // patch, patch, w // patch, patch).mean((1, 3))
    return divmod(int(means.argmax()), w // patch)


def _assert_near(xy, box, patch_in_orig):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert abs(xy[0] - cx) <= patch_in_orig[0] and abs(xy[1] - cy) <= patch_in_orig[1], (xy, box)


@pytest.mark.parametrize("size", SIZES)
def test_llava15_cells_follow_the_processor(size):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    ip = CLIPImageProcessorPil(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112})
    w, h = size
    box = (int(w * 0.4), int(h * 0.4), int(w * 0.4) + 12, int(h * 0.4) + 12)  # near the centre: inside the crop
    pixels = ip(images=[_marker_image(size, box)], return_tensors="pt")["pixel_values"][0]
    u, v = _brightest_patch(pixels, 14)
    cells = llava15_tokens(size, size=dict(ip.size), crop_hw=(112, 112), patch=14).grids[0].cell_xy
    scale = min(w, h) / 112
    _assert_near(cells[u, v].tolist(), box, (14 * scale, 14 * scale))


@pytest.mark.parametrize("size", SIZES)
def test_llava_next_base_and_tiles_follow_the_processor(size):
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112},
                                    image_grid_pinpoints=PINPOINTS)
    w, h = size
    box = (int(w * 0.6), int(h * 0.2), int(w * 0.6) + 10, int(h * 0.2) + 10)
    crops = ip(images=[_marker_image(size, box)], return_tensors="pt")["pixel_values"][0]  # (1 + tiles, 3, 112, 112)
    tokens = llava_next_tokens(size, size={"shortest_edge": 112}, crop_hw=(112, 112), patch=14, tile_px=112,
                               pinpoints=PINPOINTS)
    assert len(tokens.patch_xy) == crops.shape[0]
    # the base image: a stretched copy of the whole image
    u, v = _brightest_patch(crops[0], 14)
    _assert_near(tokens.patch_xy[0][u, v].tolist(), box, (14 * w / 112, 14 * h / 112))
    # the tiles: the brightest patch over all tiles
    means = torch.stack([c.mean(0).reshape(8, 14, 8, 14).mean((1, 3)) for c in crops[1:]])
    k, rest = divmod(int(means.argmax()), 64)
    u, v = divmod(rest, 8)
    canvas_h, canvas_w = select_best_resolution((h, w), PINPOINTS)
    s = max(w / canvas_w, h / canvas_h)
    _assert_near(tokens.patch_xy[1 + k][u, v].tolist(), box, (14 * s, 14 * s))


@pytest.mark.parametrize("size", SIZES)
def test_llava_next_token_count_matches_the_processor(size):
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    processor = LlavaNextProcessor.__new__(LlavaNextProcessor)  # only the counting helpers, no tokenizer
    processor.image_processor = LlavaNextImageProcessorPil(image_grid_pinpoints=PINPOINTS)
    processor.patch_size, processor.num_additional_image_tokens = 14, 1
    w, h = size
    expected = processor._get_number_of_features(h, w, 112, 112) - 1  # "default": no CLS
    tokens = llava_next_tokens(size, size={"shortest_edge": 112}, crop_hw=(112, 112), patch=14, tile_px=112,
                               pinpoints=PINPOINTS)
    assert tokens.n_tokens == expected
    base, anyres = tokens.grids
    r, c = anyres.grid_hw
    assert base.offsets.tolist() == list(range(64))
    # one newline token after each row of the any-resolution grid, none in the base grid
    taken = torch.zeros(tokens.n_tokens, dtype=torch.bool)
    taken[base.offsets] = True
    taken[anyres.offsets] = True
    assert (~taken).nonzero()[:, 0].tolist() == [64 + (i + 1) * (c + 1) - 1 for i in range(r)]


RELEASED_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1024, 256), (336, 336), (1000, 999)])
def test_released_checkpoint_settings(size):
    """llava-1.5-7b-hf: 576 tokens; llava-v1.6-*-hf: the processor's own count with the released pinpoints."""
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    one = llava15_tokens(size, size={"shortest_edge": 336}, crop_hw=(336, 336), patch=14)
    assert one.n_tokens == 576 and one.grids[0].grid_hw == (24, 24)
    processor = LlavaNextProcessor.__new__(LlavaNextProcessor)
    processor.image_processor = LlavaNextImageProcessorPil(image_grid_pinpoints=RELEASED_PINPOINTS)
    processor.patch_size, processor.num_additional_image_tokens = 14, 1
    w, h = size
    tokens = llava_next_tokens(size, size={"shortest_edge": 336}, crop_hw=(336, 336), patch=14, tile_px=336,
                               pinpoints=RELEASED_PINPOINTS)
    assert tokens.n_tokens == processor._get_number_of_features(h, w, 336, 336) - 1
    assert tokens.grids[0].grid_hw == (24, 24)
