"""Does a stated relation contradict the boxes?

DAE is measured against the boxes' direction A → B (θ_true, Eq. 6); the relation is what the model's
answer is scored against. When the two disagree, one of them is wrong (a swapped label, boxes in the
wrong layout) and the run would score answers and evidence against different truths.

A relation *contradicts* the boxes when θ_true lies 90° or more from the relation's direction
(right 0°, above 90°, left 180°, below 270°): B's centre is not displaced towards the stated side at
all. A weak case (B above-right of A called "right") is not a contradiction. Boxes with the same
centre have no direction and contradict nothing.
"""

from __future__ import annotations

from creg.core.sample import RELATION_ANGLE, Box, relation_from_boxes, true_angle


def boxes_say(ref_box: Box, tgt_box: Box) -> str:
    """The relation the boxes support most (the dominant axis of the centre displacement)."""
    return relation_from_boxes(ref_box, tgt_box, ratio=1.0) or ("right" if tgt_box.center[0] >= ref_box.center[0] else "left")


def contradiction(ref_box: Box, tgt_box: Box, relation: str) -> str | None:
    """Why ``relation`` contradicts the boxes (one clause), or None when it does not."""
    if ref_box.center == tgt_box.center:
        return None
    angle = true_angle(ref_box, tgt_box)
    off = abs((angle - RELATION_ANGLE[relation] + 180.0) % 360.0 - 180.0)
    if off < 90.0:
        return None
    said = boxes_say(ref_box, tgt_box)
    of = " of" if said in ("left", "right") else ""
    return (f"relation {relation!r} contradicts the boxes: they put B {said}{of} A "
            f"(A→B at {angle:.0f}°, {off:.0f}° from {relation})")
