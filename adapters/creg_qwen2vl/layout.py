"""Where Qwen2-VL's vision tokens sit: in the sequence, on the merged grid, on the image.

The image processor resizes an image of (W, H) to (W_r, H_r) = (w_p * p, h_p * p), both
multiples of ``p * m`` (patch size p, merge size m), and cuts it into an (h_p, w_p) patch grid.
The vision encoder works on patches in *merge-window order* -- axes
``(h_p/m, w_p/m, m, m)`` flattened -- and its merger turns each m x m window into one language
token, so the ``<|image_pad|>`` tokens follow the merged grid (H_g, W_g) = (h_p/m, w_p/m) in
raster order. The resized image covers the original exactly (aspect ratio may change
slightly), so a cell centre maps back linearly: x = x_r * W / W_r.
"""

from __future__ import annotations

import torch
from einops import rearrange

from creg.adapter import VisionLayout


def merged_cell_xy(grid_hw: tuple[int, int], cell_px: int, resized_wh: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """``(H_g, W_g, 2)`` float64 (x, y) centre of each merged cell in original-image pixels.

    ``cell_px`` = p * m is a cell's side in the resized image of size ``resized_wh``;
    ``image_size`` is the original (W, H).
    """
    gh, gw = grid_hw
    w_r, h_r = resized_wh
    w, h = image_size
    xs = (torch.arange(gw, dtype=torch.float64) + 0.5) * cell_px * (w / w_r)
    ys = (torch.arange(gh, dtype=torch.float64) + 0.5) * cell_px * (h / h_r)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def vision_layouts(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    *,
    image_token_id: int,
    patch_size: int,
    merge_size: int,
) -> list[VisionLayout]:
    """One :class:`VisionLayout` per row of ``input_ids`` ``(b, seq)``; ``image_grid_thw``
    ``(b, 3)`` is the (t, h_p, w_p) patch grid of each row's single image."""
    layouts = []
    for row, thw, size in zip(input_ids.cpu(), image_grid_thw.cpu().tolist(), image_sizes):
        t, h_p, w_p = thw
        if t != 1:
            raise ValueError(f"expected one temporal patch per image, got grid {thw}")
        grid_hw = (h_p // merge_size, w_p // merge_size)
        token_index = (row == image_token_id).nonzero()[:, 0]
        if token_index.numel() != grid_hw[0] * grid_hw[1]:
            raise RuntimeError(
                f"{token_index.numel()} image tokens in the sequence but a {grid_hw[0]}x{grid_hw[1]} merged grid"
            )
        resized_wh = (w_p * patch_size, h_p * patch_size)
        layouts.append(
            VisionLayout(
                token_index=token_index,
                grid_hw=grid_hw,
                cell_xy=merged_cell_xy(grid_hw, patch_size * merge_size, resized_wh, size),
                patch_hw=(h_p, w_p),
            )
        )
    return layouts


def windows_to_raster(patches: torch.Tensor, patch_hw: tuple[int, int], merge_size: int) -> torch.Tensor:
    """Vision-encoder activations of one image from merge-window order to a raster grid:
    ``((h_p/m) (w_p/m) m m, d_v) -> (h_p, w_p, d_v)``."""
    h_p, w_p = patch_hw
    return rearrange(
        patches,
        "(hb wb mh mw) d -> (hb mh) (wb mw) d",
        hb=h_p // merge_size,
        wb=w_p // merge_size,
        mh=merge_size,
        mw=merge_size,
    )
