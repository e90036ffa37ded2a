"""Procedurally drawn two-object scenes with exact boxes.

Each scene has a plain background and filled shapes of different colours: the reference A and
the target B, named "<colour> <shape>" (e.g. "red circle"), and optionally ``distractors``
further objects whose names differ from both. B lies clearly left of, right of, above or below
A: the displacement along the dominant axis exceeds ``min_ratio`` (1.5) times the displacement
along the other axis. Classes cycle left/right/above/below, so any prefix of 4m scenes is
exactly balanced. Scene ``i`` of seed ``s`` depends only on (s, i): asking for more scenes never
changes the earlier ones.

Two layouts:

* ``"disc"`` (the default) puts A so that the compass's whole r_max disc around A
  (r_max = ``rho_r`` * d_AB, ``rho_r`` = 2 as in the compass) lies inside the image, and draws
  B's direction uniformly within its class's cone (|angle - axis| < atan(1 / min_ratio)) at a
  uniform distance. A relevance map that carries no information (uniform noise) then has no
  preferred direction inside the disc: its compass peak is uniform over the sectors, which gives
  the chance scores DAE 90 deg / EA 0.25 (tests/test_synthetic.py).
* ``"legacy"`` is the layout of creg 0.1 (A and B placed uniformly in the image, rejected until
  the relation holds). The r_max disc of A then usually reaches outside the image, towards the
  image centre on the side where B lies, so even uniform-noise relevance scores far better than
  chance (about DAE 45 deg / EA 0.6); kept for comparison with earlier runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from creg.core.sample import RELATIONS, Box, Sample, make_sample, relation_from_boxes

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND = (235, 235, 235)
LAYOUTS: tuple[str, ...] = ("disc", "legacy")
Layout = Literal["disc", "legacy"]

#: direction of each relation's axis in degrees, counter-clockwise from "right", y up (as Eq. 6).
AXIS_ANGLE = {"right": 0.0, "above": 90.0, "left": 180.0, "below": 270.0}


@dataclass(frozen=True)
class Distractor:
    """A further object that is neither A nor B."""

    colour: str
    shape: str
    box: Box

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


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
    distractors: tuple[Distractor, ...] = field(default=())

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
    """Draw a scene on a (width, height) canvas (distractors first, then A, then B)."""
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    for d in spec.distractors:
        _draw_shape(draw, d.shape, d.box, COLOURS[d.colour])
    _draw_shape(draw, spec.ref_shape, spec.ref_box, COLOURS[spec.ref_colour])
    _draw_shape(draw, spec.tgt_shape, spec.tgt_box, COLOURS[spec.tgt_colour])
    return img


def _square(cx: float, cy: float, r: float) -> Box:
    return Box(x0=cx - r, y0=cy - r, x1=cx + r, y1=cy + r)


def _pixel_aligned(b: Box) -> Box:
    return Box(x0=round(b.x0), y0=round(b.y0), x1=round(b.x1), y1=round(b.y1))


def _apart(a: Box, b: Box, gap: float) -> bool:
    """Bounding circles of the two (square) boxes do not touch, with ``gap`` pixels to spare."""
    (xa, ya), (xb, yb) = a.center, b.center
    return math.hypot(xb - xa, yb - ya) >= a.width / 2 + b.width / 2 + gap


def _disc_inside(a: Box, b: Box, size: tuple[int, int], rho_r: float) -> bool:
    (xa, ya), (xb, yb) = a.center, b.center
    r = rho_r * math.hypot(xb - xa, yb - ya)
    w, h = size
    return r <= xa <= w - r and r <= ya <= h - r


def _place_legacy(rng, relation, size, radius, min_ratio):
    w, h = size
    short = min(w, h)
    ra, rb = rng.uniform(radius[0] * short, radius[1] * short, size=2)
    xa, ya = rng.uniform(ra, w - ra), rng.uniform(ra, h - ra)
    xb, yb = rng.uniform(rb, w - rb), rng.uniform(rb, h - rb)
    return _square(xa, ya, ra), _square(xb, yb, rb)


def _place_disc(rng, relation, size, radius, min_ratio, rho_r):
    """A's centre uniform where the r_max disc fits; B at a uniform angle within the relation's
    cone and a uniform distance between touching and the largest distance whose disc fits."""
    w, h = size
    short = min(w, h)
    gap = 0.02 * short
    ra, rb = rng.uniform(radius[0] * short, radius[1] * short, size=2)
    d_lo = ra + rb + gap
    d_hi = short / (2.0 * rho_r)  # the disc of radius rho_r * d fits only if 2 * rho_r * d <= short
    if d_hi <= d_lo:
        return None
    d = rng.uniform(d_lo, d_hi)
    half_cone = math.degrees(math.atan(1.0 / min_ratio))
    phi = math.radians(AXIS_ANGLE[relation] + rng.uniform(-half_cone, half_cone))
    r_max = rho_r * d
    xa, ya = rng.uniform(r_max, w - r_max), rng.uniform(r_max, h - r_max)
    xb, yb = xa + d * math.cos(phi), ya - d * math.sin(phi)  # image y grows downwards
    return _square(xa, ya, ra), _square(xb, yb, rb)


def _place_distractors(rng, n, size, radius, taken, used_names, colours, shapes, gap):
    w, h = size
    short = min(w, h)
    names = [(c, s) for c in colours for s in shapes if f"{c} {s}" not in used_names]
    out: list[Distractor] = []
    for _ in range(n):
        for _ in range(200):
            c, s = names[rng.integers(len(names))]
            r = rng.uniform(radius[0] * short, radius[1] * short)
            box = _pixel_aligned(_square(rng.uniform(r, w - r), rng.uniform(r, h - r), r))
            if all(_apart(box, t, gap) for t in taken):
                taken.append(box)
                out.append(Distractor(c, s, box))
                break
        else:
            raise RuntimeError(f"could not place {n} distractors on a {w}x{h} canvas; use fewer or a larger image")
    return tuple(out)


def sample_scene(
    rng: np.random.Generator,
    relation: str,
    size: tuple[int, int] = (224, 224),
    *,
    layout: Layout = "disc",
    radius: tuple[float, float] | None = None,
    min_ratio: float = 1.5,
    rho_r: float = 2.0,
    distractors: int = 0,
    colours: tuple[str, ...] = tuple(COLOURS),
    shapes: tuple[str, ...] = SHAPES,
) -> SceneSpec:
    """Draw a random scene whose target lies in ``relation`` of the reference.

    ``radius`` is the half-size range of each object as a fraction of min(width, height)
    (default: (0.05, 0.09) for ``"disc"``, (0.09, 0.14) for ``"legacy"``). ``rho_r`` is the
    compass's r_max / d_AB that the ``"disc"`` layout keeps inside the image.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if radius is None:
        radius = (0.05, 0.09) if layout == "disc" else (0.09, 0.14)
    w, h = size
    short = min(w, h)
    c_ref, c_tgt = rng.choice(len(colours), size=2, replace=False)
    s_ref, s_tgt = rng.integers(len(shapes), size=2)
    for _ in range(1000):
        if layout == "disc":
            placed = _place_disc(rng, relation, size, radius, min_ratio, rho_r)
            if placed is None:
                break
        else:
            placed = _place_legacy(rng, relation, size, radius, min_ratio)
        a, b = placed
        if not _apart(a, b, 0.02 * short):  # overlapping or touching
            continue
        if relation_from_boxes(a, b, min_ratio) != relation:
            continue
        # pixel-aligned boxes: what is drawn is exactly what the box says
        a, b = _pixel_aligned(a), _pixel_aligned(b)
        if relation_from_boxes(a, b, min_ratio) != relation:
            continue
        if layout == "disc" and not _disc_inside(a, b, size, rho_r):
            continue
        extra = ()
        if distractors:
            used = {f"{colours[c_ref]} {shapes[s_ref]}", f"{colours[c_tgt]} {shapes[s_tgt]}"}
            extra = _place_distractors(rng, distractors, size, radius, [a, b], used, colours, shapes, 0.02 * short)
        return SceneSpec(
            ref_colour=colours[c_ref], ref_shape=shapes[s_ref], ref_box=a,
            tgt_colour=colours[c_tgt], tgt_shape=shapes[s_tgt], tgt_box=b,
            relation=relation, distractors=extra,
        )
    raise RuntimeError(f"could not place a {relation!r} scene on a {w}x{h} canvas; enlarge the image")


def scene_sample(seed: int, index: int, size: tuple[int, int] = (224, 224), **scene_options) -> Sample:
    """Scene ``index`` of the sequence for ``seed``, as a creg Sample with its image in memory.

    ``scene_options`` go to :func:`sample_scene` (``layout``, ``distractors``, ``min_ratio``, ...).
    """
    relation = RELATIONS[index % 4]
    rng = np.random.default_rng([seed, index])
    spec = sample_scene(rng, relation, size, **scene_options)
    meta = {"seed": seed, "index": index, "layout": scene_options.get("layout", "disc")}
    if spec.distractors:
        meta["distractors"] = [{"name": d.name, "box": d.box.as_list()} for d in spec.distractors]
    return make_sample(
        id=f"synthetic-{seed}-{index:05d}",
        image=render_scene(spec, size),
        image_size=size,
        ref_name=spec.ref_name,
        ref_box=spec.ref_box,
        tgt_name=spec.tgt_name,
        tgt_box=spec.tgt_box,
        relation=relation,
        meta=meta,
    )
