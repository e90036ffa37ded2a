"""The blank-image control: each sample again with its objects removed, same names and boxes.

A source that points the right way on scenes but the same way on blank images reads a position
prior (where the question's tokens sit, which image tokens come first), not the objects. The
control runs the run's configuration on blank copies of its samples into the nested run
directory ``RUN_DIR/blank`` (its own ``records.jsonl``, resumable like any run, never mixed into
the run's own metrics); :mod:`creg.summary.prior` compares the two.

What a blank is belongs to the benchmark: :meth:`creg.plugins.benchmark.Benchmark.blank_sample`. The
synthetic benchmark draws the empty canvas; the default (every image benchmark) is a uniform
image of the same size in the image's mean colour (:func:`uniform_blank`).
"""

from __future__ import annotations

from typing import Callable

from creg.core.sample import Sample
from creg.plugins.benchmark import DerivedBenchmark
from creg.summary.prior import BLANK_DIR


class BlankBenchmark(DerivedBenchmark):
    """Another benchmark's samples with their objects removed (same ids, for pairing)."""

    name = "blank"
    marker = "blank"
    description = "another benchmark's samples with the objects removed (the blank-image control)"

    def derive(self, sample: Sample) -> Sample:
        return self.inner.blank_sample(sample)


def run_blank(runner, *, log: Callable[[str], None] | None = None):
    """Run ``runner``'s configuration (no COS, no controls) on blank samples into ``OUT/blank``,
    sharing its loaded model; resumable. Returns the nested run's :class:`creg.execution.runner.RunResult`."""
    config = runner.config.model_copy(update={"cos": False, "controls": []})
    sub = type(runner)(config, runner.out / BLANK_DIR, plugins=runner.plugins, adapter=runner.adapter,
                 progress=runner.progress, log=log or runner.log)
    sub.benchmark = BlankBenchmark(runner.benchmark)
    sub.sources = runner.sources  # the same source objects: layers=auto stays as resolved for the run
    return sub.run()
