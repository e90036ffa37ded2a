"""The planted model's "vision encoder": pixels -> one feature vector per grid cell.

An image is cut into an ``(h, w)`` grid of cells of about ``patch_px`` pixels (the grid need not
divide the image). Each cell's activation (einops ``h w c``, ``c = 3 + 12``) is

* its mean RGB in [0, 1] (3 channels), and
* for each of the 12 objects (colour, shape) -- 4 colours x 3 shapes, the palette of the
  synthetic benchmark -- the fraction of the cell's pixels that belong to such an object
  (12 channels, raster of ``colour * 3 + shape``);
* where in the cell its object pixels lie: their mean (x, y) minus the cell's centre, over the
  image's longer side (2 channels; 0 in a cell without object pixels). With it, the pixel-share
  weighted mean of the cells' positions is the object's pixel centroid, not a grid-rounded one.

A pixel belongs to an object of colour ``c`` when it is within ``COLOUR_TOLERANCE`` of ``c`` in
every channel; the pixels of one colour are split into connected components (8-neighbours) and
each component's shape is read from how much of its bounding box it fills (square ~1, circle
~pi/4, triangle ~1/2). Nothing here is learned: it is the stand-in for a vision tower that
recognises the benchmark's objects, so that the decoder can find A and B by their names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: the synthetic benchmark's palette (creg_synthetic.scenes.COLOURS; a test checks they agree).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
N_OBJECTS = len(COLOURS) * len(SHAPES)
#: channels of a cell's activation: mean RGB, one pixel share per object, the object pixels' offset.
N_FEATURES = 3 + N_OBJECTS + 2
#: a pixel is of colour c when every channel is within this many levels of c.
COLOUR_TOLERANCE = 40
#: bounding-box fill above which a component is a square; between the two a circle; below, a triangle.
SQUARE_FILL, CIRCLE_FILL = 0.9, 0.64


def grid_shape(size: tuple[int, int], patch_px: int) -> tuple[int, int]:
    """``(h, w)`` cells for a (width, height) image: about ``patch_px`` pixels per cell."""
    w, h = size
    return max(1, round(h / patch_px)), max(1, round(w / patch_px))


def components(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool -> ``(H, W)`` int64 labels of its 8-connected components (-1 off the mask).

    Labels spread by repeated 3x3 max-pooling until nothing changes (each component ends up with
    the largest pixel index it contains; the work is done on the mask's bounding box)."""
    out = np.full(mask.shape, -1, dtype=np.int64)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    m = torch.from_numpy(np.ascontiguousarray(mask[y0:y1, x0:x1]))
    index = torch.arange(m.numel(), dtype=torch.float64).reshape(m.shape)
    lab = torch.where(m, index, torch.full_like(index, -1.0))
    while True:
        grown = F.max_pool2d(lab[None, None], 3, stride=1, padding=1)[0, 0]
        grown = torch.where(m, grown, torch.full_like(grown, -1.0))
        if torch.equal(grown, lab):
            out[y0:y1, x0:x1] = lab.long().numpy()
            return out
        lab = grown


def shape_of(fill: float) -> int:
    """Shape index from the share of its bounding box a component fills."""
    if fill >= SQUARE_FILL:
        return SHAPES.index("square")
    if fill >= CIRCLE_FILL:
        return SHAPES.index("circle")
    return SHAPES.index("triangle")


def object_map(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(H, W)`` int64: the object channel of every pixel, -1 for none."""
    out = np.full(pixels.shape[:2], -1, dtype=np.int64)
    px = pixels.astype(np.int16)
    for c, rgb in enumerate(PALETTE.values()):
        mask = (np.abs(px - np.array(rgb, dtype=np.int16)) <= COLOUR_TOLERANCE).all(axis=-1)
        if not mask.any():
            continue
        lab = components(mask)
        ids, inverse, area = np.unique(lab[mask], return_inverse=True, return_counts=True)
        ys, xs = np.nonzero(mask)
        shapes = np.empty(len(ids), dtype=np.int64)
        for k in range(len(ids)):
            sel = inverse == k
            bw = xs[sel].max() - xs[sel].min() + 1
            bh = ys[sel].max() - ys[sel].min() + 1
            shapes[k] = shape_of(area[k] / (bw * bh))
        out[ys, xs] = c * len(SHAPES) + shapes[inverse]
    return out


def cell_features(image, grid_hw: tuple[int, int]) -> torch.Tensor:
    """``(h, w, N_FEATURES)`` float32 activation of every cell (module docstring) of a PIL image."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    H, W = pixels.shape[:2]
    gh, gw = grid_hw
    row = np.minimum((np.arange(H) * gh) // H, gh - 1)
    col = np.minimum((np.arange(W) * gw) // W, gw - 1)
    cell = (row[:, None] * gw + col[None, :]).reshape(-1)  # (H * W,)
    n = gh * gw
    count = np.bincount(cell, minlength=n).astype(np.float64)
    rgb = np.stack([np.bincount(cell, weights=pixels[..., k].reshape(-1).astype(np.float64), minlength=n)
                    for k in range(3)], axis=-1) / (255.0 * count[:, None])
    obj = object_map(pixels).reshape(-1)
    on = obj >= 0
    frac = np.bincount(cell[on] * N_OBJECTS + obj[on], minlength=n * N_OBJECTS).reshape(n, N_OBJECTS) / count[:, None]
    # where the object pixels lie in their cell: mean pixel centre minus the cell centre, over the longer side
    px = np.broadcast_to(np.arange(W)[None, :] + 0.5, (H, W)).reshape(-1)[on]
    py = np.broadcast_to(np.arange(H)[:, None] + 0.5, (H, W)).reshape(-1)[on]
    n_on = np.bincount(cell[on], minlength=n).astype(np.float64)
    cx = (np.arange(n) % gw + 0.5) * (W / gw)
    cy = (np.arange(n) // gw + 0.5) * (H / gh)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(n_on > 0, np.bincount(cell[on], weights=px, minlength=n) / n_on - cx, 0.0)
        my = np.where(n_on > 0, np.bincount(cell[on], weights=py, minlength=n) / n_on - cy, 0.0)
    offset = np.stack([mx, my], axis=-1) / max(W, H)
    return torch.from_numpy(np.concatenate([rgb, frac, offset], axis=-1).reshape(gh, gw, N_FEATURES)).float()
