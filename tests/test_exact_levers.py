"""The two exact levers of the explained pass, each against the computation it replaces.

* integrated gradients on :meth:`creg.plugins.adapter.VLMAdapter.scaled_layer_replay`: the HF adapter's
  last block with keys and values computed once per batch (:mod:`creg.hf.scaled_replay`) equals
  the generic replay (scaled hidden state through ``logits_from_layer``) and equals the summed
  elementwise IG of :func:`layer_integrated_gradients` (chain rule d z / d t_j = h_j . g_j);
* the forward pass with the last block computed for the answer row only (``answer_only_forward``)
  gives the same class logits and the same gradients at every layer as the full block.

Tolerances are float32's: relative to the largest term (IG: to sum_d |attr| per token, since
the per-token sum at layer -2 cancels; tests/test_sources_captum.py explains the bound).
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from creg.plugins.adapter import AdapterConfig, ForwardRequest, VLMAdapter  # noqa: E402
from creg.sources.integrated_gradients import (  # noqa: E402
    completeness_gap, layer_integrated_gradients, path_endpoints, token_integrated_gradients)
from creg_synthetic.scenes import scene_sample  # noqa: E402


def _load(model_dir, **options):
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    return Qwen2VLAdapter.load(AdapterConfig(model=str(model_dir), dtype="float32", device="cpu", options=options))


@pytest.fixture(scope="module")
def qwen(tiny_qwen2vl_deep_dir):
    return _load(tiny_qwen2vl_deep_dir)


@pytest.fixture(scope="module")
def samples():
    # two image sizes -> a left-padded batch (the mask row of the answer matters)
    return [scene_sample(0, 0, (224, 168)), scene_sample(0, 1, (168, 224))]


def _gt(samples):
    return torch.tensor([s.option for s in samples])


def test_keys_and_values_once_equal_the_generic_replay(qwen, samples):
    out = qwen.forward(samples, ForwardRequest(layers=(-2,)))
    fast = qwen.scaled_layer_replay(out, -2)
    slow = VLMAdapter.scaled_layer_replay(qwen, out, -2)
    assert fast is not slow
    b, s = out.hidden[-2].shape[:2]
    t = torch.rand(3 * b, s, generator=torch.Generator().manual_seed(0))
    t[:b] = 0.0  # the baseline: keys and values are the biases alone
    with torch.no_grad():
        a, r = fast(t), slow(t)
    assert torch.allclose(a, r, rtol=1e-5, atol=1e-5 * float(r.abs().max()))


def test_token_ig_equals_elementwise_ig_summed(qwen, samples):
    out = qwen.forward(samples, ForwardRequest(layers=(-2,)))
    gt = _gt(samples)
    elementwise = layer_integrated_gradients(qwen, out, -2, gt, steps=50)  # b s d
    shape = tuple(elementwise.shape[:2])
    bound = 1e-4 * elementwise.abs().sum(-1) + 1e-7
    for replay in (qwen.scaled_layer_replay(out, -2), VLMAdapter.scaled_layer_replay(qwen, out, -2)):
        tokens = token_integrated_gradients(replay, shape, gt, steps=50, chunk=7)
        assert ((tokens - elementwise.sum(-1)).abs() <= bound).all()


def test_completeness_gap_is_the_relative_shortfall():
    # Eq.: |sum_j attr_j - delta| / |delta|
    attr = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    delta = torch.tensor([4.0, 0.0])
    assert completeness_gap(attr, delta).tolist() == [0.125, 0.0]
    assert completeness_gap(torch.tensor([[1.0]]), torch.tensor([0.0])).tolist() == [float("inf")]


def test_path_endpoints_are_the_forward_logit_minus_the_baseline(qwen, samples):
    out = qwen.forward(samples, ForwardRequest(layers=(-2,)))
    gt = _gt(samples)
    replay = qwen.scaled_layer_replay(out, -2)
    b, s = out.hidden[-2].shape[:2]
    delta = path_endpoints(replay, (b, s), gt)
    z_x = out.class_logits.detach().gather(1, gt[:, None])[:, 0]
    with torch.no_grad():
        z_0 = VLMAdapter.scaled_layer_replay(qwen, out, -2)(torch.zeros(b, s)).gather(1, gt[:, None])[:, 0]
    assert torch.allclose(delta, z_x - z_0, atol=1e-5 * float(z_x.abs().max()))


@pytest.mark.parametrize("layers", [(-2, -3, -5), (-4,)])
def test_answer_row_only_forward_equals_the_full_last_block(tiny_qwen2vl_deep_dir, qwen, samples, layers, monkeypatch):
    import creg.hf.capture as capture

    calls = []
    original = capture.last_position_block
    monkeypatch.setattr(capture, "last_position_block", lambda *a: calls.append(1) or original(*a))
    full = _load(tiny_qwen2vl_deep_dir, answer_only_forward=False)
    outs = [a.forward(samples, ForwardRequest(layers=layers, vision_activations=True)) for a in (qwen, full)]
    assert calls == [1]  # the answer-only block ran once, in the first pass only
    logits = [o.class_logits for o in outs]
    assert torch.allclose(logits[0], logits[1], rtol=1e-5, atol=1e-6)
    grads = []
    for o in outs:
        tau = o.class_logits.gather(1, _gt(samples)[:, None]).sum()
        grads.append(torch.autograd.grad(tau, [o.hidden[l] for l in layers] + list(o.vision_activations)))
    for g, r in zip(*grads):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))
