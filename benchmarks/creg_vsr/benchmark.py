"""The ``vsr`` benchmark: true VSR captions with a left/right/above/below relation, boxed from COCO."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from pydantic import Field

from creg.plugins.benchmark import Benchmark, DataNotFound
from creg.coco.annotations import annotation_path, image_folder, load_instances, missing_annotation_message, resolve_data_dir
from creg.core.images import image_problem
from creg.core.paths import UnsafePath, resolve_inside
from creg.plugins.options import Choice, PluginOptions
from creg.core.sample import InvalidSample, Sample, make_sample, relation_from_boxes

from .matching import CocoInstances, RowMatch, match_row
from .relations import creg_relation
from .rows import VsrRow, load_rows

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

    Options: see :class:`VsrBenchmark.Options`. ``n``: all matched rows in file order
    when unset; otherwise a seeded subset, in seeded order (the subset for n is a prefix of the
    subset for a larger n).
    """

    name = "vsr"
    needs_data = True

    class Options(PluginOptions):
        split: Choice("random", "zeroshot") = Field("random", description="VSR split")
        part: Choice("test", "dev", "train") = Field("test", description="part of the split")
        mapping: Choice("strict", "paper") = Field(
            "strict", description="which VSR relations count as directions (creg_vsr.relations)")
        instances: Choice("largest", "unique") = Field(
            "largest", description="which instance a category name means (creg_vsr.matching)")
        agree_ratio: float = Field(1.0, ge=1.0, allow_inf_nan=False,
                                   description="the boxes agree with the label when the dominant axis wins by this factor")
        drop_disagreeing: bool = Field(False, description="drop rows whose boxes disagree with the label (default: keep, flag)")

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        o = self.options
        self.split, self.part, self.mapping, self.instances = o.split, o.part, o.mapping, o.instances
        self.agree_ratio, self.drop_disagreeing = o.agree_ratio, o.drop_disagreeing
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
        for index in coco.indexes.values():  # malformed entries of the annotation files
            for reason, count in index.skipped.items():
                self.skipped[reason] += count
            self.problems.extend(index.problems[: max(0, MAX_PROBLEMS_KEPT - len(self.problems))])
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
            try:
                path = resolve_inside(folders[split], m.row.image)
            except UnsafePath as e:
                self._report("image path outside the data folder", f"{m.row.row_id}: {e}")
                continue
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

    def expected_count(self) -> int | None:
        """``n``, else the directional label-1 rows of the split file (an upper bound; nothing is matched yet)."""
        if self.n is not None:
            return self.n
        return sum(1 for r in load_rows(self.split, self.part) if r.label == 1 and creg_relation(r.relation, self.mapping))

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
