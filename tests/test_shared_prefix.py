"""COS's cached text prefix (creg.hf.shared_prefix): the positions every occluded copy of a
sample shares run once, the results are those of the plain forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from creg.plugins.adapter import AdapterConfig, OccludedImage
from creg.hf.shared_prefix import SharedPrefix, shared_prefix_length
from creg.explain.occlusion import occluded_class_logits
from creg.core.sample import make_sample
from creg.testing.adapter_contract import draw_image


def test_shared_prefix_length_hand_cases():
    e = torch.zeros(3, 6, 2)
    e[1, 3:] = 1.0  # row 1 differs from position 3 on
    assert shared_prefix_length(e) == 3
    assert shared_prefix_length(e[:1]) == 0  # one row: nothing to share
    assert shared_prefix_length(torch.zeros(2, 6, 2)) == 5  # all equal: the answer row is never shared
    pos = torch.arange(6).expand(3, 3, 6).clone()  # (3, b, seq) like Qwen2-VL's rotary positions
    pos[2, 2, 1] = 7
    assert shared_prefix_length(e, pos) == 1
    assert shared_prefix_length(e, torch.arange(6).expand(3, 6)) == 3


@pytest.mark.parametrize("kwargs", [
    {"attention_mask": {"full_attention": torch.ones(1)}},  # a prepared mask mapping (Gemma 3)
    {"attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])},  # padding
    {"cache": object()},  # a cache already given
    {"visual_pos_masks": torch.ones(2, 4, dtype=torch.bool)},  # per-token vision input at later layers
])
def test_calls_it_cannot_handle_run_unchanged(kwargs):
    seen = {}

    class Echo(torch.nn.Module):
        def forward(self, inputs_embeds, **kw):
            seen["embeds"] = inputs_embeds
            return inputs_embeds

    model = Echo()
    embeds = torch.zeros(2, 4, 3)
    with SharedPrefix(model) as sp:
        model(inputs_embeds=embeds, **kwargs)
    assert sp.shared == [0] and seen["embeds"] is embeds


@pytest.fixture(scope="module")
def adapter(tiny_qwen2vl_dir):
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir)))


@pytest.fixture(scope="module")
def occluded(tmp_path_factory):
    """One sample and five occluded copies of its image (the first unoccluded)."""
    path = tmp_path_factory.mktemp("shared_prefix") / "noise.png"
    draw_image((112, 84), noise_seed=3).save(path)
    sample = make_sample(id="noise", image=path, image_size=(112, 84), ref_name="dog", tgt_name="ball",
                         ref_box={"x0": 5, "y0": 30, "x1": 25, "y1": 50},
                         tgt_box={"x0": 80, "y0": 30, "x1": 100, "y1": 50}, relation="right")
    base = np.asarray(sample.load_image().convert("RGB"))
    masks = [np.zeros(base.shape[:2], bool)]
    for j in range(4):
        m = np.zeros(base.shape[:2], bool)
        m[:, 28 * j: 28 * (j + 1)] = True
        masks.append(m)
    return sample, [OccludedImage(base=base, fill=np.full_like(base, 128), mask=m) for m in masks]


class Recording(SharedPrefix):
    """SharedPrefix that keeps every instance (patched where the adapter module looks it up)."""

    made: list["Recording"] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Recording.made.append(self)


@pytest.fixture
def recording(monkeypatch):
    Recording.made = []
    monkeypatch.setattr("creg.hf.adapter.SharedPrefix", Recording)
    return Recording.made


def _options(adapter, **update):
    adapter.options = adapter.options.model_copy(update=update)


@pytest.mark.parametrize("answer_only", [True, False])
def test_occluded_logits_with_the_cached_prefix_equal_the_plain_forward(adapter, occluded, answer_only, recording,
                                                                      monkeypatch):
    """With the answer-row-only last block (the cache extends its keys and values) and with the
    full block: the class logits of the forward, through the padded-query causal kernel, and the
    shared part is exactly the text before the first image token."""
    from creg.hf import shared_prefix

    sample, images = occluded
    kernel_calls = []
    monkeypatch.setattr(shared_prefix, "prefix_causal_sdpa",
                        lambda *a, _f=shared_prefix.prefix_causal_sdpa, **k: kernel_calls.append(1) or _f(*a, **k))
    try:
        _options(adapter, answer_only_forward=answer_only, cached_text_prefix=False)
        expected = occluded_class_logits(adapter, [sample] * len(images), images)
        assert recording == []
        _options(adapter, cached_text_prefix=True)
        adapter.__dict__.pop("_text_prefix_memo", None)  # the prefix runs in this call
        got = occluded_class_logits(adapter, [sample] * len(images), images)
    finally:
        _options(adapter, answer_only_forward=True, cached_text_prefix=False)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not torch.equal(expected[0], expected[1])  # the occlusions change the answer: the comparison has teeth
    ids = adapter.encode([sample])["input_ids"][0]
    first_image = int((ids == adapter.model.config.image_token_id).nonzero()[0])
    assert [r.shared for r in recording] == [[first_image]] and first_image > 0
    assert len(kernel_calls) == 2 * len(adapter.model.get_decoder().layers)  # the prefix's pass and the rows'
    assert adapter.model.get_decoder().config._attn_implementation == "sdpa"  # put back after the call


def test_the_prefix_runs_once_until_the_weights_change(adapter, occluded):
    """Later calls (other samples have the same text before the image) reuse the kept keys and
    values; an in-place change of a weight makes them stale."""
    sample, images = occluded
    lm = adapter.model.get_decoder()
    calls = []
    handle = lm.register_forward_pre_hook(lambda *a: calls.append(1))  # every call, the prefix's own too
    adapter.__dict__.pop("_text_prefix_memo", None)
    _options(adapter, cached_text_prefix=True)
    try:
        first = occluded_class_logits(adapter, [sample] * 3, images[:3])
        again = occluded_class_logits(adapter, [sample] * 3, images[:3])
        assert len(calls) == 3  # prefix + rows, then rows only
        torch.testing.assert_close(again, first, atol=1e-6, rtol=0)
        weight = lm.layers[0].mlp.down_proj.weight
        with torch.no_grad():
            weight.mul_(2.0)
            changed = occluded_class_logits(adapter, [sample] * 3, images[:3])
            weight.mul_(0.5)
        assert len(calls) == 5
        _options(adapter, cached_text_prefix=False)
        with torch.no_grad():
            weight.mul_(2.0)
            reference = occluded_class_logits(adapter, [sample] * 3, images[:3])
            weight.mul_(0.5)
    finally:
        handle.remove()
        _options(adapter, cached_text_prefix=False)
    torch.testing.assert_close(changed, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(changed, first, atol=1e-4)


def test_an_adapter_that_declares_no_causal_decoder_runs_the_plain_forward(adapter, occluded, recording, monkeypatch):
    sample, images = occluded
    monkeypatch.setattr(type(adapter), "caches_text_prefix", False)
    _options(adapter, cached_text_prefix=True)
    try:
        occluded_class_logits(adapter, [sample] * 2, images[:2])
    finally:
        _options(adapter, cached_text_prefix=False)
    assert recording == []


def test_the_cached_prefix_is_off_by_default(adapter, occluded, recording):
    """Off unless asked for: on the CPU benchmark it did not pay (docs/speed.md)."""
    sample, images = occluded
    assert adapter.options.cached_text_prefix is False
    occluded_class_logits(adapter, [sample] * 2, images[:2])
    assert recording == []


def test_prefix_causal_sdpa_is_causal_attention_with_the_cached_keys_first():
    """Queries of the last 3 of 7 positions: each attends to the 4 cached keys and to the rows up
    to itself, as an explicit mask computes it; one query sees every key."""
    from creg.hf.shared_prefix import prefix_causal_sdpa

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.is_causal = True
    q, k, v = torch.randn(2, 2, 3, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    out, _ = prefix_causal_sdpa(module, q, k, v, None, scaling=8 ** -0.5)
    allowed = torch.ones(7, 7, dtype=torch.bool).tril()[4:]  # query i (position 4 + i) sees keys 0..4 + i
    scores = (q @ k.transpose(-1, -2)) * 8 ** -0.5
    expected = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ v
    torch.testing.assert_close(out, expected.transpose(1, 2), atol=1e-6, rtol=0)
    one, _ = prefix_causal_sdpa(module, q[:, :, -1:], k, v, None, scaling=8 ** -0.5)
    torch.testing.assert_close(one, expected.transpose(1, 2)[:, -1:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("budget", ["auto", 1, 2, 10**6])
def test_occluded_rows_go_to_the_model_in_calls_of_a_token_budget(adapter, occluded, budget, monkeypatch):
    """``occluded_tokens_per_call``: rows per call = budget // sequence length (at least one; auto is
    AUTO_OCCLUDED_TOKENS_PER_CALL on a CPU), with or without the cached prefix, and the class
    logits are those of one call with every row."""
    from creg.hf.adapter import AUTO_OCCLUDED_TOKENS_PER_CALL

    sample, images = occluded
    seq = int(adapter.encode([sample])["input_ids"].shape[1])
    calls = []
    forward = type(adapter).forward
    monkeypatch.setattr(type(adapter), "forward", lambda self, s, *a, **k: calls.append(len(s)) or forward(self, s, *a, **k))
    try:
        _options(adapter, occluded_tokens_per_call=10**6)
        expected = occluded_class_logits(adapter, [sample] * len(images), images)
        for cached in (False, True):
            calls.clear()
            _options(adapter, occluded_tokens_per_call=budget, cached_text_prefix=cached)
            got = occluded_class_logits(adapter, [sample] * len(images), images)
            rows = max(1, (AUTO_OCCLUDED_TOKENS_PER_CALL if budget == "auto" else budget) // seq)
            assert calls == [min(rows, len(images) - i) for i in range(0, len(images), rows)]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    finally:
        _options(adapter, occluded_tokens_per_call="auto", cached_text_prefix=False)
