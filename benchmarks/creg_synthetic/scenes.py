"""Procedurally drawn two-object scenes with exact boxes.

Each scene has a plain background and two filled shapes of different colours: the reference A
and the target B, named "<colour> <shape>" (e.g. "red circle"). B lies clearly left of, right
of, above or below A: the displacement along the dominant axis exceeds ``min_ratio`` (1.5) times
the displacement along the other axis. Classes cycle left/right/above/below, so any prefix of
4m scenes is exactly balanced. Scene ``i`` of seed ``s`` depends only on (s, i): asking for more
scenes never changes the earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from creg.sample import RELATIONS, Box, Sample, make_sample, relation_from_boxes

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND = (235, 235, 235)


@dataclass(frozen=True)
class SceneSpec:
    """What is drawn: object names, colours, shapes, boxes and the relation of B to A."""

    ref_colour: str
    ref_shape: str
    ref_box: Box
    tgt_colour: str
    tgt_shape: str
    tgt_box: Box
    relation: str

    @property
    def ref_name(self) -> str:
        return f"{self.ref_colour} {self.ref_shape}"

    @property
    def tgt_name(self) -> str:
        return f"{self.tgt_colour} {self.tgt_shape}"


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, colour: tuple[int, int, int]) -> None:
    xy = [box.x0, box.y0, box.x1 - 1, box.y1 - 1]
    if shape == "circle":
        draw.ellipse(xy, fill=colour)
    elif shape == "square":
        draw.rectangle(xy, fill=colour)
    elif shape == "triangle":
        draw.polygon([(box.x0, box.y1 - 1), ((box.x0 + box.x1) / 2, box.y0), (box.x1 - 1, box.y1 - 1)], fill=colour)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(f"unknown shape {shape!r}")


def render_scene(spec: SceneSpec, size: tuple[int, int]) -> Image.Image:
    """Draw a scene on a (width, height) canvas."""
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    _draw_shape(draw, spec.ref_shape, spec.ref_box, COLOURS[spec.ref_colour])
    _draw_shape(draw, spec.tgt_shape, spec.tgt_box, COLOURS[spec.tgt_colour])
    return img


def sample_scene(
    rng: np.random.Generator,
    relation: str,
    size: tuple[int, int] = (224, 224),
    *,
    radius: tuple[float, float] = (0.09, 0.14),
    min_ratio: float = 1.5,
    colours: tuple[str, ...] = tuple(COLOURS),
    shapes: tuple[str, ...] = SHAPES,
) -> SceneSpec:
    """Draw a random scene whose target lies in ``relation`` of the reference.

    ``radius`` is the half-size range of each object as a fraction of min(width, height).
    """
    w, h = size
    short = min(w, h)
    c_ref, c_tgt = rng.choice(len(colours), size=2, replace=False)
    s_ref, s_tgt = rng.integers(len(shapes), size=2)
    for _ in range(1000):
        ra, rb = rng.uniform(radius[0] * short, radius[1] * short, size=2)
        xa = rng.uniform(ra, w - ra)
        ya = rng.uniform(ra, h - ra)
        xb = rng.uniform(rb, w - rb)
        yb = rng.uniform(rb, h - rb)
        a = Box(x0=xa - ra, y0=ya - ra, x1=xa + ra, y1=ya + ra)
        b = Box(x0=xb - rb, y0=yb - rb, x1=xb + rb, y1=yb + rb)
        if math.hypot(xb - xa, yb - ya) < ra + rb + 0.02 * short:  # overlapping or touching
            continue
        if relation_from_boxes(a, b, min_ratio) != relation:
            continue
        # pixel-aligned boxes: what is drawn is exactly what the box says
        a = Box(x0=round(a.x0), y0=round(a.y0), x1=round(a.x1), y1=round(a.y1))
        b = Box(x0=round(b.x0), y0=round(b.y0), x1=round(b.x1), y1=round(b.y1))
        if relation_from_boxes(a, b, min_ratio) != relation:
            continue
        return SceneSpec(
            ref_colour=colours[c_ref], ref_shape=shapes[s_ref], ref_box=a,
            tgt_colour=colours[c_tgt], tgt_shape=shapes[s_tgt], tgt_box=b,
            relation=relation,
        )
    raise RuntimeError(f"could not place a {relation!r} scene on a {w}x{h} canvas; enlarge the image")


def scene_sample(seed: int, index: int, size: tuple[int, int] = (224, 224), **scene_options) -> Sample:
    """Scene ``index`` of the sequence for ``seed``, as a creg Sample with its image in memory."""
    relation = RELATIONS[index % 4]
    rng = np.random.default_rng([seed, index])
    spec = sample_scene(rng, relation, size, **scene_options)
    return make_sample(
        id=f"synthetic-{seed}-{index:05d}",
        image=render_scene(spec, size),
        image_size=size,
        ref_name=spec.ref_name,
        ref_box=spec.ref_box,
        tgt_name=spec.tgt_name,
        tgt_box=spec.tgt_box,
        relation=relation,
        meta={"seed": seed, "index": index},
    )
