"""The model-randomisation sanity check (creg analyze randomize) on the tiny fake model; Spearman's rho."""

from __future__ import annotations

import pytest
import torch

from creg.explain.model_parts import AnalysisError
from creg.experiments.randomize import MAX_ABS_RHO, randomisation_steps, randomize
from creg.core.spearman import average_ranks, spearman
from creg.plugins.manager import get_plugins
from creg.config.run_config import RunConfig
from creg.config.resolve import build_benchmark, build_sources
from creg.testing.fake_vlm import FakeVLMAdapter

torch.set_num_threads(1)


def test_spearman_hand_computed():
    assert list(average_ranks([10, 20, 20, 5])) == [2.0, 3.5, 3.5, 1.0]
    # ranks (1,2,3,4) vs (1,3,2,4): d = (0,1,1,0), rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_steps_cascade_from_the_top_then_the_vision_tower():
    steps = randomisation_steps(3, True)
    assert [s[1] for s in steps] == [[2], [1, 2], [0, 1, 2], [0, 1, 2]] and [s[2] for s in steps] == [False] * 3 + [True]


def _setup(sources, n=3):
    plugins = get_plugins()
    cfg = RunConfig(adapter="none", sources=sources, n=n, bench_options={"width": 112, "height": 112})
    return build_sources(cfg, plugins, True), list(build_benchmark(cfg, plugins).samples())


def test_randomize_decorrelates_gradients_not_a_model_free_map_and_restores_weights():
    adapter = FakeVLMAdapter(patch_px=14, seed=2, num_layers=3)
    before = [p.clone() for p in adapter.model.parameters()]
    sources, samples = _setup(["gradnorm", "random_relevance"])
    out = randomize(adapter, sources, samples, seed=0)
    assert out["steps"] == ["block 2", "blocks 1..2", "blocks 0..2", "+ vision tower"]
    rr = out["sources"]["random_relevance"]
    assert rr["rho"] == pytest.approx([1.0] * 4) and rr["fails"]  # its maps ignore the model
    g = out["sources"]["gradnorm"]
    assert len(g["rho"]) == 4 and g["abs_rho"][-1] < MAX_ABS_RHO and not g["fails"]
    assert all(torch.equal(a, b) for a, b in zip(before, adapter.model.parameters()))  # weights restored


def test_an_adapter_without_model_parts_is_refused_in_one_line():
    class Undeclared(FakeVLMAdapter):
        def model_parts(self):
            return None

    sources, samples = _setup(["gradnorm"], n=1)
    with pytest.raises(AnalysisError, match="declares none"):
        randomize(Undeclared(patch_px=14), sources, samples)
