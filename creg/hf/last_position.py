"""The last decoder block for the answer (last) position alone: every position's keys and values, one
query, one attention row and one MLP row. The class logits read only that row, so the result equals the
full block's last row at the cost of the K/V projections (the adapter contract's replay test checks it)."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn


def supports_last_position(block: nn.Module) -> bool:
    """True for a pre-norm block laid out like transformers' Llama/Qwen decoder layers (not the
    sandwich norms of Gemma 2/3, whose blocks also norm after attention and around the MLP)."""
    attn = getattr(block, "self_attn", None)
    if any(hasattr(block, n) for n in ("pre_feedforward_layernorm", "post_feedforward_layernorm")):
        return False
    return all(hasattr(block, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp")) and all(
        hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")
    )


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(attn: nn.Module, q, k, cos, sin):
    """The rotary embedding of ``attn``'s own modeling module (rotate-half form by default)."""
    own = getattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb", None)
    if own is not None:
        return own(q, k, cos, sin)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def attention_function(attn: nn.Module):
    """The attention function ``attn``'s own forward calls for its configured kernel (the attention
    stream's wrapper while one is open; eager attention when the kernel is not registered)."""
    from transformers.modeling_utils import (
        ALL_ATTENTION_FUNCTIONS,  # lazy: transformers
    )
    from transformers.models.llama.modeling_llama import (
        eager_attention_forward,  # lazy: transformers
    )

    return ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)


def last_position_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """``(b, s, d)`` block input -> ``(b, 1, d)`` the block's output at position ``s - 1``.

    ``kwargs`` are the block's captured call arguments (``attention_mask`` ``(b, 1, s, s)`` or
    None, ``position_embeddings`` = (cos, sin) each ``(b, s, head_dim)``). With a key/value
    ``cache`` (:mod:`creg.hf.shared_prefix`) the block's keys and values are appended to the
    cached ones and the answer row attends to all of them (the mask is then ``(b, 1, s, c + s)``).
    """
    attn = block.self_attn
    b, s, _ = hidden.shape
    x = block.input_layernorm(hidden)
    q = attn.q_proj(x[:, -1:]).view(b, 1, -1, attn.head_dim)
    k = attn.k_proj(x).view(b, s, -1, attn.head_dim)
    v = attn.v_proj(x).view(b, s, -1, attn.head_dim).transpose(1, 2)
    if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms before the rotary embedding
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    cos, sin = kwargs["position_embeddings"]
    q, _ = apply_rotary(attn, q, q, cos[:, -1:], sin[:, -1:])
    k, _ = apply_rotary(attn, k, k, cos, sin)
    cache = kwargs.get("cache")
    if cache is not None:
        k, v = cache.update(k, v, attn.layer_idx)
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = mask[:, :, -1:, :]
    out, _ = attention_function(attn)(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling,
                       sliding_window=getattr(attn, "sliding_window", None))
    h = hidden[:, -1:] + attn.o_proj(out.reshape(b, 1, -1).contiguous())
    return h + block.mlp(block.post_attention_layernorm(h))
