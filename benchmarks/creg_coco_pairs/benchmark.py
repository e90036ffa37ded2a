"""The ``coco_pairs`` benchmark: balanced direction questions built from COCO 2017 instance boxes."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator

from pydantic import Field

from creg.plugins.benchmark import Benchmark
from creg.coco.annotations import image_folder, load_instances, resolve_data_dir
from creg.core.images import image_problem
from creg.core.paths import UnsafePath, resolve_inside
from creg.plugins.options import Choice, PluginOptions
from creg.core.sample import RELATIONS, InvalidSample, Sample, make_sample

from .pairs import Candidate, PairRules, candidates_by_relation
from .selection import Selection, select_balanced

#: how many problem messages describe() keeps (the counts in ``skipped`` are complete).
MAX_PROBLEMS_KEPT = 20


class CocoPairsBenchmark(Benchmark):
    """Pairs of different-category COCO objects, B clearly left/right/above/below A (paper §5.1).

    Options: see :class:`CocoPairsBenchmark.Options`. ``n`` defaults to 300 (75 per class). Names are COCO category names. See
    :mod:`creg_coco_pairs.pairs` for the candidate rules and :mod:`creg_coco_pairs.selection`
    for the seeded balanced choice; docs/benchmarks.md for the whole description.
    """

    name = "coco_pairs"
    needs_data = True

    class Options(PluginOptions):
        split: Choice("val2017", "train2017") = Field("val2017", description="COCO 2017 split")
        min_ratio: float = Field(1.5, ge=1.0, allow_inf_nan=False,
                                 description="dominant-axis displacement over the other axis's, at least")
        min_area: float = Field(0.01, ge=0.0, le=1.0, description="smallest box area, as a fraction of the image area")
        instances: Choice("unique", "largest", "all") = Field(
            "unique", description="which instances of a category take part (docs/benchmarks.md)")
        max_per_image: int = Field(1, ge=0, description="pairs per image at most (0: no limit)")

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        if self.n is None:
            self.n = 300
        self.split = self.options.split
        self.rules = PairRules(min_ratio=self.options.min_ratio, min_area=self.options.min_area,
                               instances=self.options.instances)
        self.max_per_image = self.options.max_per_image
        self.problems: list[str] = []
        self._selection: Selection[Sample] | None = None

    # -- building --------------------------------------------------------------------------
    def _select(self) -> Selection[Sample]:
        if self._selection is not None:
            return self._selection
        root = resolve_data_dir(self.data_dir, self.name)
        coco = load_instances(root, self.split)
        for reason, count in coco.skipped.items():  # malformed entries of the annotation file
            self.skipped[reason] += count
        self.problems.extend(coco.problems[: MAX_PROBLEMS_KEPT])
        folder = image_folder(root, self.split)
        categories = dict(coco.categories)
        image_problems: dict[str, str | None] = {}

        def build(cand: Candidate) -> Sample | None:
            if cand.file_name not in image_problems:
                try:
                    problem = image_problem(resolve_inside(folder, cand.file_name), cand.image_size)
                except UnsafePath:
                    problem = "image path outside the data folder"
                image_problems[cand.file_name] = problem
                if problem:  # counted once per image, however many of its pairs are tried
                    self._report(problem, f"{folder / cand.file_name}: {problem}")
            if image_problems[cand.file_name]:
                return None
            try:
                return self._sample(cand, folder, categories)
            except InvalidSample as e:
                self._report("invalid annotation", str(e))
                return None

        self._selection = select_balanced(
            candidates_by_relation(coco, self.rules), self.n, self.seed, self.max_per_image, build
        )
        return self._selection

    def _report(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(message)

    def _sample(self, cand: Candidate, folder, categories: dict[int, str]) -> Sample:
        def box(xywh):
            x, y, w, h = xywh
            return {"x0": x, "y0": y, "x1": x + w, "y1": y + h}

        return make_sample(
            id=f"coco_pairs-{self.split}-{cand.image_id}-{cand.ref_ann_id}-{cand.tgt_ann_id}",
            image=resolve_inside(folder, cand.file_name),
            image_size=cand.image_size,
            ref_name=categories[cand.ref_category_id],
            ref_box=box(cand.ref_xywh),
            tgt_name=categories[cand.tgt_category_id],
            tgt_box=box(cand.tgt_xywh),
            relation=cand.relation,
            meta={
                "image_id": cand.image_id,
                "file_name": cand.file_name,
                "split": self.split,
                "ref_ann_id": cand.ref_ann_id,
                "tgt_ann_id": cand.tgt_ann_id,
                "ref_category_id": cand.ref_category_id,
                "tgt_category_id": cand.tgt_category_id,
            },
        )

    # -- contract --------------------------------------------------------------------------
    def samples(self) -> Iterator[Sample]:
        yield from self._select().chosen

    def expected_count(self) -> int | None:
        return self.n

    def describe(self) -> dict[str, Any]:
        selection = self._select()
        warnings = [
            f"class {r!r}: only {selection.quotas[r] - short} of {selection.quotas[r]} requested "
            f"({selection.available[r]} ordered candidates, both orders of a pair counted, before the per-image limit and image/annotation checks)"
            for r, short in selection.shortfall.items()
        ]
        return {
            **super().describe(),
            "split": self.split,
            "min_ratio": self.rules.min_ratio,
            "min_area": self.rules.min_area,
            "instances": self.rules.instances,
            "max_per_image": self.max_per_image,
            "per_class": {r: selection.per_class[r] for r in RELATIONS},
            "candidates": dict(selection.available),
            "shortfall": selection.shortfall,
            "warnings": warnings,
            "skipped": dict(Counter(self.skipped)),
            "problems": list(self.problems),
        }
