"""The ``pairs`` benchmark: your own (image, A, B, relation) rows as samples.

``creg run --bench pairs --bench-opt file=rows.csv [--bench-opt image_root=DIR] [--bench-opt box_format=xywh]``
or ``creg explain --from rows.csv``. Samples come in the file's order (``--limit`` takes the first
rows; the seed plays no part). Nothing is dropped silently: a row that cannot be used is counted in
``skipped`` by reason with a message naming the row (``describe()["problems"]``, the run's warnings):

* ``invalid row`` -- a missing field, a box that is not four numbers or not a box in the declared
  format (the message says when the numbers fit ``x, y, w, h``), a relation that is not one of the four;
* ``image path outside the image root`` -- ``..`` or an absolute path elsewhere;
* ``missing image file`` / ``unreadable image`` / ``image too large`` -- the file (:mod:`creg.core.images`);
* ``relation contradicts the boxes`` -- :mod:`creg.core.relation_check`; skipped unless
  ``contradicting=keep`` (then kept with ``meta["contradicts"]``);
* ``duplicate id``.

An image URL is refused for the whole file (creg reads local files only; there is no network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import Field, ValidationError

from creg.plugins.benchmark import Benchmark
from creg.core.box_formats import BOX_FORMATS, BoxFormatError, to_xyxy, xywh_hint
from creg.core.images import image_problem
from creg.core.paths import UnsafePath, resolve_inside
from creg.plugins.options import Choice, PluginOptions
from creg.core.relation_check import boxes_say, contradiction
from creg.core.sample import RELATIONS, Box, InvalidSample, Sample, make_sample

from .rows import PairRow, read_rows

#: how many problem messages describe() keeps (the counts in ``skipped`` are complete).
MAX_PROBLEMS_KEPT = 20
CONTRADICTS = "relation contradicts the boxes"


class PairsBenchmark(Benchmark):
    """Rows of a CSV, JSONL or Parquet file (:mod:`creg_pairs.rows`), each one question about one image."""

    name = "pairs"

    class Options(PluginOptions):
        file: str = Field(description="the rows: a .csv, .jsonl or .parquet file (columns: image, ref, ref_box, "
                                      "tgt, tgt_box, optional relation and id)")
        image_root: str | None = Field(None, description="folder the image paths are relative to, and that they "
                                                         "must stay in (default: the file's folder)")
        box_format: Choice(*BOX_FORMATS) = Field("xyxy", description="layout of the four box numbers: x0,y0,x1,y1 "
                                                                     "| x,y,w,h (COCO) | cx,cy,w,h, in pixels")
        contradicting: Choice("skip", "keep") = Field(
            "skip", description="a row whose relation contradicts its boxes: skip it (counted) or keep it, flagged")

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.file = Path(self.options.file).expanduser()
        self.image_root = Path(self.options.image_root).expanduser() if self.options.image_root else self.file.parent
        self.box_format = self.options.box_format
        self.problems: list[str] = []
        self.contradicting = 0
        self._samples: list[Sample] | None = None

    def _report(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(f"{self.file.name}: {message}")

    def _image(self, value: str) -> Path:
        root = self.image_root.resolve()
        if Path(value).is_absolute():
            path = Path(value).resolve()
            if not path.is_relative_to(root):
                raise UnsafePath(f"absolute path outside the image root {root}: {value!r}")
            return path
        return resolve_inside(root, value)

    def _sample(self, row: PairRow, seen: set[str]) -> Sample | None:
        f = row.fields
        where = f"row {row.number}"
        sid = str(f.get("id") or f"row{row.number}")
        if sid in seen:
            self._report("duplicate id", f"{where}: id {sid[:100]!r} is used by an earlier row")
            return None
        relation = str(f.get("relation") or "").strip().lower() or None
        if relation is not None and relation not in RELATIONS:
            self._report("invalid row", f"{where}: relation {relation[:40]!r} is not one of {', '.join(RELATIONS)}")
            return None
        try:
            path = self._image(str(f["image"]))
        except UnsafePath as e:
            self._report("image path outside the image root", f"{where}: {e}")
            return None
        problem = image_problem(path)
        if problem:
            self._report(problem, f"{where}: {path}: {problem}")
            return None
        from PIL import Image

        with Image.open(path) as im:
            size = im.size
        boxes: dict[str, Box] = {}
        for who in ("ref", "tgt"):
            raw = f[f"{who}_box"]
            hint = xywh_hint(raw, self.box_format, size, flag="box_format=xywh")
            try:
                x0, y0, x1, y1 = to_xyxy(raw, self.box_format)
                boxes[who] = Box(x0=x0, y0=y0, x1=x1, y1=y1)
            except ValidationError as e:  # the box's own rule, e.g. "x0 must be < x1"
                msg = str(e.errors()[0]["msg"]).removeprefix("Value error, ")
                self._report("invalid row", f"{where}: {who}_box {raw} ({self.box_format}): {msg}{hint}")
                return None
            except BoxFormatError as e:
                msg = str(e)
                self._report("invalid row", f"{where}: {who}_box {raw} ({self.box_format}): {msg}{hint}")
                return None
        given = relation is not None
        if relation is None:
            relation = boxes_say(boxes["ref"], boxes["tgt"])
        meta: dict[str, Any] = {"row": row.number, "relation_given": given, "box_format": self.box_format}
        if given:
            why = contradiction(boxes["ref"], boxes["tgt"], relation)
            if why:
                self.contradicting += 1
                hint = ""
                if self.box_format == "xyxy" and all(xywh_hint(f[f"{w}_box"], "xyxy", size) for w in ("ref", "tgt")):
                    alt = [Box(**dict(zip(("x0", "y0", "x1", "y1"), to_xyxy(f[f"{w}_box"], "xywh")))) for w in ("ref", "tgt")]
                    if contradiction(alt[0], alt[1], relation) is None:
                        hint = "; read as x, y, w, h (box_format=xywh) the boxes agree with it"
                if self.options.contradicting == "skip":
                    self._report(CONTRADICTS, f"{where}: {why}{hint}")
                    return None
                if len(self.problems) < MAX_PROBLEMS_KEPT:
                    self.problems.append(f"{self.file.name}: {where}: {why}{hint} (kept: contradicting=keep)")
                meta["contradicts"] = why
        try:
            sample = make_sample(id=sid, image=path, image_size=size, ref_name=str(f["ref"]), ref_box=boxes["ref"],
                                 tgt_name=str(f["tgt"]), tgt_box=boxes["tgt"], relation=relation, meta=meta)
        except InvalidSample as e:
            hint = next((xywh_hint(f[f"{w}_box"], self.box_format, size, flag="box_format=xywh")
                         for w in ("ref", "tgt") if f"{w}_box" in str(e)), "")
            self._report("invalid row", f"{where}: {e}{hint}")
            return None
        seen.add(sid)
        return sample

    def _build(self) -> list[Sample]:
        if self._samples is not None:
            return self._samples
        out: list[Sample] = []
        seen: set[str] = set()
        for row in read_rows(self.file):
            if self.n is not None and len(out) >= self.n:
                break
            if row.problem:
                self._report("invalid row", row.problem)
                continue
            sample = self._sample(row, seen)
            if sample is not None:
                out.append(sample)
        self._samples = out
        return out

    def samples(self) -> Iterator[Sample]:
        yield from self._build()

    def expected_count(self) -> int | None:
        return len(self._build())

    def describe(self) -> dict[str, Any]:
        samples = self._build()
        per_class = {r: sum(1 for s in samples if s.relation == r) for r in RELATIONS}
        warnings = []
        if self.skipped and self.problems:  # the counts are in the run's skipped warning
            warnings.append(f"first unused row: {self.problems[0][:300]}")
        if self.contradicting and self.options.contradicting == "keep":
            warnings.append(f"{self.contradicting} row(s) kept although their relation contradicts their boxes "
                            "(meta.contradicts): their VLM accuracy is scored against the stated relation, DAE against the boxes")
        return {
            **super().describe(),
            "file": str(self.file),
            "image_root": str(self.image_root),
            "box_format": self.box_format,
            "per_class": per_class,
            "rows_used": len(samples),
            "warnings": warnings,
            "skipped": dict(self.skipped),
            "problems": list(self.problems),
        }
