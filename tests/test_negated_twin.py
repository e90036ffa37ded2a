"""A wrong prediction with the gt the runner-up: creg's and creg_gt's targets are each other's
negation (tau_pred = z_pred - z_gt = -tau_gt), and one backward serves both (creg/explain/context.py).

The shared gradients must be bit for bit what each target's own backward gives: the backward is
linear in its seed and IEEE rounding is symmetric, so negating the seed negates every number.
"""

from __future__ import annotations

import pytest
import torch

from creg.explain.context import ExplainContext
from creg.core.sample import RELATIONS
from creg.sources.contrastive_multilayer import CregGtSource, CregSource
from creg.testing.fake_vlm import FakeVLMAdapter
from creg_synthetic.scenes import scene_sample


@pytest.fixture(scope="module")
def adapter():
    return FakeVLMAdapter(d=32, dv=16, heads=4, num_layers=5, seed=3)


@pytest.fixture(scope="module")
def samples():
    return [scene_sample(0, i, (224, 160)) for i in range(2)]


def _gt_at_rank(adapter, samples, ranks: list[int]):
    """``samples`` relabelled so that each one's gt is the option of that rank in its logits (0: the prediction)."""
    order = adapter.forward(samples).class_logits.argsort(dim=1, descending=True).tolist()
    return [s.model_copy(update={"relation": RELATIONS[o[r]]}) for s, o, r in zip(samples, order, ranks)]


def _alone(src, samples, adapter):
    ctx = ExplainContext.for_sources(samples, adapter, [src])
    maps = src.explain(ctx)
    assert ctx.backward_passes == 1
    return ctx, maps


def test_gt_runner_up_shares_one_backward_negated_bit_for_bit(adapter, samples):
    runner_up = _gt_at_rank(adapter, samples, [1, 1])
    creg, creg_gt = CregSource(), CregGtSource()
    ctx = ExplainContext.for_sources(runner_up, adapter, [creg, creg_gt])
    together = [creg.explain(ctx), creg_gt.explain(ctx)]
    assert ctx.all_wrong_gt_runner_up and not ctx.all_correct
    assert ctx.backward_passes == 1 and ctx.shared_backwards == 1
    for src, maps in zip((creg, creg_gt), together):
        alone_ctx, alone = _alone(src, runner_up, adapter)
        assert all(torch.equal(a.values, b.values) for a, b in zip(alone, maps))
        assert all(a.extra == b.extra and a.flags == b.flags for a, b in zip(alone, maps))
        for layer, g in ctx.gradients(src.target, list(src.layers)).items():
            assert torch.equal(g, alone_ctx.gradients(src.target, [layer])[layer])
    g_pred = ctx.gradients("pred_contrastive", [-2])[-2]
    assert torch.equal(ctx.gradients("gt_contrastive", [-2])[-2], -g_pred) and g_pred.abs().max() > 0


@pytest.mark.parametrize("ranks", [[1, 2], [2, 2], [0, 1]])
def test_otherwise_each_target_takes_its_own_backward(adapter, samples, ranks):
    """One sample whose gt is not the runner-up (or is the prediction): no negation."""
    mixed = _gt_at_rank(adapter, samples, ranks)
    ctx = ExplainContext.for_sources(mixed, adapter, [CregSource(), CregGtSource()])
    g_pred = ctx.gradients("pred_contrastive", [-2])[-2]
    g_gt = ctx.gradients("gt_contrastive", [-2])[-2]
    assert not ctx.all_wrong_gt_runner_up and ctx.backward_passes == 2 and ctx.shared_backwards == 0
    assert not torch.equal(g_gt, -g_pred)


def test_negation_is_exact_through_a_transformers_model(tiny_qwen2vl_dir):
    """The same on a tiny Qwen2-VL (SDPA's own backward kernel, RMSNorm, rotary, GQA)."""
    from creg.plugins.adapter import AdapterConfig
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    qwen = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), dtype="float32", device="cpu"))
    runner_up = _gt_at_rank(qwen, [scene_sample(0, 0, (224, 224))], [1])
    creg, creg_gt = CregSource(), CregGtSource()
    ctx = ExplainContext.for_sources(runner_up, qwen, [creg, creg_gt])
    creg.explain(ctx)
    together = creg_gt.explain(ctx)
    assert ctx.backward_passes == 1 and ctx.shared_backwards == 1
    alone_ctx, alone = _alone(creg_gt, runner_up, qwen)
    assert torch.equal(alone[0].values, together[0].values)
    for layer in creg_gt.layers:
        assert torch.equal(ctx.gradients("gt_contrastive", [layer])[layer],
                           alone_ctx.gradients("gt_contrastive", [layer])[layer])
