"""The Benchmark contract: where samples come from.

A benchmark yields :class:`creg.sample.Sample` objects. It must be deterministic: the same
files, options and seed give the same samples in the same order. Samples it had to skip (a
corrupt image, a bad annotation) are counted in :attr:`Benchmark.skipped` with a reason, never
silently dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterator

from .sample import Sample


class DataNotFound(FileNotFoundError):
    """A file the benchmark needs is missing; the message says which, where it comes from and where to put it."""


class Benchmark(ABC):
    """Base class of benchmarks. Options arrive as keyword arguments (``--bench-opt``)."""

    #: the name used on the command line.
    name: ClassVar[str] = ""
    #: short description shown by ``creg list``.
    description: ClassVar[str] = ""
    #: True if the benchmark needs ``--data-dir`` (or its environment variable).
    needs_data: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0, n: int | None = None, data_dir: Path | None = None, **options: Any):
        self.seed = seed
        self.n = n
        self.data_dir = data_dir
        if options:
            raise TypeError(f"benchmark {self.name!r} got unknown options {sorted(options)}")
        #: reason -> count of samples skipped while loading.
        self.skipped: Counter[str] = Counter()

    @abstractmethod
    def samples(self) -> Iterator[Sample]:
        """The benchmark's samples (at most ``n`` when ``n`` is set), deterministic for a seed."""

    def describe(self) -> dict[str, Any]:
        """Resolved options, written into the run directory's config."""
        return {"name": self.name, "seed": self.seed, "n": self.n,
                "data_dir": str(self.data_dir) if self.data_dir else None}
