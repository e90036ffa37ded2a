"""Replaying the top of the decoder from a hidden state, for integrated gradients.

:func:`replay_decoder` reruns blocks ``block .. N-1`` with the call arguments captured in the
forward pass (:class:`creg.hf.capture.ReplayState`), on ``r`` stacked copies of the batch, then
the final norm and head at the answer (last) position. The last block can run for the answer
position alone (:func:`last_position_block`): the class logits read only that row, which needs
every position's keys and values but one query, one attention row and one MLP row -- the cost of
the K/V projections instead of a whole block. The result equals the full block's last row (the
contract's replay test checks it for every adapter). Each block runs on its own device, so a
model loaded with ``device_map`` replays as it ran.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from .capture import ReplayState
from .decoder import DecoderParts, module_device


def repeat_batch(value: Any, r: int, b: int, device: torch.device | None = None) -> Any:
    """``value`` with every batch-first tensor (leading dim ``b``) stacked ``r`` times along dim 0
    (row ``i`` of the result belongs to sample ``i % b``), tensors moved to ``device`` if given."""
    if isinstance(value, torch.Tensor):
        if r > 1 and value.dim() and value.shape[0] == b:
            value = value.repeat(r, *([1] * (value.dim() - 1)))
        return value if device is None else value.to(device)
    if isinstance(value, tuple):
        return tuple(repeat_batch(v, r, b, device) for v in value)
    if isinstance(value, list):
        return [repeat_batch(v, r, b, device) for v in value]
    if isinstance(value, dict):
        return {k: repeat_batch(v, r, b, device) for k, v in value.items()}
    return value


def supports_last_position(block: nn.Module) -> bool:
    """True for a pre-norm block laid out like transformers' Llama/Qwen decoder layers (not the
    sandwich norms of Gemma 2/3, whose blocks also norm after attention and around the MLP)."""
    attn = getattr(block, "self_attn", None)
    if any(hasattr(block, n) for n in ("pre_feedforward_layernorm", "post_feedforward_layernorm")):
        return False
    return all(hasattr(block, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp")) and all(
        hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")
    )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _apply_rotary(attn: nn.Module, q, k, cos, sin):
    """The rotary embedding of ``attn``'s own modeling module (rotate-half form by default)."""
    own = getattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb", None)
    if own is not None:
        return own(q, k, cos, sin)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def last_position_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """``(b, s, d)`` block input -> ``(b, 1, d)`` the block's output at position ``s - 1``.

    ``kwargs`` are the block's captured call arguments (``attention_mask`` ``(b, 1, s, s)`` or
    None, ``position_embeddings`` = (cos, sin) each ``(b, s, head_dim)``). With a key/value
    ``cache`` (:mod:`creg.hf.shared_prefix`) the block's keys and values are appended to the
    cached ones and the answer row attends to all of them (the mask is then ``(b, 1, s, c + s)``).
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

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
    q, _ = _apply_rotary(attn, q, q, cos[:, -1:], sin[:, -1:])
    k, _ = _apply_rotary(attn, k, k, cos, sin)
    cache = kwargs.get("cache")
    if cache is not None:
        k, v = cache.update(k, v, attn.layer_idx)
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = mask[:, :, -1:, :]
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    out, _ = interface(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling,
                       sliding_window=getattr(attn, "sliding_window", None))
    h = hidden[:, -1:] + attn.o_proj(out.reshape(b, 1, -1).contiguous())
    return h + block.mlp(block.post_attention_layernorm(h))


def replay_decoder(parts: DecoderParts, state: ReplayState, block: int, hidden: torch.Tensor, *,
                   answer_only: bool = True) -> torch.Tensor:
    """Run blocks ``block..N-1`` (``block == N``: none), the final norm and the head on ``hidden``.

    ``hidden``: ``(r * b, seq, d)``, ``r`` stacked copies of the batch (row ``i`` = sample
    ``i % b``). Returns ``(r * b, vocab)`` next-token logits at the last position. ``block == N``
    means ``hidden`` is already the final norm's output.
    """
    b = state.batch_size
    r = hidden.shape[0] // b
    n = len(parts.layers)
    h = hidden
    for i in range(block, n):
        layer = parts.layers[i]
        device = module_device(layer)
        kwargs = repeat_batch(state.block_kwargs[i], r, b, device)
        h = h.to(device)
        if i == n - 1 and answer_only and supports_last_position(layer):
            h = last_position_block(layer, h, kwargs)
        else:
            h = layer(h, **kwargs)
    if block < n:
        h = parts.norm(h[:, -1:, :].to(module_device(parts.norm)))
    return parts.head(h[:, -1:, :].to(module_device(parts.head)))[:, 0]
