"""The per-batch context plans its passes from the sources' requests (creg/explain/context.py)."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import ForwardRequest
from creg.explain.context import ExplainContext
from creg.plugins.relevance import GradientRequest, RelevanceSource, SourceRequest
from creg.sources.gradxact import GradXActSource
from creg.sources.token_grid import token_relevance_maps
from creg.testing.fake_vlm import FakeVLMAdapter
from creg_synthetic.scenes import scene_sample


@pytest.fixture(scope="module")
def adapter():
    return FakeVLMAdapter(d=32, dv=16, heads=4, num_layers=5, seed=3)


@pytest.fixture(scope="module")
def samples():
    return [scene_sample(0, i, (224, 160)) for i in range(2)]


class OldStyleSource(RelevanceSource):
    """A 0.1 source: its request is a bare ForwardRequest and it declares no gradients."""

    name = "old_style"
    description = "0.1-style source"

    def request(self):
        return ForwardRequest(layers=(-3,))

    def explain(self, ctx):
        return token_relevance_maps(ctx.gradients("gt", [-3])[-3].norm(dim=-1), ctx)


def test_union_merges_gradients_per_target():
    a = SourceRequest(gradients=(GradientRequest(target="gt", layers=(-2,)),))
    b = SourceRequest(gradients=(GradientRequest(target="gt", layers=(-3,), vision=True),
                                 GradientRequest(target="pred_contrastive", layers=(-2, -5))), attentions=True)
    u = SourceRequest.union([a, b, ForwardRequest(layers=(-4,))])
    assert u.gradients == (GradientRequest(target="gt", layers=(-3, -2), vision=True),
                           GradientRequest(target="pred_contrastive", layers=(-5, -2)))
    assert u.layers == (-4,) and u.attentions
    fwd = u.forward_request()
    assert fwd.layers == (-5, -4, -3, -2) and fwd.vision_activations and not fwd.attentions


def test_one_backward_per_declared_target_covers_every_declared_layer(adapter, samples):
    request = SourceRequest(gradients=(GradientRequest(target="gt", layers=(-2, -4)),
                                       GradientRequest(target="pred", layers=(-3,))))
    ctx = ExplainContext(samples, adapter, request)
    ctx.gradients("gt", [-2])
    ctx.gradients("gt", [-4])
    ctx.gradients("pred", [-3])
    assert ctx.backward_passes == 2
    assert set(ctx._grads["gt"]) == {-2, -4}  # planned together, not the other target's layer


def test_an_undeclared_gradient_costs_one_more_backward_and_is_exact(adapter, samples):
    ctx = ExplainContext(samples, adapter, SourceRequest(layers=(-2, -3)))
    g = ctx.gradients("gt", [-2])[-2]
    assert ctx.backward_passes == 1
    out = adapter.forward(samples, ForwardRequest(layers=(-2,)))
    z = out.class_logits.gather(1, torch.tensor([[s.option] for s in samples])).sum()
    (ref,) = torch.autograd.grad(z, [out.hidden[-2]])
    assert torch.equal(g, ref)


def test_a_0_1_source_with_a_forward_request_still_works(adapter, samples):
    src = OldStyleSource()
    ctx = ExplainContext.for_sources(samples, adapter, [src])
    maps = src.explain(ctx)
    assert len(maps) == 2 and all(m.values.sum() > 0 for m in maps)


class KernelSwitchingFake(FakeVLMAdapter):
    """As an adapter that must switch kernels to expose attention maps (Qwen2-VL: eager)."""

    attentions_preserve_numerics = False


class Reader:
    def __init__(self):
        self.layers = []

    def update(self, i, attn):
        assert not attn.requires_grad
        self.layers.append(i)


class Attn(RelevanceSource):
    name = "attn"

    def request(self):
        return SourceRequest(attentions=True)

    def attention_reader(self):
        return Reader()

    def explain(self, ctx):
        return ctx.attention_reader(self)


def test_attention_pass_is_separate_no_grad_and_shared(samples, monkeypatch):
    adapter = KernelSwitchingFake(d=32, dv=16, heads=4, num_layers=5, seed=3)
    a, b = Attn(), Attn()
    calls = []
    real = adapter.forward
    monkeypatch.setattr(adapter, "forward", lambda s, r=ForwardRequest(), **k:
                        calls.append((r, torch.is_grad_enabled())) or real(s, r, **k))
    ctx = ExplainContext.for_sources(samples, adapter, [a, b, GradXActSource()])
    ra, rb = a.explain(ctx), b.explain(ctx)
    assert ra is not rb and ra.layers == rb.layers == list(range(adapter.num_layers))
    # gradxact reads its gradients at the vision tokens only: the text before the image may leave the graph
    assert calls == [(ForwardRequest(layers=(-2,), gradients_before_image=False), True), (ForwardRequest(attentions=True), False)]
    assert ctx.attention_passes == 1


def test_an_adapter_that_keeps_numerics_streams_attention_in_the_gradient_pass(adapter, samples, monkeypatch):
    a, b = Attn(), Attn()
    calls = []
    real = adapter.forward
    monkeypatch.setattr(adapter, "forward", lambda s, r=ForwardRequest(), **k: calls.append(r) or real(s, r, **k))
    ctx = ExplainContext.for_sources(samples, adapter, [a, GradXActSource(), b])
    ra, rb = a.explain(ctx), b.explain(ctx)
    assert ra.layers == rb.layers == list(range(adapter.num_layers))
    assert calls == [ForwardRequest(layers=(-2,), attentions=True, gradients_before_image=False)]
    assert ctx.output is ctx.attention_output


def test_a_source_that_requests_attentions_without_a_reader_fails_clearly(adapter, samples):
    class NoReader(RelevanceSource):
        name = "no_reader"

        def request(self):
            return SourceRequest(attentions=True)

        def explain(self, ctx):
            return ctx.attention_reader(self)

    src = NoReader()
    with pytest.raises(NotImplementedError, match="attention_reader"):
        src.explain(ExplainContext.for_sources(samples, adapter, [src]))


def test_release_frees_the_graph_and_a_later_read_runs_the_pass_again(adapter, samples):
    import gc
    import weakref

    src = GradXActSource()
    ctx = ExplainContext.for_sources(samples, adapter, [src])
    first = src.explain(ctx)
    hidden = weakref.ref(ctx.output.hidden[-2])
    ctx.release()
    gc.collect()
    assert hidden() is None and ctx.differentiated_targets == set()
    again = src.explain(ctx)
    assert all(torch.equal(a.values, b.values) for a, b in zip(first, again))


def _relabelled(adapter, samples, correct: list[bool]):
    """``samples`` with gt set to the adapter's prediction where ``correct``, to another option elsewhere."""
    from creg.core.sample import RELATIONS

    pred = adapter.forward(samples).class_logits.argmax(1).tolist()
    return [s.model_copy(update={"relation": RELATIONS[p if ok else (p + 1) % 4]})
            for s, p, ok in zip(samples, pred, correct)]


def test_gt_and_pred_targets_share_one_backward_when_every_prediction_is_correct(adapter, samples):
    from creg.sources.contrastive_multilayer import CregGtSource, CregSource

    right = _relabelled(adapter, samples, [True, True])
    creg, creg_gt = CregSource(), CregGtSource()
    ctx = ExplainContext.for_sources(right, adapter, [creg, creg_gt])
    together = [creg.explain(ctx), creg_gt.explain(ctx)]
    assert ctx.all_correct and ctx.backward_passes == 1 and ctx.shared_backwards == 1
    # bit for bit what each source gets alone (its own backward)
    for src, maps in zip((creg, creg_gt), together):
        alone_ctx = ExplainContext.for_sources(right, adapter, [src])
        alone = src.explain(alone_ctx)
        assert alone_ctx.backward_passes == 1
        assert all(torch.equal(a.values, b.values) for a, b in zip(alone, maps))
    for layer, g in ctx.gradients("gt_contrastive", list(creg.layers)).items():
        assert torch.equal(g, alone_ctx.gradients("gt_contrastive", [layer])[layer])


def test_one_wrong_prediction_means_a_backward_of_its_own(adapter, samples):
    from creg.sources.contrastive_multilayer import CregGtSource, CregSource

    mixed = _relabelled(adapter, samples, [True, False])
    ctx = ExplainContext.for_sources(mixed, adapter, [CregSource(), CregGtSource()])
    g_pred = ctx.gradients("pred_contrastive", [-2])[-2]
    g_gt = ctx.gradients("gt_contrastive", [-2])[-2]
    assert not ctx.all_correct and ctx.backward_passes == 2 and ctx.shared_backwards == 0
    assert torch.equal(g_pred[0], g_gt[0]) and not torch.equal(g_pred[1], g_gt[1])
