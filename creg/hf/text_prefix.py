"""The explained pass with the text before the image computed once per run, outside the graph.

Every sample of a run has the same text before its image (the system prompt and the user turn's
opening, about 15 tokens on Qwen2-VL), and in a causal decoder a position's hidden state, query,
key and value depend only on the positions at and before it: the text before the image gives
every sample the same numbers at every layer, whatever the image. The explained pass keeps an
autograd graph from the vision output (or the lowest layer read) upward, so those positions
cost their share of the forward, of the graph, and of every backward through the blocks
(15 of 134 positions at 64 vision tokens) -- for gradients nobody reads when no source reads a
gradient there (``ForwardRequest.gradients_before_image`` False: creg's built-in sources read
the vision tokens only).

:class:`TextPrefix` replaces each decoder block's ``forward`` for one pass. The block computes
its query, key, value, attention output and MLP for the positions from the first image token
on, ``hidden[:, P:]``, and takes the text's from :class:`PrefixKeep`: the text's rotated
queries, keys and values and its output at every block, computed once (no grad) from the
text's embeddings and kept while they, their rotary angles and the weights stay the same. The
attention itself runs on every position as before -- the kept text queries, keys and values
in front of the rows' own, the model's kernel, its causal flag and mask -- so its kernel
and round-off, and the attention map the stream computes beside it, are those of the full
block; the block's output is the kept text output followed by the rows'.

What changes, exactly: the text positions' hidden states no longer depend on the graph's root,
so the gradient of anything at those positions of any layer is 0 instead of its value (their
hidden states, the logits, the attention maps and every gradient at the positions from the
image on are the same, round-off aside: the text runs at its own length). Hence the request
flag. It applies to Llama/Qwen-style pre-norm blocks (:func:`supports_last_position`), full
causal attention under a kernel other than eager, without a mask (no padding) and without
device-map hooks; any other call runs the model's own blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from creg.hf.last_position import apply_rotary, attention_function, supports_last_position


@dataclass
class KeptLayer:
    """One block's numbers at the text positions, batch 1: rotated ``q`` ``(1, heads, P, hd)``,
    ``k``, ``v`` ``(1, kv_heads, P, hd)`` and the block's output ``out`` ``(1, P, d)``."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    out: torch.Tensor


@dataclass
class PrefixKeep:
    """The kept text: its embeddings ``(P, d)``, its rotary ``cos``/``sin`` ``(P, hd)``, the
    weights it was computed with (identities and in-place versions) and one :class:`KeptLayer` per
    block. Stale as soon as one of them differs."""

    embeds: torch.Tensor | None = None
    cos: torch.Tensor | None = None
    sin: torch.Tensor | None = None
    weights: tuple = ()
    layers: list[KeptLayer] = field(default_factory=list)

    def matches(self, embeds: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, weights: tuple) -> bool:
        return (self.embeds is not None and self.embeds.shape == embeds.shape and self.weights == weights
                and self.embeds.dtype == embeds.dtype and self.embeds.device == embeds.device
                and torch.equal(self.embeds, embeds) and torch.equal(self.cos, cos) and torch.equal(self.sin, sin))


def _weights(blocks: list[nn.Module]) -> tuple | None:
    params = [t for b in blocks for t in b.parameters()]
    if any(t.is_inference() for t in params):
        return None
    return tuple((id(t), t._version) for t in params)


def _qkv(block: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """``(b, n, d)`` block input at ``n`` positions -> rotated q ``(b, heads, n, hd)``, k, v ``(b, kv, n, hd)``,
    as the block's attention computes them."""
    attn = block.self_attn
    b, n, _ = hidden.shape
    x = block.input_layernorm(hidden)
    q = attn.q_proj(x).view(b, n, -1, attn.head_dim)
    k = attn.k_proj(x).view(b, n, -1, attn.head_dim)
    v = attn.v_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
    if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms before the rotary embedding
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = apply_rotary(attn, q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    return q, k, v


def _finish(block: nn.Module, residual: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """``(b, n, d)`` block input and ``(b, n, heads, hd)`` attention output -> the block's output."""
    b, n = residual.shape[:2]
    h = residual + block.self_attn.o_proj(attended.reshape(b, n, -1).contiguous())
    return h + block.mlp(block.post_attention_layernorm(h))


def keep_prefix(blocks: list[nn.Module], embeds: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> list[KeptLayer]:
    """The text ``(1, P, d)`` through ``blocks`` at its own length (no grad, the kernel's own
    causal attention, the attention stream bypassed) -> one :class:`KeptLayer` per block."""
    kept = []
    h = embeds
    with torch.no_grad():
        for block in blocks:
            attn = block.self_attn
            fn = attention_function(attn)
            fn = getattr(fn, "creg_original", fn)  # the text's maps are the pass's, streamed there
            q, k, v = _qkv(block, h, cos, sin)
            attended, _ = fn(attn, q, k, v, None, dropout=0.0, scaling=attn.scaling, sliding_window=None)
            h = _finish(block, h, attended)
            kept.append(KeptLayer(q=q, k=k, v=v, out=h))
    return kept


def block_after_prefix(block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any], kept: KeptLayer) -> torch.Tensor:
    """``(b, s, d)`` block input -> ``(b, s, d)`` output: positions ``P:`` computed, ``:P`` kept."""
    attn = block.self_attn
    b, s, _ = hidden.shape
    p = kept.out.shape[1]
    cos, sin = kwargs["position_embeddings"]
    rows = hidden[:, p:]
    q, k, v = _qkv(block, rows, cos[:, p:], sin[:, p:])
    q = torch.cat([kept.q.expand(b, -1, -1, -1), q], dim=2)
    k = torch.cat([kept.k.expand(b, -1, -1, -1), k], dim=2)
    v = torch.cat([kept.v.expand(b, -1, -1, -1), v], dim=2)
    attended, _ = attention_function(attn)(attn, q, k, v, kwargs.get("attention_mask"), dropout=0.0,
                                            scaling=attn.scaling, sliding_window=None)
    out = _finish(block, rows, attended[:, p:])
    return torch.cat([kept.out.expand(b, -1, -1), out], dim=1)


def prefix_applies(blocks: list[nn.Module]) -> bool:
    """Every block is a Llama/Qwen-style pre-norm block with its class's ``forward`` (no device-map
    hooks), full causal attention (no sliding window) under a kernel other than eager."""
    for block in blocks:
        attn = getattr(block, "self_attn", None)
        if not supports_last_position(block) or "forward" in vars(block):
            return False
        if getattr(attn, "sliding_window", None) is not None or not getattr(attn, "is_causal", True):
            return False
        if (getattr(attn.config, "_attn_implementation", None) or "eager") == "eager":
            return False
    return True


class TextPrefix:
    """Context manager: ``blocks`` run the positions from ``p`` on and take the first ``p`` from
    ``keep`` (module docstring) during one pass; ``used`` says whether the pass did."""

    def __init__(self, blocks: list[nn.Module], p: int, keep: PrefixKeep):
        self.blocks, self.p, self.keep = blocks, p, keep
        self.used: bool | None = None  # decided by the first block's call
        self._patched: list[nn.Module] = []

    def _first_call(self, hidden: torch.Tensor, kwargs: dict[str, Any]) -> bool:
        p = self.p
        if kwargs.get("attention_mask") is not None or "position_embeddings" not in kwargs:
            return False  # a mask (padding) or a block called without its rotary angles
        cos, sin = kwargs["position_embeddings"]
        if cos.dim() != 3 or cos.shape[1] != hidden.shape[1] or not 0 < p < hidden.shape[1] - 1:
            return False
        embeds, cos_p, sin_p = hidden[:, :p].detach(), cos[:, :p], sin[:, :p]
        if not (bool((embeds == embeds[:1]).all()) and bool((cos_p == cos_p[:1]).all()) and bool((sin_p == sin_p[:1]).all())):
            return False  # the rows' text before the image differs
        weights = _weights(self.blocks)
        if weights is None:
            return False
        if not self.keep.matches(embeds[0], cos_p[0], sin_p[0], weights):
            self.keep.layers = keep_prefix(self.blocks, embeds[:1], cos_p[:1], sin_p[:1])
            self.keep.embeds, self.keep.cos, self.keep.sin = embeds[0].clone(), cos_p[0].clone(), sin_p[0].clone()
            self.keep.weights = weights
        return True

    def _forward(self, index: int, original: Callable[..., Any]) -> Callable[..., Any]:
        block = self.blocks[index]

        def forward(hidden_states, *args, **kwargs):
            if index == 0 and self.used is None:
                self.used = not args and self._first_call(hidden_states, kwargs)
            if not self.used or args:
                return original(hidden_states, *args, **kwargs)
            return block_after_prefix(block, hidden_states, kwargs, self.keep.layers[index])

        return forward

    def __enter__(self) -> "TextPrefix":
        for i, block in enumerate(self.blocks):
            block.forward = self._forward(i, block.forward)  # the instance's own, removed on exit
            self._patched.append(block)
        return self

    def __exit__(self, *exc) -> None:
        for block in self._patched:
            del block.forward
        self._patched.clear()
