"""The source contract must fail sources with the bugs it exists to catch (and pass a correct one)."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.relevance import GradientRequest, SourceRequest
from creg.sources.gradxact import GradXActSource, grad_times_act
from creg.sources.token_grid import token_relevance_maps
from creg.testing import FakeVLMAdapter, SourceContract, contract_samples


class UndeclaredGradient(GradXActSource):
    """Keeps layer -2 but does not declare the gradient it takes."""

    def request(self):
        return SourceRequest(layers=(self.layer,))


class TooFewMaps(GradXActSource):
    def explain(self, ctx):
        return super().explain(ctx)[:-1]


class Unseeded(GradXActSource):
    """Noise from the global generator instead of ctx.rng."""

    def explain(self, ctx):
        maps = super().explain(ctx)
        for m in maps:
            m.values = m.values + torch.rand(m.values.shape)
        return maps


class Signed(GradXActSource):
    """Forgets the |.| of Eq. 2."""

    def explain(self, ctx):
        grad = ctx.gradients(self.target, [self.layer])[self.layer]
        return token_relevance_maps(-grad_times_act(grad, ctx.output.hidden[self.layer]), ctx)


class RelevanceOffTheImage(GradXActSource):
    """Puts its mass on a cell centred outside the image."""

    def explain(self, ctx):
        maps = super().explain(ctx)
        for m in maps:
            m.cell_xy = m.cell_xy.clone()
            m.cell_xy[0, 0] = torch.tensor([-40.0, -40.0], dtype=m.cell_xy.dtype)
            m.values[0, 0] = 1.0
        return maps


class UsesWhateverLayersTheRunKept(GradXActSource):
    """Sums Grad x Act over every layer the gradient pass happens to hold: depends on the run."""

    def request(self):
        return SourceRequest(gradients=(GradientRequest(target="gt", layers=(-2, -3)),))

    def explain(self, ctx):
        layers = sorted(ctx.output.hidden)
        grads = ctx.gradients("gt", layers)
        total = sum(grad_times_act(grads[l], ctx.output.hidden[l]) for l in layers)
        return token_relevance_maps(total, ctx)


@pytest.fixture(scope="module")
def adapter():
    return FakeVLMAdapter(d=32, dv=16, heads=4, num_layers=5, seed=3)


@pytest.fixture(scope="module")
def samples():
    return contract_samples(SourceContract.image_sizes, SourceContract.batch_size)


def contract_for(cls):
    return type(f"Contract_{cls.__name__}", (SourceContract,), {"source_class": cls})()


CHECKS = ["test_one_map_per_sample_with_valid_shapes_and_values", "test_deterministic",
          "test_reads_only_what_it_requested", "test_independent_of_the_other_sources_in_the_run"]


def outcomes(cls, adapter, samples) -> dict[str, str]:
    contract = contract_for(cls)
    result = {}
    for name in CHECKS:
        try:
            getattr(contract, name)(cls(), samples, adapter)
            result[name] = "passed"
        except AssertionError:
            result[name] = "failed"
    return result


@pytest.mark.parametrize("broken, failing", [
    (UndeclaredGradient, {"test_reads_only_what_it_requested"}),
    (TooFewMaps, {"test_one_map_per_sample_with_valid_shapes_and_values"}),
    (Unseeded, {"test_deterministic", "test_independent_of_the_other_sources_in_the_run"}),
    (Signed, {"test_one_map_per_sample_with_valid_shapes_and_values"}),
    (RelevanceOffTheImage, {"test_one_map_per_sample_with_valid_shapes_and_values"}),
    (UsesWhateverLayersTheRunKept, {"test_independent_of_the_other_sources_in_the_run"}),
])
def test_each_broken_source_fails_exactly_its_check(broken, failing, adapter, samples):
    result = outcomes(broken, adapter, samples)
    assert {n for n, o in result.items() if o == "failed"} == failing, result


def test_the_real_source_passes(adapter, samples):
    assert set(outcomes(GradXActSource, adapter, samples).values()) == {"passed"}
