"""Attention maps of the decoder, taken from the pass that runs, without changing its numerics.

SDPA (and the flash kernels) never materialise the attention matrix, so transformers returns
attention weights only under eager attention -- a different kernel, whose round-off differs,
so switching a pass to eager to read its maps changes every number computed from that pass.
Instead, :class:`AttentionStream` wraps the model's *configured* attention function where
transformers looks it up (``ALL_ATTENTION_FUNCTIONS[name]``, the call every decoder attention
module makes with its query, key, value and mask): the wrapper calls the original function with
exactly the same arguments and returns its result untouched (the pass is bit-identical), and for
the attention modules registered with it, it also computes -- under ``torch.no_grad`` on detached
query and key, after the original call -- the row-stochastic map

    A = softmax(Q K^T * scaling + mask)  ``(b, heads, q, k)`` float32

(GQA: key heads repeated, as eager attention does; masked keys get float32's lowest value, as
eager's additive mask does, so a row with every key masked is uniform) and hands it to the
module's callback -- or only its mean over heads, ``(b, 1, q, k)``, when the callback has
``head_mean = True`` (:data:`creg.plugins.relevance.HEAD_MEAN`: its readers read nothing else). Nothing
is kept for backward; the map lives until the callback returns.

Modules that are not registered (the vision tower, another model in the process) go straight
to the original function. The wrapper is installed while at least one stream is open and the
previous entry is restored when the last one closes.

Masks: a 4-D boolean mask (True: attend), a 4-D additive float mask, a 2-D padding mask
(flash kernels: 1 = real token) or None (the causal and sliding-window pattern the kernel
applies itself); ``position_bias`` is added and ``softcap`` applied as eager attention does.

Cost: the map is computed in blocks of query rows (:func:`row_blocks`), each against the keys
up to the last one any of its rows attends to -- under a causal mask about half of ``Q K^T``
and of the softmax, and each block's scores stay in cache. The keys a block leaves out are
masked for every row of it, so their probability is exactly 0 either way: the map is the one
a single ``softmax(Q K^T * scaling + mask)`` over all keys gives (tests/test_attention_blocks.py).
Within a block the scores are ``(Q K^T) * scaling`` and then the mask, in eager attention's order,
and the mask is added only from the first key that some row of the block does not attend to
(under a causal mask, the block's own diagonal strip): adding 0 changes no score.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch
from torch import nn

from creg.plugins.relevance import HEAD_MEAN

__all__ = ["AttentionStream", "additive_mask", "attention_probabilities", "row_blocks"]

#: query rows per block of :func:`attention_probabilities` (a block's scores, ``heads x rows x keys``
#: float32, stay in cache).
BLOCK_ROWS = 128

#: the keyword order of transformers' attention functions after (module, query, key, value, mask).
_POSITIONAL = ("dropout", "scaling", "is_causal")

_lock = threading.Lock()
#: id(attention module) -> (its open stream, its index).
_listeners: dict[int, tuple["AttentionStream", int]] = {}
#: implementation name -> (the entry it replaced or None, number of open streams using it).
_installed: dict[str, tuple[Callable | None, int]] = {}


def _interface():
    from transformers.modeling_utils import (
        ALL_ATTENTION_FUNCTIONS,  # lazy: transformers
    )

    return ALL_ATTENTION_FUNCTIONS


def additive_mask(attention_mask: torch.Tensor | None, q_len: int, k_len: int, *, is_causal: bool = True,
                  sliding_window: int | None = None, device: torch.device | None = None) -> torch.Tensor | None:
    """The mask as float32 ``(b|1, 1|h, q, k)`` to add to the scores: 0 where a query attends,
    float32's lowest value where it does not (as eager attention's mask); None: nothing masked.

    ``attention_mask``: ``(b|1, 1|h, q, k)`` bool (True: attend) or additive float, ``(b, k)``
    padding mask (nonzero: real token), or None. The causal (and ``sliding_window``) pattern is
    applied when the mask is not 4-D, as the kernels do (queries are the last ``q`` positions).
    """
    lowest = torch.finfo(torch.float32).min
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
        mask = attention_mask[..., -k_len:]
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill_(~mask, lowest)
        return mask.float().clamp_min(lowest)
    allowed = None
    if is_causal and q_len > 1:
        where = attention_mask.device if isinstance(attention_mask, torch.Tensor) else device
        qpos = torch.arange(k_len - q_len, k_len, device=where)[:, None]
        kpos = torch.arange(k_len, device=where)[None, :]
        allowed = kpos <= qpos
        if sliding_window is not None:
            allowed = allowed & (qpos - kpos < sliding_window)
        allowed = allowed[None, None]
    if isinstance(attention_mask, torch.Tensor):  # (b, k) padding mask
        pad = attention_mask[:, None, None, -k_len:].bool()
        allowed = pad if allowed is None else allowed & pad
    if allowed is None:
        return None
    return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill_(~allowed, lowest)


def row_blocks(additive: torch.Tensor | None, q_len: int, k_len: int, rows: int = BLOCK_ROWS) -> list[tuple[int, int, int, int]]:
    """``(r0, r1, c0, c1)`` per block of about ``rows`` query rows: rows ``r0:r1`` attend to no key at or
    after ``c1``, and every one of them attends to every key before ``c0`` (in every batch row and
    head of ``additive``, :func:`additive_mask`'s result), so the mask matters only on keys
    ``c0:c1``. A block holding a row with every key masked keeps every key (eager attention makes
    that row uniform over all of them). None (nothing masked): every block keeps every key and
    needs no mask (``c0 == c1 == k_len``)."""
    n = max(1, round(q_len / rows))
    bounds = [(i * q_len // n, (i + 1) * q_len // n) for i in range(n)]  # n blocks of about ``rows`` rows
    if additive is None:
        return [(r0, r1, k_len, k_len) for r0, r1 in bounds]
    allowed = (additive > torch.finfo(torch.float32).min).reshape(-1, q_len, k_len)  # (b h|1) q k
    attends = allowed.any(-1).all(0)  # q: the row attends to some key in every batch row and head
    everywhere = allowed.all(0)  # q k: attended in every batch row and head
    allowed = allowed.any(0)  # q k
    blocks = []
    for r0, r1 in bounds:
        cols = allowed[r0:r1].any(0).nonzero()
        full = not bool(attends[r0:r1].all()) or not len(cols)
        c1 = k_len if full else int(cols[-1]) + 1
        masked = (~everywhere[r0:r1, :c1].all(0)).nonzero()
        blocks.append((r0, r1, int(masked[0]) if len(masked) else c1, c1))
    return blocks


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, *,
                            scaling: float | None = None, is_causal: bool = True, sliding_window: int | None = None,
                            position_bias: torch.Tensor | None = None, softcap: float | None = None,
                            additive: torch.Tensor | None = None,
                            blocks: list[tuple[int, int, int]] | None = None,
                            head_mean: bool = False) -> torch.Tensor:
    """``(b, h, q, d), (b, h_kv, k, d) -> (b, h, q, k)`` float32 attention probabilities
    ``softmax(Q K^T * scaling + mask)``, as eager attention computes them (a row whose keys are
    all masked is uniform); with ``head_mean``, ``(b, 1, q, k)`` their mean over heads (taken
    block by block while the block is in cache: every head's map is never written out).

    The mask arguments are :func:`additive_mask`'s; ``additive``: its result, if already made,
    and ``blocks``: :func:`row_blocks` of it (the stream makes both once per pass: every decoder
    layer gets the same mask).
    """
    b, h, q_len, d = query.shape
    k_len = key.shape[2]
    q = query.detach().float()
    k = key.detach().float()
    if k.shape[1] != h:  # GQA: query head i reads key head i // n_rep
        n_rep = h // k.shape[1]
        k = k[:, :, None].expand(b, k.shape[1], n_rep, k_len, d).reshape(b, h, k_len, d)
    scale = d ** -0.5 if scaling is None else scaling
    if additive is None:
        additive = additive_mask(attention_mask, q_len, k_len, is_causal=is_causal, sliding_window=sliding_window,
                                 device=q.device)
    if softcap is None and position_bias is None and (additive is None or additive.shape[1] == 1):
        # blocks of query rows over the (b h, q, k) scores: scale * Q K^T + mask and its softmax,
        # each block against the keys its rows attend to (module docstring)
        if blocks is None:
            blocks = row_blocks(additive, q_len, k_len)
        qf, kf = q.reshape(b * h, q_len, d), k.reshape(b * h, k_len, d).transpose(1, 2)
        heads = 1 if head_mean else h
        probs = None
        for r0, r1, c0, c1 in blocks:
            scores = torch.bmm(qf[:, r0:r1], kf[:, :, :c1]).mul_(scale)
            if c0 < c1:  # the keys some row of the block does not attend to (the causal diagonal strip)
                strip = scores.view(b, h, r1 - r0, c1)[..., c0:c1]
                strip.add_(additive[:, :, r0:r1, c0:c1])
            block = torch.softmax(scores, dim=-1)
            if head_mean:
                block = block.view(b, h, r1 - r0, c1).mean(dim=1)
            if (r0, r1, c1) == (0, q_len, k_len):  # one block of every row and key: the map itself
                return block.view(b, heads, q_len, k_len)
            if probs is None:
                probs = torch.empty(b * heads, q_len, k_len, dtype=torch.float32, device=q.device)
            probs[:, r0:r1, :c1] = block
            if c1 < k_len:
                probs[:, r0:r1, c1:] = 0.0
        return probs.view(b, heads, q_len, k_len)
    scores = torch.matmul(q, k.transpose(2, 3)).mul_(scale)
    if softcap is not None:
        scores = scores.div_(softcap).tanh_().mul_(softcap)
    if position_bias is not None:
        scores = scores.add_(position_bias.float())
    if additive is not None:
        scores = scores.add_(additive)  # lowest + a finite score stays finite: no -inf, no NaN row
    probs = torch.softmax(scores, dim=-1)
    return probs.mean(dim=1, keepdim=True) if head_mean else probs


def _streaming(original: Callable) -> Callable:
    def streaming_attention(module, query, key, value, attention_mask, *args, **kwargs):
        result = original(module, query, key, value, attention_mask, *args, **kwargs)
        listener = _listeners.get(id(module))
        if listener is not None:
            stream, index = listener
            stream._capture(index, module, query, key, attention_mask, {**dict(zip(_POSITIONAL, args)), **kwargs})
        return result

    streaming_attention.creg_original = original  # type: ignore[attr-defined]
    return streaming_attention


class AttentionStream:
    """Context manager: while open, every call of ``modules``' attention function also computes its
    attention probabilities (see module docstring) and passes ``(index, (b, heads, q, k))`` to
    ``on_attention``.

    ``modules``: attention module -> index (e.g. decoder layer). Each module's implementation
    is its ``config._attn_implementation``; it must be registered in transformers'
    ``ALL_ATTENTION_FUNCTIONS`` (sdpa, the flash kernels, ...). Eager attention is not: it
    returns its weights itself (:class:`creg.hf.capture.ForwardCapture` reads them there).
    """

    def __init__(self, modules: dict[nn.Module, int], on_attention: Callable[[int, torch.Tensor], None]):
        self.modules = modules
        self.on_attention = on_attention
        self._names: list[str] = []
        #: (the mask object, its shape key, its additive float32 form, its row blocks): every
        #: layer of a pass gets the same mask, so it is converted once
        self._mask: tuple | None = None

    def _capture(self, index: int, module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                 attention_mask: torch.Tensor | None, kwargs: dict) -> None:
        if kwargs.get("s_aux") is not None:
            raise NotImplementedError("attention sinks (s_aux) are not supported by creg's attention stream")
        is_causal = kwargs.get("is_causal")
        is_causal = getattr(module, "is_causal", True) if is_causal is None else bool(is_causal)
        shape_key = (query.shape[2], key.shape[2], is_causal, kwargs.get("sliding_window"))
        with torch.no_grad():
            if self._mask is None or self._mask[0] is not attention_mask or self._mask[1] != shape_key:
                additive = additive_mask(attention_mask, query.shape[2], key.shape[2], is_causal=is_causal,
                                         sliding_window=kwargs.get("sliding_window"), device=query.device)
                self._mask = (attention_mask, shape_key, additive, row_blocks(additive, query.shape[2], key.shape[2]))
            probs = attention_probabilities(query, key, attention_mask, scaling=kwargs.get("scaling"),
                                            position_bias=kwargs.get("position_bias"), softcap=kwargs.get("softcap"),
                                            additive=self._mask[2], blocks=self._mask[3],
                                            head_mean=getattr(self.on_attention, HEAD_MEAN, False))
        self.on_attention(index, probs)

    @staticmethod
    def implementation(module: nn.Module) -> str:
        return getattr(module.config, "_attn_implementation", None) or "eager"

    def __enter__(self) -> "AttentionStream":
        interface = _interface()
        names = sorted({self.implementation(m) for m in self.modules})
        for name in names:
            if name not in interface:
                raise ValueError(f"attention implementation {name!r} is not in transformers' ALL_ATTENTION_FUNCTIONS: "
                                 "its maps cannot be streamed (eager attention returns them itself)")
        with _lock:
            busy = [i for m, i in self.modules.items() if id(m) in _listeners]
            if busy:
                raise RuntimeError(f"attention modules {busy} already stream to another open AttentionStream")
            for name in names:
                previous, count = _installed.get(name, (None, 0))
                if count == 0:
                    current = interface[name]
                    previous = interface._local_mapping.get(name)
                    interface[name] = _streaming(current)
                _installed[name] = (previous, count + 1)
            self._names = names
            for module, index in self.modules.items():
                _listeners[id(module)] = (self, index)
        return self

    def __exit__(self, *exc) -> None:
        interface = _interface()
        with _lock:
            self._mask = None
            for module in self.modules:
                _listeners.pop(id(module), None)
            for name in self._names:
                previous, count = _installed[name]
                if count > 1:
                    _installed[name] = (previous, count - 1)
                    continue
                del _installed[name]
                if previous is None:
                    del interface[name]  # back to the library-wide entry
                else:
                    interface[name] = previous
            self._names = []

