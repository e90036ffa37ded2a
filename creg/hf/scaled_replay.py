"""The last block replayed on per-position scalings of its input, with its keys and values once.

Integrated gradients at the input h of the last decoder block walks t * h (t in [0, 1]; t is one
number per path point, or one per position to read each token's attribution). A pre-norm block
reads position j through ``RMSNorm(t_j h_j) = c_j(t_j) * (w * h_j)`` with the per-position scalar
``c_j(t) = t / sqrt(t^2 mean(h_j^2) + eps)``, and the key and value projections and the rotary
embedding are linear, so every position's key and value on the path are

    K_j(t) = c_j(t) * rot(W_k (w * h_j)) + rot(b_k),      V_j(t) = c_j(t) * W_v (w * h_j) + b_v

-- the two projections are computed once per batch (:func:`scaled_last_block`), and each path
point costs one attention row (the answer's query), one MLP row and an elementwise scaling of
the keys and values, instead of the whole block. The answer position's own row (its query and
residual) is computed as the block computes it. The result equals the generic replay
(:meth:`creg.adapter.VLMAdapter.scaled_layer_replay`) to float round-off
(tests/test_scaled_replay.py). A block whose input norm is not this RMSNorm (checked on the
batch's own rows) or that normalises queries and keys per head gets None: the caller falls back.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .capture import ReplayState
from .decoder import DecoderParts, module_device
from .replay import _apply_rotary, repeat_batch, supports_last_position


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(b, s, n * head_dim) -> (b, n, s, head_dim)``."""
    b, s, _ = x.shape
    return x.view(b, s, -1, head_dim).transpose(1, 2)


def rms_scale(norm: torch.nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """(``(b, s, d)`` ``w * h``, eps) if ``norm`` is ``w * h / sqrt(mean(h^2) + eps)`` on ``h``
    (checked on the batch's rows against the module itself), else None."""
    eps, weight = getattr(norm, "variance_epsilon", None), getattr(norm, "weight", None)
    if not isinstance(eps, float) or not isinstance(weight, torch.Tensor) or weight.shape != h.shape[-1:]:
        return None
    hf = h.float()
    mine = weight * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)).to(h.dtype)
    if not torch.allclose(norm(h), mine, rtol=1e-4, atol=1e-5 * float(mine.abs().max().clamp_min(1e-30))):
        return None
    return weight * h, eps


def scaled_last_block(parts: DecoderParts, state: ReplayState, hidden: torch.Tensor,
                      ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``hidden`` ``(b, s, d)``: the last block's input from the forward pass. Returns
    ``t (r * b, s) -> (r * b, vocab)`` next-token logits at the answer (last) position with
    ``t * hidden`` as the block's input (module docstring), or None if the block does not allow it."""
    n = len(parts.layers)
    block = parts.layers[n - 1]
    attn = block.self_attn
    if not supports_last_position(block) or hasattr(attn, "q_norm") or hasattr(attn, "k_norm"):
        return None
    device = module_device(block)
    b, s, _ = hidden.shape
    kwargs = repeat_batch(state.block_kwargs[n - 1], 1, b, device)
    with torch.no_grad():
        h = hidden.detach().to(device)
        scaled = rms_scale(block.input_layernorm, h)
        if scaled is None:
            return None
        unit, eps = scaled
        hd = attn.head_dim
        cos, sin = kwargs["position_embeddings"]

        def bias(proj: torch.nn.Linear) -> torch.Tensor:
            out = proj.weight.shape[0]
            value = proj.bias if proj.bias is not None else torch.zeros(out, dtype=unit.dtype, device=device)
            return _heads(value.expand(b, s, out), hd)

        k_unit, _ = _apply_rotary(attn, *(2 * [_heads(F.linear(unit, attn.k_proj.weight), hd)]), cos, sin)
        k_bias, _ = _apply_rotary(attn, *(2 * [bias(attn.k_proj)]), cos, sin)
        v_unit, v_bias = _heads(F.linear(unit, attn.v_proj.weight), hd), bias(attn.v_proj)
        mean_sq = h.float().pow(2).mean(-1)  # b s
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = mask[:, :, -1:, :]

    def replay(t: torch.Tensor) -> torch.Tensor:
        r = t.shape[0] // b
        t = t.to(device, torch.float32)
        c = t * torch.rsqrt(t.square() * mean_sq.repeat(r, 1) + eps)  # (r b) s
        c = c.view(r, b, 1, s, 1).to(unit.dtype)
        k = (c * k_unit + k_bias).reshape(r * b, *k_unit.shape[1:])
        v = (c * v_unit + v_bias).reshape(r * b, *v_unit.shape[1:])
        row = (t[:, -1:, None] * h[:, -1:].float().repeat(r, 1, 1)).to(h.dtype)  # (r b) 1 d
        q = _heads(attn.q_proj(block.input_layernorm(row)), hd)
        q, _ = _apply_rotary(attn, q, q, cos[:, -1:].repeat(r, *[1] * (cos.dim() - 1)),
                             sin[:, -1:].repeat(r, *[1] * (sin.dim() - 1)))
        m = mask.repeat(r, 1, 1, 1) if isinstance(mask, torch.Tensor) and mask.dim() == 4 else mask
        out, _ = interface(attn, q, k, v, m, dropout=0.0, scaling=attn.scaling,
                           sliding_window=getattr(attn, "sliding_window", None))
        row = row + attn.o_proj(out.reshape(r * b, 1, -1).contiguous())
        row = row + block.mlp(block.post_attention_layernorm(row))
        row = parts.norm(row.to(module_device(parts.norm)))
        return parts.head(row.to(module_device(parts.head)))[:, 0]

    return replay
