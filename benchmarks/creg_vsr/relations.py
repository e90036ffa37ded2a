"""Which VSR relation phrases are a direction in the image plane, and which one.

Two tables; the benchmark option ``mapping`` picks one.

``strict`` (default): phrases whose meaning is a direction in the picture as seen by the camera.

==========  ==========================================
creg        VSR relation phrases
==========  ==========================================
left        "left of", "at the left side of"
right       "right of", "at the right side of"
above       "above", "over", "on top of"
below       "below", "under", "beneath"
==========  ==========================================

Left out on purpose: "on" (contact or support - a picture on a wall, a logo on a shirt - not a
direction), "down from" (along, not below), "beside", "next to", "at the side of",
"alongside", "by" (a side, but not which), "in front of", "behind", "ahead of", "at the back of"
(depth, not the image plane), and containment, distance, orientation and part phrases.
Caveat: some left/right captions may use the object's own frame (the person's left) rather
than the viewer's; the benchmark records whether the boxes agree with the label, and VSR's
``reference_frame`` field as-is.

``paper``: above = "above", "on top of", "on"; below = "below", "under"; nothing for left or
right. The CREG paper's Table 7 "Matched" counts on the random split (test 240, dev 121,
train 828) equal, part by part, the positive rows whose relation is exactly one of these five
phrases; no other subset of the ten strict phrases plus "on" and "down from" gives all three
numbers. That is what a lookup keyed on bare "left"/"right" would give, since VSR never uses
those words. (Whether each of those rows also finds both categories in the full annotations
cannot be checked without them; the paper reports 100% validity.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - keeps `creg --help` free of pydantic
    from creg.core.sample import Relation

STRICT: dict[str, Relation] = {
    "left of": "left",
    "at the left side of": "left",
    "right of": "right",
    "at the right side of": "right",
    "above": "above",
    "over": "above",
    "on top of": "above",
    "below": "below",
    "under": "below",
    "beneath": "below",
}

PAPER: dict[str, Relation] = {
    "above": "above",
    "on top of": "above",
    "on": "above",
    "below": "below",
    "under": "below",
}

MAPPINGS: dict[str, dict[str, Relation]] = {"strict": STRICT, "paper": PAPER}


def creg_relation(vsr_relation: str, mapping: str = "strict") -> Relation | None:
    """The creg relation of a VSR relation phrase under ``mapping``, or None if it is not directional."""
    try:
        table = MAPPINGS[mapping]
    except KeyError:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}") from None
    return table.get(vsr_relation.strip().lower())
