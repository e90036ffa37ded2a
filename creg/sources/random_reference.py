"""The randomised-reference control (paper §6.3): CREG relevance, projected around a random centre.

The relevance is exactly ``creg``'s (same options, shared cached gradients, no extra model
cost). The projection is centred on a box of A's size whose centre is drawn uniformly in the
image (seeded by run seed and sample id; redrawn if it falls within 1 px of B's centre, where
the projection is undefined); the metrics still compare with the true direction A -> B. A
relevance map that carries relational evidence about A should lose its alignment (DAE towards
90 deg, EA towards 0.25); alignment that survives comes from something other than the
reference -- e.g. relevance sitting at an image border that matches the class prior.
"""

from __future__ import annotations

import numpy as np

from creg.core.sample import Box, Sample
from creg.explain.context import ExplainContext
from creg.plugins.relevance import RelevanceMap
from creg.sources.contrastive_multilayer import CregSource
from creg.sources.token_grid import relevance_map, to_grid


def random_reference_box(sample: Sample, rng: np.random.Generator, min_distance_px: float = 1.0) -> Box:
    """A box of A's width and height centred at a uniform random point of the image, not on B's centre."""
    w, h = sample.image_size
    bx, by = sample.tgt_box.center
    for _ in range(1000):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if (cx - bx) ** 2 + (cy - by) ** 2 >= min_distance_px**2:
            break
    hw, hh = sample.ref_box.width / 2, sample.ref_box.height / 2
    return Box(x0=cx - hw, y0=cy - hh, x1=cx + hw, y1=cy + hh)


class RandomReferenceSource(CregSource):
    """``creg`` relevance with the projection centred at a random point (control, §6.3).
    Options: those of ``creg``."""

    name = "random_ref"

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        maps = []
        for i, (r, _) in enumerate(self.vision_relevance(ctx)):
            layout = ctx.layout(i)
            ref = random_reference_box(ctx.samples[i], ctx.rng(i, self.name))
            maps.append(relevance_map(to_grid(r, layout), layout, ref_box=ref))
        return self.diagnose(ctx, maps)
