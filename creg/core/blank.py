"""A blank copy of a sample: its image made uniform, its names and boxes kept.

The default of :meth:`creg.plugins.benchmark.Benchmark.blank_sample` (the blank-image control) and the
blank image CREG's ``activation=h_minus_blank`` subtracts.
"""

from __future__ import annotations

from PIL import Image, ImageStat

from creg.core.sample import Sample


def uniform_blank(sample: Sample) -> Sample:
    """``sample`` on a uniform image of the same size, in the (rounded) mean colour of its image."""

    image = sample.load_image()
    colour = tuple(int(round(c)) for c in ImageStat.Stat(image).mean[:3])
    return sample.model_copy(update={"image": Image.new("RGB", image.size, colour),
                                     "meta": {**sample.meta, "blank": True}})
