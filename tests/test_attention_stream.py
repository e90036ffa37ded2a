"""Attention maps streamed beside the model's own SDPA kernel (creg.hf.attention_stream).

* the maps equal transformers' eager attention weights (the old way of reading them) to float
  round-off, on a tiny GQA Qwen2-VL with a left-padded batch;
* the pass that streams them is bit-identical to one that does not: class logits, hidden
  states and their gradients;
* only the decoder's attention modules stream; the vision tower and anything else calling the
  same function go through untouched, and the function is restored afterwards;
* :func:`attention_probabilities` against a per-head loop written out by hand (GQA mapping,
  causal pattern, padding mask, sliding window, boolean and additive masks).
"""

from __future__ import annotations

import math

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.hf.attention_stream import AttentionStream, attention_probabilities
from creg_synthetic.scenes import scene_sample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def qwen(tiny_qwen2vl_dir):
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def samples():
    # different image areas -> different sequence lengths -> a left-padded batch
    return [scene_sample(0, 0, (224, 224)), scene_sample(0, 1, (168, 112))]


def _sdpa():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS["sdpa"]


def test_streamed_maps_equal_eager_attention_weights(qwen, samples):
    assert qwen.model.config.text_config._attn_implementation == "sdpa"
    text = qwen.model.config.text_config
    assert text.num_key_value_heads < text.num_attention_heads  # GQA is exercised
    maps = []
    qwen.forward(samples, ForwardRequest(attentions=True), on_attention=lambda i, a: maps.append((i, a)))
    batch = qwen.encode(samples)
    assert (batch["attention_mask"] == 0).any()  # padding is exercised
    with qwen.attention_implementation("eager"), torch.no_grad():
        eager = qwen.model(**batch, use_cache=False, logits_to_keep=1, output_attentions=True).attentions
    assert [i for i, _ in maps] == list(range(qwen.num_layers)) and len(eager) == qwen.num_layers
    real = batch["attention_mask"].bool()  # compare the rows of real tokens (padding rows are never read)
    for (_, ours), theirs in zip(maps, eager):
        assert ours.shape == theirs.shape and ours.dtype == torch.float32
        torch.testing.assert_close(ours[real[:, None, :].expand(-1, ours.shape[1], -1)],
                                   theirs[real[:, None, :].expand(-1, ours.shape[1], -1)], atol=1e-6, rtol=0)
        torch.testing.assert_close(ours.sum(-1), torch.ones_like(ours.sum(-1)), atol=1e-5, rtol=0)


def test_streaming_leaves_the_pass_bit_identical(qwen, samples):
    request = ForwardRequest(layers=(-2, -3), vision_activations=True)
    plain = qwen.forward(samples, request)
    streamed = qwen.forward(samples, request.model_copy(update={"attentions": True}), on_attention=lambda i, a: None)
    assert torch.equal(plain.class_logits, streamed.class_logits)
    for layer in (-2, -3):
        assert torch.equal(plain.hidden[layer], streamed.hidden[layer])
    grads = []
    for out in (plain, streamed):
        tau = out.class_logits[:, 0].sum()
        grads.append(torch.autograd.grad(tau, [out.hidden[-3], *out.vision_activations]))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_only_registered_modules_stream_and_the_function_is_restored(qwen, samples):
    original = _sdpa()
    calls = []
    layers = qwen.decoder.layers
    with AttentionStream({layers[1].self_attn: 1}, lambda i, a: calls.append(i)):
        assert _sdpa() is not original
        with torch.no_grad():
            qwen.model(**qwen.encode(samples), use_cache=False, logits_to_keep=1)  # vision tower: sdpa too
    assert calls == [1]
    assert _sdpa() is original
    with pytest.raises(RuntimeError, match="already stream"):
        with AttentionStream({layers[0].self_attn: 0}, lambda i, a: None):
            with AttentionStream({layers[0].self_attn: 0}, lambda i, a: None):
                pass
    assert _sdpa() is original


def _by_hand(q, k, allowed, scaling):
    """Per batch row and head: softmax over the allowed keys of q . k * scaling (0 elsewhere)."""
    b, h, s_q, d = q.shape
    rep = h // k.shape[1]
    out = torch.zeros(b, h, s_q, k.shape[2])
    for bi in range(b):
        for hi in range(h):
            for i in range(s_q):
                scores = [float(q[bi, hi, i] @ k[bi, hi // rep, j]) * scaling if allowed[bi, i, j] else -math.inf
                          for j in range(k.shape[2])]
                top = max(scores)
                e = [math.exp(x - top) for x in scores]
                out[bi, hi, i] = torch.tensor(e) / sum(e)
    return out


def test_attention_probabilities_by_hand():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 5, 8, generator=g), torch.randn(2, 2, 5, 8, generator=g)
    causal = torch.ones(5, 5).tril().bool()
    pad = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]).bool()
    allowed = causal[None] & pad[:, None, :]
    rows = pad[:, :, None].expand(-1, -1, 5)  # compare real query rows
    cases = {
        "causal, no mask": (None, {}, causal[None].expand(2, -1, -1)),
        "padding mask (b, k)": (pad.long(), {}, allowed),
        "boolean 4-D": (allowed[:, None], {}, allowed),
        "additive 4-D": (torch.where(allowed[:, None], 0.0, torch.finfo(torch.float32).min), {}, allowed),
        "sliding window 2": (None, {"sliding_window": 2}, (causal & ~torch.ones(5, 5).tril(-2).bool())[None].expand(2, -1, -1)),
    }
    for name, (mask, extra, expect_allowed) in cases.items():
        ours = attention_probabilities(q, k, mask, scaling=0.3, **extra)
        ref = _by_hand(q, k, expect_allowed, 0.3)
        sel = rows[:, None].expand(-1, 4, -1, -1) if mask is not None else torch.ones_like(ours, dtype=torch.bool)
        torch.testing.assert_close(ours[sel], ref[sel], atol=1e-6, rtol=0, msg=name)
    full = attention_probabilities(q, k, None, scaling=0.3, is_causal=False)
    torch.testing.assert_close(full, _by_hand(q, k, torch.ones(2, 5, 5).bool(), 0.3), atol=1e-6, rtol=0)


def test_an_eager_configured_model_streams_its_own_weights_unchanged(tiny_qwen2vl_dir, qwen, samples):
    """Under eager attention the layers return their weights: the capture reads them (no
    stream, no wrapper) and the pass stays the plain eager pass; the maps equal the stream's."""
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    eager = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), dtype="float32", device="cpu",
                                              options={"attn_implementation": "eager"}))
    assert eager.model.config.text_config._attn_implementation == "eager"
    original = _sdpa()
    theirs, ours = [], []
    out = eager.forward(samples, ForwardRequest(attentions=True),
                        on_attention=lambda i, a: theirs.append(a) or _sdpa() is original or pytest.fail("wrapped"))
    assert torch.equal(out.class_logits, eager.forward(samples).class_logits)
    qwen.forward(samples, ForwardRequest(attentions=True), on_attention=lambda i, a: ours.append(a))
    real = qwen.encode(samples)["attention_mask"].bool()[:, None, :, None]  # real query rows
    for a, b in zip(theirs, ours):
        torch.testing.assert_close(a.masked_fill(~real, 0), b.masked_fill(~real, 0), atol=1e-6, rtol=0)
