"""The ``synthetic`` benchmark plugin."""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import Field, field_validator, model_validator

from creg.plugins.benchmark import Benchmark
from creg.plugins.options import Choice, PluginOptions
from creg.core.sample import Sample

from .scenes import BACKGROUND, COLOURS, LAYOUTS, scene_sample

#: bounds of the canvas: big enough to place two shapes apart, small enough to stay cheap.
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 32, 4096, 4.0
#: at most this many distractor objects besides A and B.
MAX_DISTRACTORS = 8


class SyntheticBenchmark(Benchmark):
    """Two named coloured shapes, B clearly left/right/above/below A, classes balanced.

    ``n`` defaults to 200. Scenes are drawn one at a time as the run asks for them, so memory
    does not grow with ``n``. Options: :class:`SyntheticBenchmark.Options`; the layouts are
    described in :mod:`creg_synthetic.scenes`.
    """

    name = "synthetic"
    max_n = 1_000_000

    class Options(PluginOptions):
        width: int = Field(224, ge=MIN_SIDE, le=MAX_SIDE, description="image width in pixels")
        height: int = Field(224, ge=MIN_SIDE, le=MAX_SIDE, description="image height in pixels")
        min_ratio: float = Field(1.5, ge=1.0, le=4.0, allow_inf_nan=False,
                                 description="B's displacement along the dominant axis over the other axis's, at least")
        layout: Choice(*LAYOUTS) = Field(
            "disc", description="disc: A's r_max disc inside the image (default); legacy: creg 0.1's layout")
        distractors: int = Field(0, ge=0, le=MAX_DISTRACTORS, description="further objects besides A and B")
        colours: tuple[str, ...] | None = Field(
            None, description=f"colour names to draw from, at least two of {', '.join(COLOURS)} (default: all)")

        @field_validator("colours", mode="before")
        @classmethod
        def _colour_list(cls, v: Any) -> Any:
            if isinstance(v, str):  # --bench-opt colours=red,green
                v = [c for c in v.replace(" ", "").strip("[]()").split(",") if c]
            return v

        @field_validator("colours")
        @classmethod
        def _known_colours(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
            if v is None:
                return v
            unknown = [c for c in v if c not in COLOURS]
            if unknown or len(set(v)) < 2:
                raise ValueError(f"expected at least two of {', '.join(COLOURS)}, got {list(v)}")
            return tuple(v)

        @model_validator(mode="after")
        def _aspect(self) -> "SyntheticBenchmark.Options":
            if max(self.width, self.height) / min(self.width, self.height) > MAX_ASPECT:
                raise ValueError(f"width/height aspect ratio above {MAX_ASPECT:g} leaves no room for every relation, "
                                 f"got {self.width}x{self.height}")
            return self

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        if self.n is None:
            self.n = 200
        o = self.options
        self.size = (o.width, o.height)
        self.min_ratio = o.min_ratio
        self.layout = o.layout
        self.distractors = o.distractors
        self.colours = tuple(o.colours) if o.colours else tuple(COLOURS)

    def samples(self) -> Iterator[Sample]:
        for i in range(self.n):
            yield scene_sample(self.seed, i, self.size, min_ratio=self.min_ratio, layout=self.layout,
                               distractors=self.distractors, colours=self.colours)

    def blank_sample(self, sample: Sample) -> Sample:
        """The scene drawn without any object (A, B and distractors): the empty canvas, same names
        and boxes (the blank-image control)."""
        from PIL import Image

        return sample.model_copy(update={"image": Image.new("RGB", sample.image_size, BACKGROUND),
                                         "meta": {**sample.meta, "blank": True}})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "width": self.size[0], "height": self.size[1], "min_ratio": self.min_ratio,
                "layout": self.layout, "distractors": self.distractors, "colours": list(self.colours)}
