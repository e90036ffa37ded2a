"""The data that flows through creg: boxes, relations and samples.

Everything here is a pydantic v2 model. A bad value fails with a message that names the field
and, through :func:`make_sample`, the sample it belongs to.

Coordinates are pixels of the *original* image, x to the right and y downwards (the image
convention); angles follow the paper (Eq. 4): 0 deg is "right", 90 deg is "up".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from PIL import UnidentifiedImageError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from creg.core.images import ImageRefused, open_rgb, size_problem, to_rgb

Relation = Literal["left", "right", "above", "below"]

#: The four relation classes in the order of the prompt options "1".."4" (Appendix A.1).
RELATIONS: tuple[Relation, ...] = ("left", "right", "above", "below")

#: The compass angle (deg, 0 = right, 90 = up) of each cardinal relation.
RELATION_ANGLE: dict[str, float] = {"right": 0.0, "above": 90.0, "left": 180.0, "below": 270.0}


class InvalidSample(ValueError):
    """A sample could not be built; the message names the sample and the field."""


class Box(BaseModel):
    """An axis-aligned box in pixel coordinates (x0, y0) top-left, (x1, y1) bottom-right."""

    model_config = ConfigDict(frozen=True)

    x0: float
    y0: float
    x1: float
    y1: float

    @field_validator("x0", "y0", "x1", "y1")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"must be finite, got {v}")
        return float(v)

    @model_validator(mode="after")
    def _ordered(self) -> "Box":
        if not self.x0 < self.x1:
            raise ValueError(f"x0 must be < x1, got x0={self.x0}, x1={self.x1}")
        if not self.y0 < self.y1:
            raise ValueError(f"y0 must be < y1, got y0={self.y0}, y1={self.y1}")
        return self

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> "Box":
        """COCO's [x, y, width, height] layout."""
        return cls(x0=x, y0=y, x1=x + w, y1=y + h)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


def true_angle(ref_box: Box, tgt_box: Box) -> float:
    """theta_true = atan2(-(y_B - y_A), x_B - x_A) in degrees, in [0, 360) (paper §4, Eq. 6)."""
    (xa, ya), (xb, yb) = ref_box.center, tgt_box.center
    return math.degrees(math.atan2(-(yb - ya), xb - xa)) % 360.0


def relation_from_boxes(ref_box: Box, tgt_box: Box, ratio: float = 1.5) -> Relation | None:
    """Where B lies from A, if one axis dominates by more than ``ratio``; otherwise None."""
    (xa, ya), (xb, yb) = ref_box.center, tgt_box.center
    dx, dy = xb - xa, yb - ya
    if abs(dx) > ratio * abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) > ratio * abs(dx):
        return "below" if dy > 0 else "above"
    return None


class Sample(BaseModel):
    """One question: where is the target B relative to the reference A in this image?

    ``image`` is a path to an image file or an in-memory ``PIL.Image.Image``;
    ``image_size`` is (width, height) in pixels of that image.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str = Field(min_length=1)
    image: Any = Field(exclude=True, repr=False)
    image_size: tuple[int, int]
    ref_name: str = Field(min_length=1)
    ref_box: Box
    tgt_name: str = Field(min_length=1)
    tgt_box: Box
    relation: Relation
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("image")
    @classmethod
    def _image(cls, v: Any) -> Any:
        if isinstance(v, (str, Path)):
            return Path(v)
        if hasattr(v, "size") and hasattr(v, "convert"):  # a PIL image
            return v
        raise ValueError(f"must be a path or a PIL image, got {type(v).__name__}")

    @field_validator("image_size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] <= 0 or v[1] <= 0:
            raise ValueError(f"must be positive (width, height), got {v}")
        return v

    @model_validator(mode="after")
    def _boxes_inside(self) -> "Sample":
        w, h = self.image_size
        tol = 1.0  # annotations often overshoot the border by a fraction of a pixel
        for name in ("ref_box", "tgt_box"):
            b: Box = getattr(self, name)
            if b.x0 < -tol or b.y0 < -tol or b.x1 > w + tol or b.y1 > h + tol:
                raise ValueError(
                    f"{name} {b.as_list()} lies outside the image of size {w}x{h}"
                )
        return self

    @property
    def image_path(self) -> Path | None:
        return self.image if isinstance(self.image, Path) else None

    @property
    def angle(self) -> float:
        """The geometric direction from A to B, theta_true (deg)."""
        return true_angle(self.ref_box, self.tgt_box)

    @property
    def option(self) -> int:
        """The 0-based index of the ground-truth option (left=0 .. below=3)."""
        return RELATIONS.index(self.relation)

    def load_image(self):
        """The image as an RGB ``PIL.Image``; a clear error if it is missing, unreadable or refused.

        Every PIL mode converts correctly (16-bit greyscale scaled, not clipped to white; alpha on
        white: :func:`creg.core.images.to_rgb`); an image above
        :data:`creg.core.images.MAX_PIXELS` (a decompression bomb) or with an aspect ratio above
        :data:`creg.core.images.MAX_ASPECT_RATIO` raises :class:`ImageUnreadable` naming the reason
        before its pixels are decoded.
        """


        if not isinstance(self.image, Path):
            problem = size_problem(self.image.size)
            if problem:
                raise ImageUnreadable(f"sample {self.id!r}: {problem}: {self.image.size[0]}x{self.image.size[1]} pixels")
            return to_rgb(self.image)
        if not self.image.is_file():
            raise FileNotFoundError(f"sample {self.id!r}: image file not found: {self.image}")
        try:
            return open_rgb(self.image, what=f"sample {self.id!r}: {self.image}")
        except ImageRefused as e:
            raise ImageUnreadable(str(e)) from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageUnreadable(f"sample {self.id!r}: cannot read image {self.image}: {e}") from e

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (no pixels) for records and run directories."""
        return {
            "id": self.id,
            "image": str(self.image) if isinstance(self.image, Path) else None,
            "image_size": list(self.image_size),
            "ref": {"name": self.ref_name, "box": self.ref_box.as_list()},
            "tgt": {"name": self.tgt_name, "box": self.tgt_box.as_list()},
            "relation": self.relation,
            "meta": self.meta,
        }


class ImageUnreadable(OSError):
    """The image file exists but cannot be decoded."""


def make_sample(**fields: Any) -> Sample:
    """Build a :class:`Sample`, turning a validation error into one naming the sample and field."""
    try:
        return Sample(**fields)
    except ValidationError as e:
        sid = fields.get("id", "?")
        parts = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        raise InvalidSample(f"sample {sid!r}: " + "; ".join(parts)) from None
