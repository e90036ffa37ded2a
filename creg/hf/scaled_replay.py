"""The last block replayed on per-position scalings of its input, with its keys and values once.

Integrated gradients at the input h of the last decoder block walks t * h (t in [0, 1]; t is one
number per path point, or one per position to read each token's attribution). A pre-norm block
reads position j through ``RMSNorm(t_j h_j) = c_j(t_j) * (w * h_j)`` with the per-position scalar
``c_j(t) = t / sqrt(t^2 mean(h_j^2) + eps)``, and the key and value projections and the rotary
embedding are linear, so every position's key and value on the path are

    K_j(t) = c_j(t) * rot(W_k (w * h_j)) + rot(b_k),      V_j(t) = c_j(t) * W_v (w * h_j) + b_v

-- the two projections are computed once per batch (:func:`scaled_last_block`), and each path
point costs one attention row (the answer's query), one MLP row and an elementwise scaling of
the keys and values, instead of the whole block: the keys and values on the path are never
formed, q . K_j(t) = c_j(t) (q . K_unit_j) + q . K_bias_j and sum_j p_j V_j(t) likewise, so a path
point costs two ``(heads, s)`` products with the shared projections (eager attention's softmax
in float32, as the attention stream computes it). The answer position's own row (its query and
residual) is computed as the block computes it, and the head computes the answer options' logits
only (four rows of its weight instead of the vocabulary). The result equals the generic replay
(:meth:`creg.plugins.adapter.VLMAdapter.scaled_layer_replay`) to float round-off
(tests/test_scaled_replay.py). A block whose input norm is not this RMSNorm (checked on the
batch's own rows) or that normalises queries and keys per head gets None: the caller falls back.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from creg.hf.attention_stream import additive_mask
from creg.hf.capture import ReplayState
from creg.hf.decoder import DecoderParts, module_device
from creg.hf.last_position import apply_rotary, supports_last_position
from creg.hf.replay import repeat_batch


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


def _head_rows(head: torch.nn.Module, token_ids: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The head restricted to ``token_ids`` (a linear head: those rows of its weight), else the
    whole head then the columns."""
    weight = getattr(head, "weight", None)
    if isinstance(head, torch.nn.Linear) and isinstance(weight, torch.Tensor) and not weight.is_meta \
            and "forward" not in vars(head):
        w = weight[token_ids]
        bias = head.bias[token_ids] if head.bias is not None else None
        return lambda x: F.linear(x, w, bias)
    return lambda x: head(x)[..., token_ids]


def scaled_last_block(parts: DecoderParts, state: ReplayState, hidden: torch.Tensor, token_ids: list[int],
                      ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``hidden`` ``(b, s, d)``: the last block's input from the forward pass. Returns
    ``t (r * b, s) -> (r * b, len(token_ids))`` the next-token logits of ``token_ids`` at the
    answer (last) position with ``t * hidden`` as the block's input (module docstring; the head
    computes those rows of its weight only), or None if the block does not allow it."""
    n = len(parts.layers)
    block = parts.layers[n - 1]
    attn = block.self_attn
    if "forward" in vars(block) or any(p.is_meta for p in block.parameters()):
        return None  # accelerate's hooks (offloaded weights load only inside the block's own forward)
    if (not supports_last_position(block) or hasattr(attn, "q_norm") or hasattr(attn, "k_norm")
            or getattr(attn, "sliding_window", None) is not None or getattr(attn.config, "attn_logit_softcapping", None)):
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

        k_unit, _ = apply_rotary(attn, *(2 * [_heads(F.linear(unit, attn.k_proj.weight), hd)]), cos, sin)
        k_bias, _ = apply_rotary(attn, *(2 * [bias(attn.k_proj)]), cos, sin)
        v_unit, v_bias = _heads(F.linear(unit, attn.v_proj.weight), hd), bias(attn.v_proj)
        mean_sq = h.float().pow(2).mean(-1)  # b s
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = mask[:, :, -1:, :]
    elif mask is not None:
        return None  # a 2-D padding mask (flash kernels): the generic replay handles it
    additive = additive_mask(mask, 1, s)  # b|1 1 1 s, float32, or None
    kv_heads = k_unit.shape[1]
    groups = attn.config.num_attention_heads // kv_heads
    head = _head_rows(parts.head, token_ids)
    cos_row, sin_row = cos[:, -1:], sin[:, -1:]

    def replay(t: torch.Tensor) -> torch.Tensor:
        r = t.shape[0] // b
        t = t.to(device, torch.float32)
        c = (t * torch.rsqrt(t.square() * mean_sq.repeat(r, 1) + eps)).view(r, b, 1, 1, s)
        row = (t[:, -1:, None] * h[:, -1:].float().repeat(r, 1, 1)).to(h.dtype)  # (r b) 1 d
        q = _heads(attn.q_proj(block.input_layernorm(row)), hd)  # (r b) heads 1 hd
        q, _ = apply_rotary(attn, q, q, cos_row.repeat(r, *[1] * (cos.dim() - 1)),
                             sin_row.repeat(r, *[1] * (sin.dim() - 1)))
        q = q.reshape(r, b, kv_heads, groups, hd)  # query head = kv head * groups + g (repeat_kv's order)
        # the answer's attention row, K_j = c_j K_unit_j + K_bias_j never formed: q.K_j = c_j (q.K_unit_j) + q.K_bias_j
        scores = (c * torch.einsum("rbkgd,bksd->rbkgs", q, k_unit).float()
                  + torch.einsum("rbkgd,bksd->rbkgs", q, k_bias).float()) * attn.scaling
        if additive is not None:
            scores = scores + additive.view(1, -1, 1, 1, s)
        p = torch.softmax(scores, dim=-1)
        out = (torch.einsum("rbkgs,bksd->rbkgd", (p * c).to(v_unit.dtype), v_unit)
               + torch.einsum("rbkgs,bksd->rbkgd", p.to(v_bias.dtype), v_bias))
        row = row + attn.o_proj(out.reshape(r * b, 1, -1))
        row = row + block.mlp(block.post_attention_layernorm(row))
        row = parts.norm(row.to(module_device(parts.norm)))
        return head(row.to(module_device(parts.head)))[:, 0]

    return replay
