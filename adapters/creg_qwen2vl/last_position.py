"""The last decoder block, computed for the answer position only.

The class logits read the last position of the last block's output. That position needs the
keys and values of every position but a query, an attention output and an MLP for itself
alone, so replaying the last block for integrated gradients (many path points) costs the K/V
projections of the sequence instead of a whole block. The result equals the full block's last
row (checked by the adapter tests and by the contract's replay test).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb, eager_attention_forward


def supports_last_position(block: torch.nn.Module) -> bool:
    """True for a block laid out like transformers' Qwen2-VL decoder layer."""
    attn = getattr(block, "self_attn", None)
    return all(hasattr(block, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp")) and all(
        hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")
    )


def last_position_block(block: torch.nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """``(b, s, d)`` block input -> ``(b, 1, d)`` the block's output at position ``s - 1``.

    ``kwargs`` are the block's captured call arguments (``attention_mask`` ``(b, 1, s, s)`` or
    None, ``position_embeddings`` = (cos, sin) each ``(b, s, head_dim)``).
    """
    attn = block.self_attn
    b, s, _ = hidden.shape
    x = block.input_layernorm(hidden)
    q = attn.q_proj(x[:, -1:]).view(b, 1, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(b, s, -1, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(b, s, -1, attn.head_dim).transpose(1, 2)
    cos, sin = kwargs["position_embeddings"]
    q, _ = apply_rotary_pos_emb(q, q, cos[:, -1:], sin[:, -1:])
    k, _ = apply_rotary_pos_emb(k, k, cos, sin)
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = mask[:, :, -1:, :]
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    out, _ = interface(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling,
                       sliding_window=getattr(attn, "sliding_window", None))
    h = hidden[:, -1:] + attn.o_proj(out.reshape(b, 1, -1).contiguous())
    return h + block.mlp(block.post_attention_layernorm(h))
