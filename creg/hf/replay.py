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

from typing import Any

import torch

from creg.hf.capture import ReplayState
from creg.hf.decoder import DecoderParts, module_device
from creg.hf.last_position import last_position_block, supports_last_position


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
