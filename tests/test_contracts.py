"""creg.testing's contract suites run against every first-party source and benchmark.

Sources run on the fake VLM (creg.testing.fake_vlm); benchmarks on generated data: synthetic
scenes, a generated COCO folder (with a corrupt image and bad boxes) for coco_pairs, and the
VSR fixture folder (an invalid annotation and an unreadable image) for vsr.
"""

from __future__ import annotations

import pytest

from coco_fixtures import edge_case_images, pair_scenes, write_coco_folder
from creg.plugins.manager import get_plugins
from creg.testing import BenchmarkContract, SourceContract

FIRST_PARTY_SOURCES = ["oracle", "random", "random_relevance", "creg", "creg_gt", "gradxact", "gradnorm", "gradcam",
                       "integrated_gradients", "attention_rollout", "target_box", "random_ref"]

for _name in FIRST_PARTY_SOURCES:
    _cls = f"TestSourceContract_{_name}"
    globals()[_cls] = type(_cls, (SourceContract,), {"source_class": get_plugins().load("source", _name)})


def test_every_first_party_source_runs_the_contract():
    first_party = {n for n in get_plugins().names("source")
                   if get_plugins().load("source", n).__module__.startswith("creg.sources.")}
    assert first_party == set(FIRST_PARTY_SOURCES)


class TestBenchmarkContract_synthetic(BenchmarkContract):
    expected_skipped = {}
    skip_pass_n = 24

    @pytest.fixture(scope="class")
    @classmethod
    def make_benchmark(cls):
        bench = get_plugins().load("benchmark", "synthetic")
        return lambda **kw: bench(**kw)


class TestBenchmarkContract_coco_pairs(BenchmarkContract):
    # the corrupt image once; zero-width truck and out-of-image orange in both orders (tests/coco_fixtures.py)
    expected_skipped = {"unreadable image": 1, "invalid annotation": 4}

    @pytest.fixture(scope="class")
    @classmethod
    def make_benchmark(cls, tmp_path_factory):
        root = write_coco_folder(tmp_path_factory.mktemp("coco_contract"), pair_scenes(12, 12) + list(edge_case_images().values()))
        bench = get_plugins().load("benchmark", "coco_pairs")
        return lambda **kw: bench(data_dir=root, **{"max_per_image": 0, **kw})


class TestBenchmarkContract_vsr(BenchmarkContract):
    n = 3
    expected_skipped = {"invalid annotation": 1, "unreadable image": 1}

    @pytest.fixture(scope="class")
    @classmethod
    def make_benchmark(cls, tmp_path_factory):
        from test_vsr import vsr_fixture_images

        root = write_coco_folder(tmp_path_factory.mktemp("vsr_contract"), vsr_fixture_images())
        bench = get_plugins().load("benchmark", "vsr")
        return lambda **kw: bench(data_dir=root, **kw)
