"""Tokenizers for tiny local checkpoints (tests, toy models): no hub access needed.

:func:`build_qwen2_tokenizer` trains a byte-level BPE on creg's prompt templates and common
object words and wraps it in transformers' ``Qwen2Tokenizer`` with the given special tokens
and chat template -- the tokenizer family of Qwen2-VL, Qwen2.5-VL and InternVL (Qwen2 LMs).
Prompt words become single tokens or short pieces; each digit "1".."4" is one token (Qwen's
pre-tokenizer splits digits).
"""

from __future__ import annotations

import json
from typing import Sequence

from creg.core.prompts import PROMPTS

#: Words beyond the prompt templates that samples commonly name (COCO-like objects, colours).
EXTRA_WORDS = (
    "person man woman child dog cat horse bird car truck bus bicycle motorcycle chair table couch bed "
    "bottle cup bowl laptop phone book clock vase tree house sign light umbrella bag ball kite plate "
    "red green blue yellow black white orange purple gray brown circle square triangle star box "
    "object left right above below top bottom picture image you are a helpful assistant system user"
)


def training_corpus() -> list[str]:
    """Every prompt template filled with neighbouring word pairs, chat-role lines, the words."""

    words = EXTRA_WORDS.split()
    lines = [PROMPTS[name].format(ref=a, tgt=b) for name in PROMPTS for a, b in zip(words, words[1:])]
    lines += ["system\nYou are a helpful assistant.", "user\n", "assistant\n"] * 8
    lines.append(EXTRA_WORDS)
    return lines


def build_qwen2_tokenizer(special_tokens: Sequence[str], chat_template: str, *, vocab_size: int = 1024,
                          eos_token: str = "<|im_end|>", pad_token: str = "<|endoftext|>", bos_token: str | None = None):
    """A ``Qwen2Tokenizer`` (byte-level BPE with Qwen's pre-tokenizer) with ``special_tokens``
    appended after the BPE vocabulary, as in the released checkpoints. With ``bos_token`` it puts that
    token first unless told not to, as the released tokenizers of Llama-style families do."""
    from tokenizers import (  # lazy: tokenizers
        Regex,
        Tokenizer,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import Qwen2Tokenizer  # lazy: transformers
    from transformers.models.qwen2.tokenization_qwen2 import (
        PRETOKENIZE_REGEX,  # lazy: transformers
    )

    # Train with the same pre-tokenizer Qwen2Tokenizer installs, so the merges fit it.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(training_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    vocab = dict(state["vocab"])
    for tok in special_tokens:
        vocab[tok] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token=eos_token,
                               pad_token=pad_token, padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    tokenizer.chat_template = chat_template
    if bos_token is not None:
        tokenizer.bos_token = bos_token
        tokenizer.add_bos_token = True
    return tokenizer
