"""Patch orders of vision encoders that merge m x m patches into one language token.

Qwen2-VL-style encoders keep patches in *merge-window order*: axes ``(h_p/m, w_p/m, m, m)``
flattened, so each run of m*m rows is one future token. GradCAM and the contract want a raster
``(h_p, w_p, d)`` grid.
"""

from __future__ import annotations

import torch
from einops import rearrange


def windows_to_raster(patches: torch.Tensor, patch_hw: tuple[int, int], merge_size: int) -> torch.Tensor:
    """``((h_p/m) (w_p/m) m m, d) -> (h_p, w_p, d)``."""
    h_p, w_p = patch_hw
    return rearrange(patches, "(hb wb mh mw) d -> (hb mh) (wb mw) d",
                     hb=h_p // merge_size, wb=w_p // merge_size, mh=merge_size, mw=merge_size)


def raster_to_windows(raster: torch.Tensor, merge_size: int) -> torch.Tensor:
    """``(h_p, w_p, d) -> ((h_p/m) (w_p/m) m m, d)``, the inverse of :func:`windows_to_raster`."""
    return rearrange(raster, "(hb mh) (wb mw) d -> (hb wb mh mw) d", mh=merge_size, mw=merge_size)
