"""Candidate object pairs of one COCO image: the selection rules of COCO-Pairs.

A candidate is an ordered pair (reference A, target B) of instances of *different* categories in
the same image whose box centres show clear directional dominance: the displacement of B's
centre from A's along one axis exceeds ``min_ratio`` times the displacement along the other
(:func:`creg.core.sample.relation_from_boxes`). Both orders of a pair are candidates (B left of A and
A right of B); the selection uses an unordered pair at most once.

Instances that take part:

* never ``iscrowd`` annotations (their box covers a group, not one object);
* never *tiny* ones: a box with positive width and height whose area is below ``min_area`` times
  the image area. Degenerate boxes (zero or negative width/height) are not "tiny": they stay
  in, so that building the sample reports them (``InvalidSample``) and they are counted;
* ``instances="unique"`` (default): only categories with exactly one annotation in the image,
  crowd and tiny ones included in the count ("the cup" is ambiguous when there are three);
  ``"largest"``: the largest non-crowd instance of each category (by box area, ties to the lower
  annotation id), named by its category although others exist; ``"all"``: every instance.

Candidates are listed sorted by (image id, reference annotation id, target annotation id), so
the list does not depend on the order of the annotation file or of dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from creg.core.sample import RELATIONS, Box, relation_from_boxes

INSTANCE_RULES: tuple[str, ...] = ("unique", "largest", "all")


@dataclass(frozen=True)
class PairRules:
    min_ratio: float = 1.5
    min_area: float = 0.01
    instances: str = "unique"


@dataclass(frozen=True)
class Candidate:
    """One ordered pair: B (target) lies in ``relation`` of A (reference)."""

    image_id: int
    file_name: str
    image_size: tuple[int, int]
    ref_ann_id: int
    ref_category_id: int
    ref_xywh: tuple[float, float, float, float]
    tgt_ann_id: int
    tgt_category_id: int
    tgt_xywh: tuple[float, float, float, float]
    relation: str

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.image_id, self.ref_ann_id, self.tgt_ann_id)

    @property
    def pair_key(self) -> frozenset[int]:
        return frozenset((self.ref_ann_id, self.tgt_ann_id))


def _unvalidated_box(xywh: tuple[float, float, float, float]) -> Box:
    # Only the centre is needed here; a degenerate box is validated (and reported) when the sample is built.
    x, y, w, h = xywh
    return Box.model_construct(x0=x, y0=y, x1=x + w, y1=y + h)


def _is_tiny(xywh: tuple[float, ...], image_area: float, min_area: float) -> bool:
    _, _, w, h = xywh
    return w > 0 and h > 0 and w * h < min_area * image_area


def eligible_instances(anns: list[dict[str, Any]], image_area: float, rules: PairRules) -> list[dict[str, Any]]:
    """The annotations of one image that may be A or B under ``rules``, sorted by annotation id."""
    anns = sorted(anns, key=lambda a: a["id"])
    per_category: dict[int, int] = {}
    for a in anns:
        per_category[a["category_id"]] = per_category.get(a["category_id"], 0) + 1
    usable = [a for a in anns if not a.get("iscrowd", 0)]
    if rules.instances == "unique":
        usable = [a for a in usable if per_category[a["category_id"]] == 1]
    elif rules.instances == "largest":
        largest: dict[int, dict[str, Any]] = {}
        for a in usable:  # ascending id: a strictly larger box replaces, ties keep the lower id
            best = largest.get(a["category_id"])
            if best is None or a["bbox"][2] * a["bbox"][3] > best["bbox"][2] * best["bbox"][3]:
                largest[a["category_id"]] = a
        usable = sorted(largest.values(), key=lambda a: a["id"])
    elif rules.instances != "all":
        raise ValueError(f"instances must be one of {INSTANCE_RULES}, got {rules.instances!r}")
    return [a for a in usable if not _is_tiny(tuple(a["bbox"]), image_area, rules.min_area)]


def image_candidates(image: dict[str, Any], anns: list[dict[str, Any]], rules: PairRules) -> list[Candidate]:
    """All ordered candidate pairs of one image (``image`` is its COCO ``images`` entry)."""
    size = (int(image["width"]), int(image["height"]))
    instances = eligible_instances(anns, float(size[0] * size[1]), rules)
    out: list[Candidate] = []
    for a in instances:
        for b in instances:
            if a["category_id"] == b["category_id"]:
                continue
            a_xywh, b_xywh = tuple(map(float, a["bbox"])), tuple(map(float, b["bbox"]))
            relation = relation_from_boxes(_unvalidated_box(a_xywh), _unvalidated_box(b_xywh), rules.min_ratio)
            if relation is None:
                continue
            out.append(Candidate(
                image_id=int(image["id"]), file_name=str(image["file_name"]), image_size=size,
                ref_ann_id=int(a["id"]), ref_category_id=int(a["category_id"]), ref_xywh=a_xywh,
                tgt_ann_id=int(b["id"]), tgt_category_id=int(b["category_id"]), tgt_xywh=b_xywh,
                relation=relation,
            ))
    return out


def candidates_by_relation(coco, rules: PairRules) -> dict[str, list[Candidate]]:
    """Every candidate of a :class:`creg.coco.annotations.CocoIndex`, grouped by relation, each list sorted deterministically."""
    grouped: dict[str, list[Candidate]] = {r: [] for r in RELATIONS}
    for image_id in sorted(coco.images):
        for c in image_candidates(coco.images[image_id], coco.annotations(image_id), rules):
            grouped[c.relation].append(c)
    for r in RELATIONS:
        grouped[r].sort(key=lambda c: c.sort_key)
    return grouped
