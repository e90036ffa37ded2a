"""The Benchmark contract: where samples come from.

A benchmark yields :class:`creg.core.sample.Sample` objects. It must be deterministic: the same
files, options and seed give the same samples in the same order. Samples it had to skip (a
corrupt image, a bad annotation) are counted in :attr:`Benchmark.skipped` with a reason, never
silently dropped.

Options: a benchmark declares ``class Options(PluginOptions)`` (:mod:`creg.plugins.options`); the values of
``--bench-opt`` are validated against it before anything runs and are available as
``self.options``. Samples are yielded lazily: a run holds one batch at a time, so memory does not
grow with ``n``; :meth:`Benchmark.expected_count` gives the progress bar its total cheaply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterator

from creg.core.blank import uniform_blank
from creg.core.sample import Sample
from creg.plugins.options import OptionsError, PluginOptions, validate_options


class DataNotFound(FileNotFoundError):
    """A file the benchmark needs is missing; the message says which, where it comes from and where to put it."""


class DataInvalid(ValueError):
    """A data file exists but is not what the benchmark reads (not JSON, a list instead of an object); the message says which and why."""


class Benchmark(ABC):
    """Base class of benchmarks. Options arrive as keyword arguments (``--bench-opt``) and are
    validated against :attr:`Options` into :attr:`options`."""

    #: the benchmark's options (``--bench-opt KEY=VALUE``); subclasses declare their own.
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    #: the largest ``n`` accepted (a bound, so that a typo cannot ask for 10**12 samples).
    max_n: ClassVar[int] = 10_000_000

    #: the name used on the command line.
    name: ClassVar[str] = ""
    #: short description shown by ``creg list``; give it at registration (``register(..., description=...)``),
    #: which sets it here when the class is loaded (a class may instead declare its own).
    description: ClassVar[str] = ""
    #: True if the benchmark needs ``--data-dir`` (or its environment variable).
    needs_data: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0, n: int | None = None, data_dir: Path | None = None, **options: Any):
        if isinstance(n, str) and n.strip().isdigit():  # from a text source (an env var, a notebook widget)
            n = int(n)
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= self.max_n:
                raise OptionsError(f"benchmark {self.name!r}: n (--limit) must be an integer from 0 to {self.max_n}, got {n!r}")
        self.seed = seed
        self.n = n
        self.data_dir = data_dir
        #: the validated options (an instance of :attr:`Options`).
        self.options = validate_options("benchmark", self.name, type(self), options)
        #: reason -> count of samples skipped while loading.
        self.skipped: Counter[str] = Counter()

    @abstractmethod
    def samples(self) -> Iterator[Sample]:
        """The benchmark's samples (at most ``n`` when ``n`` is set), deterministic for a seed."""

    def expected_count(self) -> int | None:
        """How many samples :meth:`samples` will yield at most, without building them (None: unknown).

        The runner uses it for the progress bar's total; the default is ``n``.
        """
        return self.n

    def blank_sample(self, sample: Sample) -> Sample:
        """``sample`` with its objects removed: same id, names, boxes and relation, for the blank-image
        control (``creg run --control blank``, :mod:`creg.execution.blank_control`).

        The default is a uniform image of the same size in the image's mean colour (any benchmark
        of real photos); a benchmark that draws its scenes overrides it to draw the scene without
        its objects."""

        return uniform_blank(sample)

    def describe(self) -> dict[str, Any]:
        """Resolved options, written into the run directory's config."""
        return {"name": self.name, "seed": self.seed, "n": self.n,
                "data_dir": str(self.data_dir) if self.data_dir else None, **self.options.model_dump(mode="json")}


class DerivedBenchmark(Benchmark):
    """Another benchmark's samples, each changed by :meth:`derive` (same ids, so that records pair
    with the original run's): the blank-image control and the flip re-run. ``marker``: the key set
    to True in :meth:`describe`."""

    marker: ClassVar[str]

    def __init__(self, inner: Benchmark):
        super().__init__(seed=inner.seed, n=inner.n, data_dir=inner.data_dir)
        self.inner = inner
        self.skipped = inner.skipped

    @abstractmethod
    def derive(self, sample: Sample) -> Sample:
        """The changed sample (same id)."""

    def samples(self) -> Iterator[Sample]:
        for s in self.inner.samples():
            yield self.derive(s)

    def expected_count(self) -> int | None:
        return self.inner.expected_count()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), self.marker: True}

