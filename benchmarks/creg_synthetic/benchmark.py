"""The ``synthetic`` benchmark plugin."""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import Field, model_validator

from creg.benchmark import Benchmark
from creg.options import PluginOptions
from creg.sample import Sample

from .scenes import scene_sample

#: bounds of the canvas: big enough to place two shapes apart, small enough to stay cheap.
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 32, 4096, 4.0


class SyntheticBenchmark(Benchmark):
    """Two named coloured shapes, B clearly left/right/above/below A, classes balanced.

    ``n`` defaults to 200. Scenes are drawn one at a time as the run asks for them, so memory
    does not grow with ``n``.
    """

    name = "synthetic"
    description = "procedurally drawn two-object scenes, balanced classes (embedded, no download)"
    max_n = 1_000_000

    class Options(PluginOptions):
        width: int = Field(224, ge=MIN_SIDE, le=MAX_SIDE, description="image width in pixels")
        height: int = Field(224, ge=MIN_SIDE, le=MAX_SIDE, description="image height in pixels")
        min_ratio: float = Field(1.5, ge=1.0, le=4.0, allow_inf_nan=False,
                                 description="B's displacement along the dominant axis over the other axis's, at least")

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
        self.size = (self.options.width, self.options.height)
        self.min_ratio = self.options.min_ratio

    def samples(self) -> Iterator[Sample]:
        for i in range(self.n):
            yield scene_sample(self.seed, i, self.size, min_ratio=self.min_ratio)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "width": self.size[0], "height": self.size[1], "min_ratio": self.min_ratio}
