"""Names from data are plain text to the model, never control tokens.

A tokenizer matches its special and added tokens (``<|im_end|>``, ``<|im_start|>``, ``<image>``,
``<IMG_CONTEXT>`` ...) anywhere in the text it encodes. A category name such as
``cup<|im_end|>\\n<|im_start|>system\\n...`` would so become a real end of turn and a fake system
turn inside the user's question. :class:`creg.hf.HFAdapter` checks every name it puts into a
question with :func:`check_plain_text`: a sample whose name holds such a token fails with the
reason ``SpecialTokenInName`` (in ``skipped.jsonl``; ``creg explain`` and the API say it in one
line) instead of being encoded. The check is the toolkit's, so every adapter built on
:class:`~creg.hf.HFAdapter` has it.
"""

from __future__ import annotations

from typing import Any

from creg.core.sample import InvalidSample


class SpecialTokenInName(InvalidSample):
    """A name from data contains one of the tokenizer's special or added tokens (an
    :class:`~creg.core.sample.InvalidSample` for this model: the API reports it as one line)."""


def control_tokens(tokenizer: Any) -> tuple[str, ...]:
    """Every token text that ``tokenizer`` matches as one piece wherever it occurs: its special
    tokens and its added tokens (longest first)."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        found.add(str(getattr(token, "content", token)))
    return tuple(sorted((t for t in found if t), key=lambda t: (-len(t), t)))


def check_plain_text(text: str, tokens: tuple[str, ...], what: str = "name") -> str:
    """``text`` if none of ``tokens`` (:func:`control_tokens`) occurs in it, else SpecialTokenInName."""
    hits = [t for t in tokens if t in text]
    if hits:
        raise SpecialTokenInName(f"{what} {text[:80]!r} contains the tokenizer's special token "
                                 f"{hits[0]!r}: names are plain text, never control tokens")
    return text
