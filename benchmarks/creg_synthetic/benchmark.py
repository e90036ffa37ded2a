"""The ``synthetic`` benchmark plugin."""

from __future__ import annotations

from typing import Any, Iterator

from creg.benchmark import Benchmark
from creg.sample import Sample

from .scenes import scene_sample


class SyntheticBenchmark(Benchmark):
    """Two named coloured shapes, B clearly left/right/above/below A, classes balanced.

    Options: ``width``/``height`` (default 224), ``min_ratio`` (1.5). ``n`` defaults to 200.
    """

    name = "synthetic"
    description = "procedurally drawn two-object scenes, balanced classes (embedded, no download)"

    def __init__(self, *, width: int = 224, height: int = 224, min_ratio: float = 1.5, **kw: Any):
        super().__init__(**kw)
        if self.n is None:
            self.n = 200
        self.size = (int(width), int(height))
        self.min_ratio = float(min_ratio)

    def samples(self) -> Iterator[Sample]:
        for i in range(self.n):
            yield scene_sample(self.seed, i, self.size, min_ratio=self.min_ratio)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "width": self.size[0], "height": self.size[1], "min_ratio": self.min_ratio}
