"""A decoder that an adapter owns block by block (no transformers model under it), run the way
:meth:`creg.plugins.adapter.VLMAdapter.forward` asks: gradients from the lowest hidden state a request reads,
each block's attention streamed to ``on_attention``, and the class logits at the answer (last) position.

Used by adapters that build their own small model (``planted``) and by :class:`creg.testing.FakeVLMAdapter`,
for the forward (:func:`run_blocks`) and for the replay from a layer (:func:`replay_from`)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn


def gradient_start(block_of: Callable[[int], int], layers: Sequence[int], vision: bool) -> int | None:
    """The first hidden index whose tensor becomes a leaf with gradients: 0 when the vision activations are
    read with gradients (everything above them is tracked), else the block of the lowest layer read, else None."""
    if vision:
        return 0
    return min((block_of(l) for l in layers), default=None)


def run_blocks(blocks: Sequence[nn.Module], norm: nn.Module, head: nn.Module, x: torch.Tensor, *,
               grad_from: int | None, grad_vision: bool, block_kwargs: dict[str, Any],
               on_attention: Callable[[int, torch.Tensor], None] | None = None,
               ) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
    """``x`` ``(b, s, d)`` the embedded sequence (left-padded: the answer is the last position) ->
    ({hidden index: ``(b, s, d)``} for 0..N, the N-th after ``norm``; ``(b, classes)`` logits; ``(b,)`` answer index).

    Each block is called ``block(x, **block_kwargs)`` and returns (x, attention ``(b, h, s, s)``). Gradients are
    tracked from hidden index ``grad_from`` on (that tensor becomes a leaf unless ``grad_vision``, whose leaves are
    below ``x``); None tracks nothing."""
    n = len(blocks)
    b, length = x.shape[0], x.shape[1]
    hidden: dict[int, torch.Tensor] = {}
    for i in range(n + 1):
        if grad_from == i and not grad_vision and i < n:
            x = x.detach().requires_grad_(True)  # gradients start here, nothing below is tracked
        hidden[i] = x
        if i == n:
            break
        with torch.set_grad_enabled(grad_from is not None and i >= grad_from):
            x, attn = blocks[i](x, **block_kwargs)
        if on_attention is not None:
            on_attention(i, attn.detach())
        del attn
    answer = torch.full((b,), length - 1)
    with torch.set_grad_enabled(grad_from is not None):
        hidden[n] = norm(x)
        if grad_from == n:
            hidden[n] = hidden[n].detach().requires_grad_(True)
        logits = head(hidden[n][torch.arange(b), answer])
    return hidden, logits, answer


def replay_from(blocks: Sequence[nn.Module], norm: nn.Module, head: nn.Module, hidden: torch.Tensor, start: int,
                state: dict[str, Any], *, mask_kwarg: str) -> torch.Tensor:
    """``(r * b, s, d)`` a hidden state at index ``start`` (``r`` stacked copies of a batch of ``b``) -> ``(r * b,
    classes)`` logits: blocks ``start..N-1`` and the final norm on it (index N is after the norm: the head only),
    with the mask and answer positions the forward kept in ``state`` (``{"mask", "answer_index"}``)."""
    b = state["answer_index"].shape[0]
    r = hidden.shape[0] // b
    mask = state["mask"].repeat(r, 1, 1, 1)
    answer = state["answer_index"].repeat(r)
    x = hidden
    if start < len(blocks):
        for block in blocks[start:]:
            x, _ = block(x, **{mask_kwarg: mask})
        x = norm(x)
    return head(x[torch.arange(x.shape[0]), answer])
