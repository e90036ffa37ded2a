"""Boxes for VSR rows from the COCO 2017 instance annotations of their image.

:func:`match_row` gives each row an outcome: matched (with the two annotations) or the reason
it is not. Only label-1 rows are considered, and only those whose relation maps to a creg
direction (:mod:`creg_vsr.relations`). Then both entity names must match a COCO category
(:mod:`creg_vsr.names`), the image must be in the loaded annotation files, and each category
must have a non-crowd instance in it. When a category has several instances:

* ``instances="largest"`` (default): take the largest box (ties to the lower annotation id).
  Annotators wrote the captions while looking at the picture, and the object they name is
  most often the salient one; the benchmark records how many instances there were and whether
  the chosen boxes agree with the label, so the choice can be audited;
* ``instances="unique"``: no match (ambiguous) when either category has more than one instance.

Subject and object of the same category never match: which instance is which is unknowable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .names import match_category
from .relations import creg_relation
from .rows import VsrRow

INSTANCE_RULES: tuple[str, ...] = ("largest", "unique")

# Outcomes, in the order the checks are made.
NEGATIVE = "label 0 (false caption)"
NOT_DIRECTIONAL = "relation not directional under the mapping"
NAME_UNMATCHED = "name matches no COCO category"
IMAGE_NOT_ANNOTATED = "image not in the provided annotations"
SAME_CATEGORY = "subject and object of the same category"
NO_INSTANCE = "category has no non-crowd instance in the image"
AMBIGUOUS = "several instances of a category (instances=unique)"
MATCHED = "matched"


class CocoInstances:
    """The loaded COCO indexes (:class:`creg.coco.annotations.CocoIndex`), looked up by (COCO split, file name)."""

    def __init__(self, indexes: dict[str, Any]):
        self.indexes = dict(indexes)  # "train2017" / "val2017" -> CocoIndex
        self._by_file: dict[tuple[str, str], int] = {}
        self.category_ids: dict[str, int] = {}
        for split, coco in self.indexes.items():
            for image_id, image in coco.images.items():
                self._by_file[(split, image["file_name"])] = image_id
            for cat_id, name in sorted(coco.categories.items()):
                self.category_ids.setdefault(name, cat_id)

    def image(self, split: str, file_name: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(image entry, its annotations) or None if the image is not in the loaded files."""
        image_id = self._by_file.get((split, file_name))
        if image_id is None:
            return None
        coco = self.indexes[split]
        return coco.images[image_id], list(coco.annotations(image_id))


@dataclass(frozen=True)
class RowMatch:
    row: VsrRow
    outcome: str
    relation: str | None = None  # the creg relation, when directional
    image: dict[str, Any] | None = None
    ref_ann: dict[str, Any] | None = None  # the VSR object
    tgt_ann: dict[str, Any] | None = None  # the VSR subject
    instance_counts: dict[str, int] = field(default_factory=dict)  # category name -> non-crowd instances

    @property
    def matched(self) -> bool:
        return self.outcome == MATCHED


def _box_area(ann: dict[str, Any]) -> float:
    return float(ann["bbox"][2]) * float(ann["bbox"][3])


def match_row(row: VsrRow, coco: CocoInstances | None, *, mapping: str = "strict", instances: str = "largest") -> RowMatch:
    """The outcome of one row; ``coco`` None means no annotations at all (image never annotated)."""
    if instances not in INSTANCE_RULES:
        raise ValueError(f"instances must be one of {', '.join(INSTANCE_RULES)}, got {instances!r}")
    if row.label != 1:
        return RowMatch(row, NEGATIVE)
    relation = creg_relation(row.relation, mapping)
    if relation is None:
        return RowMatch(row, NOT_DIRECTIONAL)
    if coco is None:
        return RowMatch(row, IMAGE_NOT_ANNOTATED, relation)
    tgt_name = match_category(row.subject, coco.category_ids)
    ref_name = match_category(row.object, coco.category_ids)
    if tgt_name is None or ref_name is None:
        return RowMatch(row, NAME_UNMATCHED, relation)
    found = coco.image(row.coco_split, row.image)
    if found is None:
        return RowMatch(row, IMAGE_NOT_ANNOTATED, relation)
    image, anns = found
    if tgt_name == ref_name:
        return RowMatch(row, SAME_CATEGORY, relation, image)
    chosen: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for name in (ref_name, tgt_name):
        of_category = sorted(
            (a for a in anns if a["category_id"] == coco.category_ids[name] and not a.get("iscrowd", 0)),
            key=lambda a: a["id"],
        )
        counts[name] = len(of_category)
        if not of_category:
            return RowMatch(row, NO_INSTANCE, relation, image, instance_counts=counts)
        if len(of_category) > 1 and instances == "unique":
            return RowMatch(row, AMBIGUOUS, relation, image, instance_counts=counts)
        chosen[name] = max(of_category, key=_box_area)  # max keeps the first (lowest id) of equal areas
    return RowMatch(row, MATCHED, relation, image, chosen[ref_name], chosen[tgt_name], counts)
