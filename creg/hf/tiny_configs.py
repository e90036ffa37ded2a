"""The decoder part of the tiny checkpoints that the first-party adapters build for tests.

Every ``build_tiny_*`` builder takes the same size keys for its language model
(``text_hidden_size``, ``text_intermediate_size``, ``text_layers``, ``text_heads``,
``text_kv_heads``); :func:`tiny_text_config` turns them into the ``text_config`` of the
transformers config, so the mapping is written once; :func:`tiny_sizes` checks and applies a builder's overrides.
"""

from __future__ import annotations

from typing import Any, Mapping

#: The size keys every tiny checkpoint shares (a decoder of 6 layers, hidden 64; a 2-block vision
#: tower, hidden 32, patch 14); each builder adds its image keys and overrides what differs.
TINY_SIZES: dict[str, Any] = {
    "text_hidden_size": 64,
    "text_layers": 6,
    "text_heads": 4,
    "text_kv_heads": 2,
    "text_intermediate_size": 128,
    "vision_layers": 2,
    "vision_hidden_size": 32,
    "vision_heads": 2,
    "patch_size": 14,
    "vocab_size": 1024,
}


def tiny_sizes(defaults: Mapping[str, Any], overrides: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A builder's ``defaults`` with ``overrides`` applied; TypeError naming ``model`` for a key
    ``defaults`` lacks (a typo must not build a checkpoint of the wrong size)."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(f"unknown tiny {model} option(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **overrides}


def padded_vocab_size(tokenizer: Any, multiple: int = 64) -> int:
    """The tokenizer's length rounded up to ``multiple`` (the embedding table's rows)."""
    return -(-len(tokenizer) // multiple) * multiple


def tiny_text_config(sizes: Mapping[str, Any], *, vocab_size: int, **extra: Any) -> dict[str, Any]:
    """``text_config`` from a builder's size keys; ``extra`` adds or overrides keys (model_type,
    rope_parameters, special token ids)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": sizes["text_hidden_size"],
        "intermediate_size": sizes["text_intermediate_size"],
        "num_hidden_layers": sizes["text_layers"],
        "num_attention_heads": sizes["text_heads"],
        "num_key_value_heads": sizes["text_kv_heads"],
        "max_position_embeddings": 4096,
        **extra,
    }
