"""Running the positions that every row of a batch shares once: the cached text prefix of COS.

Causal occlusion (:mod:`creg.explain.occlusion`) sends one sample's occluded copies to the model
together, one row each. Every row has the same text, so the decoder's input embeddings agree
on the text before the image (the system prompt and the user turn's opening, about 15
tokens on Qwen2-VL) and differ from the first image token on. In a causal decoder a
position's hidden state, keys and values depend only on the embeddings at and before it: the
shared leading positions give every row the same keys and values, and need computing once.

:class:`SharedPrefix` hooks the language model (``model.get_decoder()``, transformers' text
model that takes ``inputs_embeds``): on a call whose rows all have the same first ``P``
embeddings (and the same position ids there, no padding), it runs those ``P`` positions once,
on row 0, into a key/value cache (transformers' ``DynamicCache``), repeats the cache over the
rows and hands the language model the remaining positions with that cache -- the rows' own
positions attend to the shared ones through it, as in generation. A :class:`PrefixMemo` keeps
those keys and values for the next call (every sample has the same text before its image). The
answer row (the last)
is never shared, so ``P <= seq - 1``. ``P`` is found by comparing the rows' embeddings, so a
batch whose rows differ from the first token on (several samples) runs as before.

Under ``sdpa`` the cached keys would cost more than they save: transformers gives a query
shorter than its keys an explicit mask, and the CPU kernel then computes every score instead
of skipping the causal upper triangle (docs/speed.md).
So while the shared positions run, the language model's attention is
:func:`prefix_causal_sdpa`: the rows' queries get ``P`` zero queries in front, which makes
them as long as the keys, sdpa's own causal kernel runs with no mask, and the ``P`` extra
output rows are dropped -- the answer rows' numbers are sdpa's, the causal skip kept. Other
kernels (eager, flash), sliding-window layers and a config with sub-configs keep the model's
own kernel and transformers' mask.

It is exact for a causal decoder (round-off aside: the prefix runs at batch 1): an adapter
whose decoder lets a position read later ones (bidirectional image tokens, a prefix-LM)
declares ``caches_text_prefix = False`` (:class:`creg.hf.HFAdapter`). A call it cannot
handle -- a prepared mask (a dict or a 4-D tensor), padding, a cache already given, any other
per-token tensor argument (vision features injected at later layers) -- runs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: The attention implementation the language model runs under while its rows share positions.
PREFIX_SDPA = "creg_prefix_sdpa"

#: Keyword arguments of the language model that the hook understands; any other tensor argument
#: (e.g. vision features added at later layers) makes it leave the call alone.
_KNOWN = frozenset({"input_ids", "inputs_embeds", "attention_mask", "position_ids", "cache", "use_cache",
                    "return_dict", "output_attentions", "output_hidden_states"})


def shared_prefix_length(embeds: torch.Tensor, position_ids: torch.Tensor | None = None) -> int:
    """How many leading positions every row of ``embeds`` ``(b, seq, d)`` has equal (and equal
    ``position_ids`` ``(..., b, seq)`` there), at most ``seq - 1``; 0 for a single row."""
    b, seq = embeds.shape[:2]
    if b < 2:
        return 0
    same = (embeds == embeds[:1]).flatten(2).all(-1).all(0)  # seq
    if position_ids is not None:
        same &= (position_ids == position_ids[..., :1, :]).reshape(-1, b, seq).all(0).all(0)
    return min(int(same.int().cumprod(0).sum()), seq - 1)


def prefix_causal_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, Any]:
    """transformers' ``sdpa`` attention for queries ``(b, heads, q, d)`` that are the last ``q`` of
    the ``k`` key positions (cached ones first), causal, no padding: ``k - q`` zero queries go in
    front so that sdpa's causal kernel applies (``q == k``, no mask), and their rows are dropped
    from the output ``(b, q, heads, d)``. A single query (the answer row) sees every key."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # lazy: transformers

    extra = key.shape[2] - query.shape[2]
    if extra <= 0 or query.shape[2] == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None:
        raise RuntimeError("prefix_causal_sdpa serves rows without padding; this call has a mask")
    pad = query.new_zeros(query.shape[0], query.shape[1], extra, query.shape[3])
    out, weights = sdpa_attention_forward(module, torch.cat([pad, query], dim=2), key, value, None, **kwargs)
    return out[:, extra:], weights


def _register() -> None:
    from transformers import AttentionInterface  # lazy: transformers
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask  # lazy: transformers

    AttentionInterface.register(PREFIX_SDPA, prefix_causal_sdpa)
    AttentionMaskInterface.register(PREFIX_SDPA, flash_attention_mask)  # None without padding: the kernel's causal flag


def _switches_to_prefix_sdpa(config: Any) -> bool:
    """The language model runs ``sdpa`` on full-attention layers only and its config has no sub-configs."""
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa" or getattr(config, "sub_configs", None):
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False
    return all(t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"])


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


class PrefixMemo:
    """The keys and values of the last shared prefix, kept across calls: every sample of a run
    has the same text before its image, so the prefix runs once per run, not once per sample.
    Reused only for the same embeddings and position ids and the same parameters (their
    identities and in-place versions: randomised or reloaded weights make it stale)."""

    def __init__(self):
        self.key: tuple | None = None
        self.embeds: torch.Tensor | None = None  # (P, d)
        self.positions: torch.Tensor | None = None  # (..., P)
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer, (1, kv_heads, P, head_dim) each

    @staticmethod
    def _weights(module: nn.Module) -> tuple | None:
        """The parameters' identities and versions; None when a parameter has no version counter
        (weights that accelerate loads for each call of an offloaded block, in inference mode)."""
        params = list(module.parameters())
        if any(t.is_inference() for t in params):
            return None
        return tuple((id(t), t._version) for t in params)

    def lookup(self, module: nn.Module, embeds: torch.Tensor, positions: torch.Tensor | None):
        """The stored ``kv`` for row-0 ``embeds`` ``(P, d)`` and ``positions`` ``(..., P)``, or None."""
        if self.embeds is None or self.embeds.shape != embeds.shape:
            return None
        weights = self._weights(module)
        if weights is None or weights != self.key:
            return None
        if (positions is None) != (self.positions is None):
            return None
        if not torch.equal(self.embeds, embeds) or (positions is not None and not torch.equal(self.positions, positions)):
            return None
        return self.kv

    def store(self, module: nn.Module, embeds: torch.Tensor, positions: torch.Tensor | None, cache: Any) -> None:
        weights = self._weights(module)
        if weights is None or any(getattr(layer, "is_sliding", False) for layer in cache.layers):
            return  # untracked weights; or a sliding-window layer, which keeps only its window
        self.key, self.embeds = weights, embeds.clone()
        self.positions = None if positions is None else positions.clone()
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]


class SharedPrefix:
    """Context manager: while it is open, ``language_model`` runs the leading positions its
    rows share once (see module docstring). ``shared`` records ``P`` of every call (0: run
    unchanged); ``memo`` (optional) keeps the prefix's keys and values for later calls."""

    def __init__(self, language_model: nn.Module, memo: PrefixMemo | None = None):
        self.language_model = language_model
        self.memo = memo
        self.shared: list[int] = []
        self._handles: list[Any] = []
        self._inside = False
        self._restore: str | None = None  # the attention implementation to put back after the call

    def _plan(self, kwargs: dict[str, Any]) -> int:
        embeds = kwargs.get("inputs_embeds")
        if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3 or kwargs.get("cache") is not None:
            return 0
        if kwargs.get("input_ids") is not None or any(_has_tensor(v) for k, v in kwargs.items() if k not in _KNOWN):
            return 0
        mask = kwargs.get("attention_mask")
        if mask is not None and not (isinstance(mask, torch.Tensor) and mask.dim() == 2 and bool(mask.all())):
            return 0  # a prepared mask, or padding
        positions = kwargs.get("position_ids")
        if positions is not None and (positions.dim() < 2 or positions.shape[-2:] != embeds.shape[:2]):
            return 0
        return shared_prefix_length(embeds, positions)

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        if self._inside or args:
            return None
        p = self._plan(kwargs)
        self.shared.append(p)
        if p == 0:
            return None
        from transformers import DynamicCache  # lazy: transformers

        embeds, positions, mask = kwargs["inputs_embeds"], kwargs.get("position_ids"), kwargs.get("attention_mask")
        b = embeds.shape[0]
        config = getattr(module, "config", None)
        if _switches_to_prefix_sdpa(config):
            _register()
            self._restore, config._attn_implementation = config._attn_implementation, PREFIX_SDPA
        cache = DynamicCache(config=config)
        first = (embeds[0, :p], None if positions is None else positions[..., 0, :p])
        kept = self.memo.lookup(module, *first) if self.memo is not None else None
        if kept is not None:
            for i, (k, v) in enumerate(kept):
                cache.update(k, v, i)
        else:
            head = {k: v for k, v in kwargs.items() if k not in ("inputs_embeds", "position_ids", "attention_mask", "cache")}
            self._inside = True
            try:
                module(**head, inputs_embeds=embeds[:1, :p],
                       position_ids=None if positions is None else positions[..., :1, :p],
                       attention_mask=None if mask is None else mask[:1, :p], cache=cache)
            finally:
                self._inside = False
            if self.memo is not None:
                self.memo.store(module, *first, cache)
        cache.batch_repeat_interleave(b)
        return args, {**kwargs, "inputs_embeds": embeds[:, p:], "cache": cache,
                      "position_ids": None if positions is None else positions[..., p:]}

    def _put_back(self, *_) -> None:
        if self._restore is not None and not self._inside:
            self.language_model.config._attn_implementation, self._restore = self._restore, None

    def __enter__(self) -> "SharedPrefix":
        lm = self.language_model
        self._handles = [lm.register_forward_pre_hook(self._pre_hook, with_kwargs=True, prepend=True),
                         lm.register_forward_hook(self._put_back, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inside = False
        self._put_back()
