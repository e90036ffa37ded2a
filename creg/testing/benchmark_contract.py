"""The contract tests every :class:`~creg.plugins.benchmark.Benchmark` must pass, as one base class.

A third-party benchmark package runs them by subclassing :class:`BenchmarkContract` and providing
a ``make_benchmark`` fixture (a function of ``seed``, ``n`` and options that builds the
benchmark on test data)::

    import pytest
    from creg.testing import BenchmarkContract
    from my_pkg.benchmark import MyBenchmark

    class TestMyBenchmark(BenchmarkContract):
        expected_skipped = {"unreadable image": 1}   # what the test data is known to contain

        @pytest.fixture(scope="class")
        @classmethod
        def make_benchmark(cls, tmp_path_factory):
            root = write_my_test_data(tmp_path_factory.mktemp("data"))
            return lambda **kw: MyBenchmark(data_dir=root, **kw)

What is checked: name and description; unknown options refused; determinism (two instances
with the same seed and options yield the same samples, images included, in the same order);
``n`` honoured; ``samples()`` is an iterator (samples are produced lazily); every sample is
valid (image readable at ``image_size``, boxes on the image, relation consistent with the
option index, unique ids); skip accounting (``skipped`` maps reasons to positive counts, is the
same for equal instances, and equals ``expected_skipped`` when the class declares it); and
``describe()`` is JSON-serialisable with the name, seed and n.
"""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar

import numpy as np
import pytest

from creg.core.sample import RELATIONS, Sample
from creg.plugins.benchmark import Benchmark


def _signature(s: Sample, with_pixels: bool) -> tuple:
    fields = (s.id, s.relation, s.option, tuple(s.image_size), s.ref_name, s.tgt_name,
              s.ref_box.model_dump_json(), s.tgt_box.model_dump_json())
    if not with_pixels:
        return fields
    return (*fields, np.asarray(s.load_image().convert("RGB")).tobytes())


class BenchmarkContract:
    """Combined contract tests for a :class:`~creg.plugins.benchmark.Benchmark`.

    Provide ``make_benchmark``; set ``n`` to how many samples the tests draw, and declare what
    the test data is known to contain with ``expected_skipped`` (None: not checked).
    """

    #: how many samples the tests ask for (the test data must hold at least this many).
    n: ClassVar[int] = 8
    #: reason -> count the benchmark must report after a full pass over the test data with
    #: default options (None: the counts are only checked for consistency).
    expected_skipped: ClassVar[dict[str, int] | None] = None
    #: another seed gives another selection or order (False for a fixed list such as a split).
    seed_changes_samples: ClassVar[bool] = True
    #: how many samples' images are compared pixel for pixel in the determinism test.
    pixel_checks: ClassVar[int] = 3
    #: ``n`` of the full pass that counts skips (None: the benchmark's default, all its data).
    skip_pass_n: ClassVar[int | None] = None

    @pytest.fixture
    def make_benchmark(self) -> Callable[..., Benchmark]:
        """Provide ``f(seed=..., n=..., **options) -> Benchmark`` on your test data."""
        raise NotImplementedError(f"{type(self).__name__} must provide a `make_benchmark` fixture")

    def _ids(self, bench: Benchmark) -> list[str]:
        return [s.id for s in bench.samples()]

    def test_has_name_and_description(self, make_benchmark):
        bench = make_benchmark(seed=0, n=self.n)
        assert bench.name
        assert bench.description, (f"{type(bench).__name__} needs a description (shown by creg list): give it at "
                                   "registration and make the benchmark from get_plugins().load('benchmark', NAME), "
                                   "or declare it on the class")

    def test_unknown_option_is_refused(self, make_benchmark):
        with pytest.raises((TypeError, ValueError)):
            make_benchmark(seed=0, n=self.n, no_such_option_xyz=1)

    def test_samples_are_produced_lazily(self, make_benchmark):
        it = make_benchmark(seed=0, n=self.n).samples()
        assert iter(it) is it, "samples() must return an iterator (a generator), not a list"
        assert isinstance(next(it), Sample)

    def test_deterministic(self, make_benchmark):
        a = list(make_benchmark(seed=3, n=self.n).samples())
        b = list(make_benchmark(seed=3, n=self.n).samples())
        assert [_signature(s, i < self.pixel_checks) for i, s in enumerate(a)] == \
               [_signature(s, i < self.pixel_checks) for i, s in enumerate(b)]

    def test_seed_matters_when_declared(self, make_benchmark):
        a, b = self._ids(make_benchmark(seed=1, n=self.n)), self._ids(make_benchmark(seed=2, n=self.n))
        assert (a != b) == self.seed_changes_samples

    def test_n_is_honoured(self, make_benchmark):
        assert len(self._ids(make_benchmark(seed=0, n=self.n))) == self.n
        assert len(self._ids(make_benchmark(seed=0, n=1))) == 1

    def test_samples_are_valid(self, make_benchmark):
        samples = list(make_benchmark(seed=0, n=self.n).samples())
        assert len({s.id for s in samples}) == len(samples), "sample ids must be unique"
        for s in samples:
            w, h = s.image_size
            assert tuple(s.load_image().size) == (w, h), f"{s.id}: image size differs from image_size"
            for box in (s.ref_box, s.tgt_box):
                assert 0 <= box.x0 < box.x1 <= w and 0 <= box.y0 < box.y1 <= h, f"{s.id}: box off the image"
            assert s.relation in RELATIONS and RELATIONS[s.option] == s.relation

    def test_skips_are_accounted(self, make_benchmark):
        a, b = make_benchmark(seed=0, n=self.skip_pass_n), make_benchmark(seed=0, n=self.skip_pass_n)
        ids_a, ids_b = self._ids(a), self._ids(b)
        assert ids_a == ids_b
        skipped = dict(a.skipped)
        assert all(isinstance(k, str) and k and isinstance(v, int) and v > 0 for k, v in skipped.items()), skipped
        assert skipped == dict(b.skipped), "equal benchmarks must report equal skips"
        if self.expected_skipped is not None:
            assert skipped == self.expected_skipped

    def test_describe_is_json(self, make_benchmark):
        bench = make_benchmark(seed=4, n=self.n)
        list(bench.samples())
        info: dict[str, Any] = json.loads(json.dumps(bench.describe()))
        assert info["name"] == bench.name and info["seed"] == 4 and info["n"] == self.n
