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


# -- the text before the image once per run (creg.hf.text_prefix) --------------------------------
def _same_size():
    # one image size: no padding, every row's image starts at the same position
    return [scene_sample(0, 0, (224, 168)), scene_sample(0, 1, (224, 168))]


def _explained(adapter, samples, request):
    maps = []

    def on_attention(layer, attn):
        maps.append(attn)

    on_attention.head_mean = True
    out = adapter.forward(samples, request, on_attention=on_attention)
    tau = out.class_logits.gather(1, _gt(samples)[:, None]).sum()
    layers = list(request.layers)
    grads = torch.autograd.grad(tau, [out.hidden[l] for l in layers] + list(out.vision_activations))
    return out, maps, dict(zip(layers, grads[:len(layers)])), grads[len(layers):]


def test_text_before_the_image_once_equals_the_full_pass(tiny_qwen2vl_deep_dir):
    """Logits, hidden states (every position), attention maps, vision gradients and layer
    gradients from the first image token on equal the full pass; at the text's positions the
    gradient of a layer below the last block is 0 (the text is outside the graph), and a second
    pass reuses the kept text."""
    import creg.hf.text_prefix as text_prefix

    samples = _same_size()
    request = ForwardRequest(layers=(-5, -3), vision_activations=True, attentions=True, gradients_before_image=False)
    once, full = _load(tiny_qwen2vl_deep_dir, text_prefix_once=True), _load(tiny_qwen2vl_deep_dir)
    a, maps_a, grads_a, vis_a = _explained(once, samples, request)
    b, maps_b, grads_b, vis_b = _explained(full, samples, request)
    p = int(a.vision[0].token_index.min())
    assert 0 < p and len(once._text_prefix_keep.layers) == once.num_layers - 1  # kept for every block below the last
    assert "_text_prefix_keep" not in vars(full)
    assert torch.allclose(a.class_logits, b.class_logits, rtol=1e-5, atol=1e-6)
    for l in request.layers:
        assert torch.allclose(a.hidden[l], b.hidden[l], rtol=1e-5, atol=1e-5 * float(b.hidden[l].detach().abs().max()))
        g, r = grads_a[l], grads_b[l]
        assert torch.allclose(g[:, p:], r[:, p:], rtol=1e-4, atol=1e-5 * float(r.abs().max()))
        assert float(g[:, :p].abs().max()) == 0.0 < float(r[:, :p].abs().max())
    for g, r in zip(vis_a, vis_b):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))
    assert len(maps_a) == len(maps_b) == once.num_layers
    for m, r in zip(maps_a, maps_b):
        assert m.shape == r.shape and torch.allclose(m, r, rtol=1e-5, atol=1e-6)
    kept = once._text_prefix_keep.layers

    calls = []
    original = text_prefix.keep_prefix
    text_prefix.keep_prefix = lambda *x: calls.append(1) or original(*x)
    try:
        _explained(once, samples[::-1], request)
    finally:
        text_prefix.keep_prefix = original
    assert calls == [] and once._text_prefix_keep.layers is kept  # the same text: computed once per run


@pytest.mark.parametrize("case", ["gradients before the image read", "padded batch", "option off"])
def test_text_before_the_image_stays_in_the_graph_when_it_must(tiny_qwen2vl_deep_dir, case):
    samples, options = _same_size(), {"text_prefix_once": True}
    request = ForwardRequest(layers=(-5,), vision_activations=True, gradients_before_image=False)
    if case == "gradients before the image read":
        request = request.model_copy(update={"gradients_before_image": True})
    elif case == "padded batch":
        samples = [scene_sample(0, 0, (224, 168)), scene_sample(0, 1, (224, 224))]  # 48 and 64 vision tokens
    else:
        options = {}  # the default
    adapter = _load(tiny_qwen2vl_deep_dir, **options)
    out, _, grads, _ = _explained(adapter, samples, request)
    for i, layout in enumerate(out.vision):  # the text's positions are in the graph (padding excepted)
        assert float(grads[-5][i, int(layout.token_index.min()) - 1].abs().max()) > 0
    assert not getattr(vars(adapter).get("_text_prefix_keep"), "layers", [])


def test_sources_say_where_they_read_gradients():
    """The Table-1 sources read hidden-state gradients at the vision tokens only; a source that
    reads hidden states and says nothing keeps the text in the graph; one that reads no hidden
    state (attention maps, vision activations) does not count."""
    from creg.plugins.manager import get_plugins
    from creg.plugins.relevance import GradientRequest, SourceRequest

    plugins = get_plugins()
    table1 = [plugins.load("source", n)() for n in
              ("creg", "creg_gt", "attention_rollout", "gradnorm", "integrated_gradients", "gradcam", "random", "oracle")]
    union = SourceRequest.union([SourceRequest.of(s.request()) for s in table1])
    assert union.forward_request().gradients_before_image is False
    silent = SourceRequest(gradients=(GradientRequest(target="gt", layers=(-3,)),))
    assert SourceRequest.union([union, silent]).forward_request().gradients_before_image is True
    vision_only = SourceRequest(vision_activations=True, gradients=(GradientRequest(target="gt", vision=True),))
    assert SourceRequest.union([union, vision_only]).forward_request().gradients_before_image is False
    assert vision_only.forward_request().gradients_before_image is False
