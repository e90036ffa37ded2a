"""Opening images from benchmark data: bounded sizes, every PIL mode converted correctly to RGB.

* :func:`size_problem`: images above :data:`MAX_PIXELS` (decompression bombs: a small file that
  decodes to gigabytes) or with an aspect ratio above :data:`MAX_ASPECT_RATIO` (VLM processors
  refuse them, Qwen2-VL's at 200) are refused before any pixel is decoded.
* :func:`to_rgb`: 16-bit greyscale (``I;16*``) and 32-bit integer (``I``) images are scaled from
  their 16-bit range to 8 bits (PIL's own ``convert("RGB")`` clips them, so a 16-bit image becomes
  all white); float images (``F``) in [0, 1] are scaled by 255, others clipped to [0, 255];
  palette and alpha images (``P``, ``PA``, ``LA``, ``RGBA``) are composited on white, as
  transformers' ``convert_to_rgb`` does; ``CMYK``, ``YCbCr``, ``1``, ``L`` convert through PIL.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

#: refuse images with more pixels than this (about 8000 x 8000); PIL's own bomb limit is 89 M.
MAX_PIXELS = 64_000_000
#: refuse images whose longer side is more than this many times the shorter one.
MAX_ASPECT_RATIO = 200.0

TOO_LARGE = "image too large (decompression bomb)"
EXTREME_ASPECT = "extreme aspect ratio"
UNREADABLE = "unreadable image"
MISSING = "missing image file"
SIZE_MISMATCH = "image size differs from annotation"


class ImageRefused(OSError):
    """An image that is refused before decoding (too large, extreme aspect ratio); ``reason`` says which."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def size_problem(size: tuple[int, int]) -> str | None:
    """Why an image of (width, height) ``size`` is refused, or None."""
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        return UNREADABLE
    if w * h > MAX_PIXELS:
        return TOO_LARGE
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        return EXTREME_ASPECT
    return None


def _on_white(im):

    rgba = im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def to_rgb(im: Any):
    """An RGB ``PIL.Image`` of ``im`` whatever its mode (see the module docstring)."""

    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        if mode == "I" and (a.size == 0 or a.max() <= 255):
            scaled = np.clip(a, 0, 255)  # an 8-bit range stored as 32-bit integers
        else:
            scaled = np.clip(a, 0, 65535) / 257.0
        return Image.fromarray(np.round(scaled).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.round(np.clip(a, 0, 255)).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        return _on_white(im)
    return im.convert("RGB")


def open_rgb(path: str | Path, *, what: str = "image"):
    """Decode ``path`` to RGB; :class:`ImageRefused` for a bomb or an extreme aspect ratio, OSError if unreadable."""

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                problem = size_problem(im.size)
                if problem:
                    raise ImageRefused(f"{what}: {problem}: {im.size[0]}x{im.size[1]} pixels", problem)
                im.load()
                return to_rgb(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageRefused(f"{what}: {TOO_LARGE}: {e}", TOO_LARGE) from None


def image_problem(path: Path, expected_size: tuple[int, int] | None = None) -> str | None:
    """Why ``path`` cannot serve as an image (of (width, height) ``expected_size``), or None if it can.

    Opens and decodes the file (JPEGs at 1/8 scale, a few ms each) so that truncated or corrupt
    files are caught here rather than in the middle of a model run; the size is checked first, so a
    decompression bomb is never decoded.
    """

    if not path.is_file():
        return MISSING
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                size = im.size
                problem = size_problem(size)
                if problem:
                    return problem
                im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return TOO_LARGE
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return UNREADABLE
    if expected_size is not None and tuple(size) != tuple(expected_size):
        return SIZE_MISMATCH
    return None
