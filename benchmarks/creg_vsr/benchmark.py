"""The ``vsr`` benchmark: true VSR captions with a left/right/above/below relation, boxed from COCO."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from creg.benchmark import Benchmark, DataNotFound
from creg.sample import InvalidSample, Sample, make_sample, relation_from_boxes
from creg_coco_pairs.coco_files import (
    COCO_SPLITS,
    annotation_path,
    image_folder,
    image_problem,
    load_instances,
    missing_annotation_message,
    resolve_data_dir,
)
from creg.options import parse_bool, parse_choice, parse_float

from .matching import INSTANCE_RULES, CocoInstances, RowMatch, match_row
from .relations import MAPPINGS, creg_relation
from .rows import PARTS, SPLITS, VsrRow, load_rows

MAX_PROBLEMS_KEPT = 20


def load_coco_for(rows: tuple[VsrRow, ...], root: Path, mapping: str) -> tuple[CocoInstances, list[str]]:
    """Load the annotation files the directional positive rows need; which needed ones are absent.

    DataNotFound when none of the needed files is present.
    """
    needed = sorted({r.coco_split for r in rows if r.label == 1 and creg_relation(r.relation, mapping)})
    present = [s for s in needed if annotation_path(root, s).is_file()]
    absent = [s for s in needed if s not in present]
    if needed and not present:
        raise DataNotFound(" ".join(missing_annotation_message(root, s) for s in needed))
    return CocoInstances({s: load_instances(root, s) for s in present}), absent


class VsrBenchmark(Benchmark):
    """VSR label-1 captions whose relation is a direction, with COCO boxes (paper §5.1, Table 7).

    Options (defaults): ``split`` (random | zeroshot), ``part`` (test | dev | train),
    ``mapping`` (strict | paper: see :mod:`creg_vsr.relations`), ``instances`` (largest |
    unique: see :mod:`creg_vsr.matching`), ``agree_ratio`` (1.0: the boxes "agree" when the
    dominant axis of the centre displacement, by more than this factor, points the labelled
    way), ``drop_disagreeing`` (false: keep and flag). ``n``: all matched rows in file order
    when unset; otherwise a seeded subset, in seeded order (the subset for n is a prefix of the
    subset for a larger n).
    """

    name = "vsr"
    description = "VSR true captions with a direction relation, boxes from COCO 2017 (needs --data-dir)"
    needs_data = True

    def __init__(
        self,
        *,
        split: str = "random",
        part: str = "test",
        mapping: str = "strict",
        instances: str = "largest",
        agree_ratio: float = 1.0,
        drop_disagreeing: bool = False,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.split = parse_choice(split, "split", SPLITS)
        self.part = parse_choice(part, "part", PARTS)
        self.mapping = parse_choice(mapping, "mapping", tuple(MAPPINGS))
        self.instances = parse_choice(instances, "instances", INSTANCE_RULES)
        self.agree_ratio = parse_float(agree_ratio, "agree_ratio", minimum=1.0)
        self.drop_disagreeing = parse_bool(drop_disagreeing, "drop_disagreeing")
        if self.n is not None and int(self.n) < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        self.problems: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.absent_annotations: list[str] = []
        self._samples: list[Sample] | None = None

    def _report(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(message)

    def _build(self) -> list[Sample]:
        if self._samples is not None:
            return self._samples
        rows = load_rows(self.split, self.part)
        root = resolve_data_dir(self.data_dir, self.name)
        coco, self.absent_annotations = load_coco_for(rows, root, self.mapping)
        matches = [match_row(r, coco, mapping=self.mapping, instances=self.instances) for r in rows]
        self.outcomes = Counter(m.outcome for m in matches)
        matched = [m for m in matches if m.matched]
        if self.n is not None:
            order = np.random.default_rng(self.seed).permutation(len(matched))
            matched = [matched[i] for i in order]
        folders: dict[str, Path] = {}
        checked: dict[Path, str | None] = {}
        out: list[Sample] = []
        for m in matched:
            if self.n is not None and len(out) >= int(self.n):
                break
            split = m.row.coco_split
            if split not in folders:
                folders[split] = image_folder(root, split)
            path = folders[split] / m.row.image
            size = (int(m.image["width"]), int(m.image["height"]))
            if path not in checked:
                checked[path] = image_problem(path, size)
            if checked[path]:
                self._report(checked[path], f"{m.row.row_id}: {path}: {checked[path]}")
                continue
            try:
                sample = self._sample(m, path, size)
            except InvalidSample as e:
                self._report("invalid annotation", str(e))
                continue
            if self.drop_disagreeing and not sample.meta["geometry_agrees"]:
                self._report("geometry disagrees with label", f"{sample.id}: boxes say {sample.meta['geometry_relation']}")
                continue
            out.append(sample)
        self._samples = out
        return out

    def _sample(self, m: RowMatch, path: Path, size: tuple[int, int]) -> Sample:
        def box(ann):
            x, y, w, h = (float(v) for v in ann["bbox"])
            return {"x0": x, "y0": y, "x1": x + w, "y1": y + h}

        sample = make_sample(
            id=m.row.row_id,
            image=path,
            image_size=size,
            ref_name=m.row.object,
            ref_box=box(m.ref_ann),
            tgt_name=m.row.subject,
            tgt_box=box(m.tgt_ann),
            relation=m.relation,
            meta={},
        )
        geometry = relation_from_boxes(sample.ref_box, sample.tgt_box, self.agree_ratio)
        meta = {
            "vsr_split": m.row.split,
            "vsr_part": m.row.part,
            "line": m.row.line,
            "caption": m.row.caption,
            "vsr_relation": m.row.relation,
            "reference_frame": m.row.reference_frame,
            "image_id": int(m.image["id"]),
            "file_name": m.row.image,
            "split": m.row.coco_split,
            "ref_ann_id": int(m.ref_ann["id"]),
            "tgt_ann_id": int(m.tgt_ann["id"]),
            "ref_category_id": int(m.ref_ann["category_id"]),
            "tgt_category_id": int(m.tgt_ann["category_id"]),
            "instance_counts": dict(m.instance_counts),
            "geometry_relation": geometry,
            "geometry_agrees": geometry == m.relation,
        }
        return sample.model_copy(update={"meta": meta})

    def samples(self) -> Iterator[Sample]:
        yield from self._build()

    def describe(self) -> dict[str, Any]:
        samples = self._build()
        agree = sum(1 for s in samples if s.meta["geometry_agrees"])
        warnings = [
            f"{missing_annotation_message(Path(str(self.data_dir or '.')), s)} Rows of {s} images count as "
            f"'image not in the provided annotations'."
            for s in self.absent_annotations
        ]
        return {
            **super().describe(),
            "split": self.split,
            "part": self.part,
            "mapping": self.mapping,
            "instances": self.instances,
            "agree_ratio": self.agree_ratio,
            "drop_disagreeing": self.drop_disagreeing,
            "outcomes": dict(self.outcomes),
            "geometry_agrees": agree,
            "geometry_disagrees": len(samples) - agree,
            "annotation_files_absent": list(self.absent_annotations),
            "warnings": warnings,
            "skipped": dict(self.skipped),
            "problems": list(self.problems),
        }
