"""The ``synthetic`` benchmark plugin."""

from __future__ import annotations

from typing import Any, Iterator

from creg.benchmark import Benchmark
from creg.sample import Sample

from .scenes import COLOURS, LAYOUTS, scene_sample


class SyntheticBenchmark(Benchmark):
    """Two named coloured shapes, B clearly left/right/above/below A, classes balanced.

    Options: ``width``/``height`` (default 224), ``min_ratio`` (1.5), ``layout`` ("disc": A's
    r_max disc inside the image, the default; "legacy": creg 0.1's layout, see
    :mod:`creg_synthetic.scenes`), ``distractors`` (further objects, default 0), ``colours``
    (the colour names to draw from, default all). ``n`` defaults to 200.
    """

    name = "synthetic"
    description = "procedurally drawn two-object scenes, balanced classes (embedded, no download)"

    def __init__(self, *, width: int = 224, height: int = 224, min_ratio: float = 1.5, layout: str = "disc",
                 distractors: int = 0, colours: tuple[str, ...] | None = None, **kw: Any):
        super().__init__(**kw)
        if self.n is None:
            self.n = 200
        self.size = (int(width), int(height))
        self.min_ratio = float(min_ratio)
        if layout not in LAYOUTS:
            raise ValueError(f"synthetic: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.layout = layout
        self.distractors = int(distractors)
        self.colours = tuple(colours) if colours else tuple(COLOURS)
        unknown = [c for c in self.colours if c not in COLOURS]
        if unknown or len(self.colours) < 2:
            raise ValueError(f"synthetic: colours must be at least two of {', '.join(COLOURS)}, got {list(self.colours)}")

    def samples(self) -> Iterator[Sample]:
        for i in range(self.n):
            yield scene_sample(self.seed, i, self.size, min_ratio=self.min_ratio, layout=self.layout,
                               distractors=self.distractors, colours=self.colours)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "width": self.size[0], "height": self.size[1], "min_ratio": self.min_ratio,
                "layout": self.layout, "distractors": self.distractors, "colours": list(self.colours)}
