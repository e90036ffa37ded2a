"""Box layouts a user's numbers may come in, and the hint when they were read in the wrong one.

creg's boxes are ``x0, y0, x1, y1`` in pixels (:class:`creg.core.sample.Box`). Data from elsewhere is
often ``x, y, w, h`` (COCO) or ``cx, cy, w, h`` (YOLO-style, in pixels); ``--box-format`` names the
layout. Four numbers read in the wrong layout fail only sometimes (COCO's ``x, y, w, h`` read as
``x0, y0, x1, y1`` is a valid box whenever ``w > x`` and ``h > y``), so where a box is refused, or
its relation contradicts it, :func:`xywh_hint` says whether the numbers fit ``x, y, w, h``.
"""

from __future__ import annotations

from typing import Any, Sequence

#: The layouts ``--box-format`` accepts.
BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")


class BoxFormatError(ValueError):
    """Four numbers could not be read as a box; the message says why (and, where they fit, that they look like x, y, w, h)."""


def to_xyxy(values: Sequence[Any], fmt: str = "xyxy") -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of four numbers in layout ``fmt`` (one of :data:`BOX_FORMATS`)."""
    if fmt not in BOX_FORMATS:
        raise BoxFormatError(f"box format {fmt!r}: choose one of {', '.join(BOX_FORMATS)}")
    try:
        a, b, c, d = (float(v) for v in values)
    except (TypeError, ValueError):
        raise BoxFormatError(f"expected four numbers ({_layout(fmt)}), got {values!r}") from None
    if fmt == "xywh":
        return a, b, a + c, b + d
    if fmt == "cxcywh":
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    return a, b, c, d


def _layout(fmt: str) -> str:
    return {"xyxy": "x0, y0, x1, y1", "xywh": "x, y, w, h", "cxcywh": "cx, cy, w, h"}[fmt]


def fits_xywh(values: Sequence[float], image_size: tuple[int, int] | None = None, tol: float = 1.0) -> bool:
    """True if the four numbers read as ``x, y, w, h`` give a box of positive size (inside ``image_size``, when given)."""
    x, y, w, h = (float(v) for v in values)
    if not (w > 0 and h > 0 and x >= -tol and y >= -tol):
        return False
    return image_size is None or (x + w <= image_size[0] + tol and y + h <= image_size[1] + tol)


def xywh_hint(values: Sequence[Any], fmt: str = "xyxy", image_size: tuple[int, int] | None = None,
              flag: str = "--box-format xywh") -> str:
    """``"; these numbers fit x, y, w, h (COCO's layout): ..."`` when ``values`` were read as ``xyxy``
    and fit that reading; else ``""``. Appended to the error of a refused or contradicted box."""
    if fmt != "xyxy":
        return ""
    try:
        nums = [float(v) for v in values]
        if len(nums) != 4 or not fits_xywh(nums, image_size):
            return ""
    except (TypeError, ValueError):
        return ""
    x, y, w, h = nums
    return (f"; these numbers fit x, y, w, h (COCO's layout): {flag} reads them as x0, y0, x1, y1 = "
            f"{x:g}, {y:g}, {x + w:g}, {y + h:g}")

