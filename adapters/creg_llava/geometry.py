"""Where LLaVA's vision tokens come from on the original image: pure geometry, no model.

Every preprocessing step of the llava-hf image processors is, per axis, an affine map of
pixel coordinates (edges at integers, a pixel's centre at +0.5), so a coordinate in the image
the vision tower sees maps back to the original image by ``orig = proc * scale + shift``
(:class:`Axis`). The steps reproduced, in the processors' order and with their rounding:

* LLaVA-1.5 (``CLIPImageProcessor`` / ``LlavaImageProcessor``): optional pad-to-square with the
  mean colour (``LlavaImageProcessor`` with ``do_pad``), resize of the shortest edge (or to a
  fixed height x width), centre crop -- the llava-hf checkpoints crop a non-square image, so
  a strip at each end of its long side is never seen;
* LLaVA-NeXT (``LlavaNextImageProcessor``): a *base* image stretched to S x S, and the image
  resized into the best any-resolution canvas of ``image_grid_pinpoints`` (aspect kept,
  centred, zero padding), cut into S x S tiles; the model then drops feature rows/columns of
  the padding (``unpad_image``) and ends each remaining row with a newline token.

A vision cell of patch size p at column j of a processed crop has its centre at (j + 0.5) p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch


class Axis(NamedTuple):
    """One axis of a processed image: ``orig = proc * scale + shift``."""

    scale: float
    shift: float

    def then(self, outer: "Axis") -> "Axis":
        """This map followed by ``outer`` (``outer`` maps this map's output further back)."""
        return Axis(self.scale * outer.scale, self.shift * outer.scale + outer.shift)


@dataclass(frozen=True)
class Grid:
    """One raster grid of vision tokens.

    ``offsets``: ``(h * w,)`` long, positions of the grid's cells within the sample's run of
    image tokens, raster order; ``cell_xy``: ``(h, w, 2)`` float64 (x, y) centres in the
    original image (cells over padding lie outside it).
    """

    name: str
    offsets: torch.Tensor
    cell_xy: torch.Tensor

    @property
    def grid_hw(self) -> tuple[int, int]:
        return tuple(self.cell_xy.shape[:2])


def centres(grid_hw: tuple[int, int], cell_px: float, x: Axis, y: Axis, origin: tuple[float, float] = (0, 0)) -> torch.Tensor:
    """``(h, w, 2)`` float64: original-image centres of an (h, w) grid of ``cell_px`` cells
    whose top-left corner is at ``origin`` (x, y) of the processed image."""
    h, w = grid_hw
    xs = (origin[0] + (torch.arange(w, dtype=torch.float64) + 0.5) * cell_px) * x.scale + x.shift
    ys = (origin[1] + (torch.arange(h, dtype=torch.float64) + 0.5) * cell_px) * y.scale + y.shift
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _resized_hw(height: int, width: int, size: dict) -> tuple[int, int]:
    """The processors' resize target (``get_resize_output_image_size``, ``default_to_square=False``)."""
    if size.get("height") and size.get("width"):
        return int(size["height"]), int(size["width"])
    if size.get("shortest_edge") and not size.get("longest_edge"):
        s = int(size["shortest_edge"])
        short, long = min(height, width), max(height, width)
        new_long = int(s * long / short)
        return (new_long, s) if width <= height else (s, new_long)
    raise ValueError(f"unsupported resize size {size}: expected shortest_edge or height/width")


def _crop_start(extent: int, crop: int) -> int:
    """Where ``center_crop`` starts on an axis of ``extent`` px (negative: it pads)."""
    return (extent - crop) // 2 if extent >= crop else -math.ceil((crop - extent) / 2)


def clip_axes(image_wh: tuple[int, int], *, size: dict, crop_hw: tuple[int, int] | None, square_pad: bool = False) -> tuple[Axis, Axis, tuple[int, int]]:
    """(x axis, y axis, processed (h, w)) of pad-to-square? -> resize -> centre crop?."""
    w, h = image_wh
    x, y = Axis(1.0, 0.0), Axis(1.0, 0.0)
    if square_pad and w != h:
        side = max(w, h)
        x, y = (x, Axis(1.0, -((side - h) // 2))) if w > h else (Axis(1.0, -((side - w) // 2)), y)
        w = h = side
    new_h, new_w = _resized_hw(h, w, size)
    x, y = Axis(w / new_w, 0.0).then(x), Axis(h / new_h, 0.0).then(y)
    if crop_hw is None:
        return x, y, (new_h, new_w)
    ch, cw = crop_hw
    x, y = Axis(1.0, _crop_start(new_w, cw)).then(x), Axis(1.0, _crop_start(new_h, ch)).then(y)
    return x, y, (ch, cw)


def select_best_resolution(image_hw: tuple[int, int], pinpoints: list[list[int]]) -> tuple[int, int]:
    """LLaVA-NeXT's choice of canvas (h, w): most effective pixels, then least waste."""
    h, w = image_hw
    best, best_eff, best_waste = None, 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / w, ph / h)
        eff = min(int(w * scale) * int(h * scale), w * h)
        waste = pw * ph - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (ph, pw), eff, waste
    return best


def canvas_axes(image_wh: tuple[int, int], canvas_hw: tuple[int, int]) -> tuple[Axis, Axis]:
    """The aspect-keeping resize + centred zero padding into ``canvas_hw`` (``_resize_for_patching``
    then ``_pad_for_patching``)."""
    w, h = image_wh
    ch, cw = canvas_hw
    if cw / w < ch / h:
        new_w, new_h = cw, min(math.ceil(h * cw / w), ch)
    else:
        new_h, new_w = ch, min(math.ceil(w * ch / h), cw)
    return Axis(w / new_w, -((cw - new_w) // 2) * w / new_w), Axis(h / new_h, -((ch - new_h) // 2) * h / new_h)


def unpadded_span(image_hw: tuple[int, int], grid_hw: tuple[int, int]) -> tuple[slice, slice]:
    """The feature rows and columns ``unpad_image`` keeps of a (rows, cols) any-resolution grid."""
    h, w = image_hw
    rows, cols = grid_hw
    if w / h > cols / rows:
        pad = (rows - int(round(h * cols / w, 7))) // 2
        return slice(pad, rows - pad), slice(0, cols)
    pad = (cols - int(round(w * rows / h, 7))) // 2
    return slice(0, rows), slice(pad, cols - pad)
