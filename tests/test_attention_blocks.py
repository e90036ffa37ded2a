"""The attention stream's maps computed in blocks of query rows (creg.hf.attention_stream).

Each block of rows is scored against the keys up to the last one any of its rows attends to
(:func:`row_blocks`); the keys it leaves out are masked for all of its rows, so their
probability is exactly 0 in a softmax over every key too. The blocked map must equal the one
softmax over all keys (``softmax(scale * Q K^T + mask)``, what the stream computed before) --
causal, left-padded, sliding-window and unmasked, blocks of several sizes, GQA.
"""

from __future__ import annotations

import pytest
import torch

from creg.hf.attention_stream import additive_mask, attention_probabilities, row_blocks

LOWEST = torch.finfo(torch.float32).min


def _one_softmax(q: torch.Tensor, k: torch.Tensor, additive: torch.Tensor | None, scale: float) -> torch.Tensor:
    """The whole map in one product and one softmax over every key (the unblocked computation)."""
    b, h, s, d = q.shape
    k = k[:, :, None].expand(b, k.shape[1], h // k.shape[1], k.shape[2], d).reshape(b, h, k.shape[2], d)
    scores = torch.matmul(q, k.transpose(2, 3)) * scale
    if additive is not None:
        scores = scores + additive
    return torch.softmax(scores, dim=-1)


def _inputs(b: int = 2, s: int = 37, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, s, 16, generator=g), torch.randn(b, 2, s, 16, generator=g)


def _padding(s: int) -> torch.Tensor:
    pad = torch.ones(2, s, dtype=torch.long)
    pad[0, :5] = 0  # left padding: sample 0's first five positions (and query rows) are padding
    return pad


@pytest.mark.parametrize("rows", [1, 4, 10, 128])
@pytest.mark.parametrize("case", ["causal", "padding (b, k)", "boolean 4-D", "sliding window", "not causal"])
def test_blocked_map_equals_one_softmax_over_every_key(case, rows):
    q, k = _inputs()
    s = q.shape[2]
    mask, extra = None, {}
    if case == "padding (b, k)":
        mask = _padding(s)
    elif case == "boolean 4-D":
        causal = torch.ones(s, s).tril().bool()
        mask = (causal[None] & _padding(s).bool()[:, None, :])[:, None]
    elif case == "sliding window":
        extra = {"sliding_window": 6}
    elif case == "not causal":
        extra = {"is_causal": False}
    additive = additive_mask(mask, s, s, **extra)
    blocks = row_blocks(additive, s, s, rows=rows)
    ours = attention_probabilities(q, k, mask, scaling=0.3, additive=additive, blocks=blocks, **extra)
    ref = _one_softmax(q, k, additive, 0.3)
    torch.testing.assert_close(ours, ref, atol=1e-7, rtol=1e-6)
    # the default blocks (computed from the mask when it is not given) too
    default = attention_probabilities(q, k, mask, scaling=0.3, **extra)
    torch.testing.assert_close(default, ref, atol=1e-7, rtol=1e-6)


def test_row_blocks_stop_at_the_last_attended_key():
    """(r0, r1, c0, c1): the rows attend to no key from c1 on, and all of them to every key before c0
    (the mask is added on c0:c1 only)."""
    s = 10
    causal = additive_mask(None, s, s)
    assert row_blocks(causal, s, s, rows=3) == [(0, 3, 1, 3), (3, 6, 4, 6), (6, 10, 7, 10)]  # 3 blocks of about 3 rows
    assert row_blocks(causal, s, s, rows=128) == [(0, 10, 1, 10)]
    # queries are the last 4 of 10 positions (a cache before them): every key up to each row
    assert row_blocks(additive_mask(None, 4, s), 4, s, rows=2) == [(0, 2, 7, 8), (2, 4, 9, 10)]
    assert row_blocks(None, 6, s, rows=2) == [(0, 2, 10, 10), (2, 4, 10, 10), (4, 6, 10, 10)]


def test_a_block_with_a_fully_masked_row_keeps_every_key():
    """Eager attention makes a row with every key masked uniform over all keys: the block holding
    it is not cut short, and that row is uniform in the blocked map too."""
    s = 8
    allowed = torch.ones(s, s).tril().bool()
    allowed[2] = False  # query 2 attends to nothing
    additive = torch.zeros(1, 1, s, s).masked_fill_(~allowed, LOWEST)
    blocks = row_blocks(additive, s, s, rows=4)
    assert blocks == [(0, 4, 0, s), (4, 8, 5, 8)]  # rows 0-3 hold query 2: every key, every one masked somewhere
    q, k = _inputs(b=1, s=s)
    ours = attention_probabilities(q, k, None, scaling=0.3, additive=additive, blocks=blocks)
    torch.testing.assert_close(ours[0, :, 2], torch.full((4, s), 1 / s), atol=1e-7, rtol=0)
    torch.testing.assert_close(ours, _one_softmax(q, k, additive, 0.3), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("case", ["causal", "padding (b, k)"])
@pytest.mark.parametrize("rows", [4, 128])
def test_head_mean_is_the_mean_of_every_heads_map(case, rows):
    q, k = _inputs()
    s = q.shape[2]
    mask = _padding(s) if case == "padding (b, k)" else None
    additive = additive_mask(mask, s, s)
    blocks = row_blocks(additive, s, s, rows=rows)
    every = attention_probabilities(q, k, mask, scaling=0.3, additive=additive, blocks=blocks)
    mean = attention_probabilities(q, k, mask, scaling=0.3, additive=additive, blocks=blocks, head_mean=True)
    assert mean.shape == (2, 1, s, s)
    torch.testing.assert_close(mean, every.mean(dim=1, keepdim=True), atol=1e-7, rtol=1e-6)


def test_rollout_from_head_means_equals_rollout_from_every_head(tiny_qwen2vl_dir, monkeypatch):
    """Through the context on a tiny Qwen2-VL: rollout alone gets head means from the stream;
    with an extra per-layer callback (which sees every head) it gets every head. Same rows."""
    from creg.plugins.adapter import AdapterConfig
    from creg.explain.context import ExplainContext
    from creg.sources.attention_rollout import AttentionRollout, AttentionRolloutSource
    from creg_qwen2vl.adapter import Qwen2VLAdapter
    from creg_synthetic.scenes import scene_sample

    qwen = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), dtype="float32", device="cpu"))
    heads = qwen.model.config.text_config.num_attention_heads
    samples = [scene_sample(0, 0, (224, 224)), scene_sample(0, 1, (168, 112))]  # left-padded batch
    src = AttentionRolloutSource()
    received = []
    update = AttentionRollout.update
    monkeypatch.setattr(AttentionRollout, "update", lambda self, i, a: (received.append(a.shape[1]), update(self, i, a)))
    means = src.explain(ExplainContext.for_sources(samples, qwen, [src]))
    assert received == [1] * qwen.num_layers
    received.clear()
    shapes = {}
    ctx = ExplainContext.for_sources(samples, qwen, [src], on_attention=lambda i, a: shapes.setdefault(i, a.shape))
    every = src.explain(ctx)
    assert received == [heads] * qwen.num_layers and all(shape[1] == heads for shape in shapes.values())
    assert ctx.attention_passes == 1 and len(shapes) == qwen.num_layers
    for a, b in zip(means, every):
        torch.testing.assert_close(a.values, b.values, atol=1e-7, rtol=1e-6)
