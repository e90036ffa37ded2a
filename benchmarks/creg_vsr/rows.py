"""The VSR split files shipped in this package, parsed into rows.

Each line is one caption about one COCO 2017 image. The caption names two objects:
"The {subject} is {relation} the {object}." (a few relations, e.g. "contains", have no "is").
The subject is what the caption locates, so for creg it is the target B; the object is the
reference A.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SPLITS: tuple[str, ...] = ("random", "zeroshot")
PARTS: tuple[str, ...] = ("test", "dev", "train")


@dataclass(frozen=True)
class VsrRow:
    split: str
    part: str
    line: int  # 1-based line number in the split file: a stable id
    image: str  # COCO file name, e.g. "000000451431.jpg"
    coco_split: str  # "train2017" or "val2017", from image_link
    caption: str
    subject: str
    relation: str
    object: str
    label: int
    reference_frame: float | None  # as in the file; its meaning is not documented by VSR

    @property
    def row_id(self) -> str:
        return f"vsr-{self.split}-{self.part}-{self.line:05d}"


def parse_caption(caption: str, relation: str) -> tuple[str, str]:
    """(subject, object) of a VSR caption, given the row's relation phrase; ValueError if it does not fit."""
    pattern = rf"The (?P<subject>.+?) (?:is |are )?{re.escape(relation)} the (?P<object>.+?)\.?"
    m = re.fullmatch(pattern, caption.strip())
    if not m:
        raise ValueError(f"caption {caption!r} does not read 'The <subject> [is] {relation} the <object>.'")
    return m.group("subject").strip(), m.group("object").strip()


def _coco_split(image_link: str) -> str:
    for split in ("train2017", "val2017"):
        if f"/{split}/" in image_link:
            return split
    raise ValueError(f"image_link {image_link!r} names neither train2017 nor val2017")


def check_split_part(split: str, part: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"VSR split must be one of {', '.join(SPLITS)}, got {split!r}")
    if part not in PARTS:
        raise ValueError(f"VSR part must be one of {', '.join(PARTS)}, got {part!r}")


@lru_cache(maxsize=None)
def load_rows(split: str = "random", part: str = "test") -> tuple[VsrRow, ...]:
    """All rows of one shipped split file, in file order."""
    check_split_part(split, part)
    text = resources.files("creg_vsr").joinpath("splits", split, f"{part}.jsonl").read_text(encoding="utf-8")
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        d = json.loads(line)
        try:
            subject, obj = parse_caption(d["caption"], d["relation"])
            rows.append(VsrRow(
                split=split, part=part, line=line_no, image=d["image"], coco_split=_coco_split(d["image_link"]),
                caption=d["caption"], subject=subject, relation=d["relation"], object=obj,
                label=int(d["label"]), reference_frame=d.get("reference_frame"),
            ))
        except (KeyError, ValueError) as e:
            raise ValueError(f"VSR {split}/{part}.jsonl line {line_no}: {e}") from e
    return tuple(rows)
