"""Which tokens the model answers with, found from its own chat template and tokenizer.

The class logits are the next-token logits of the option tokens "1".."4". *Which* token is
"1", and after which position, depends on the tokenizer: Qwen's byte-level BPE continues
``<|im_start|>assistant\\n`` with the digit itself, while Llama-family SentencePiece tokenizers
encode ``"ASSISTANT: 1"`` as ``... ":" "▁" "1"`` -- the token after the prompt is the
prefix-space piece, not a digit. :func:`answer_tokens` tokenizes the conversation with each
answer written out by the chat template and reads off (a) the tokens between the generation
prompt and the option (the *answer prefix*, fed to the model after the prompt) and (b) the
option's own token. A clear error says why when an option is not one token there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from creg.core.prompts import OPTION_TOKENS


@dataclass(frozen=True)
class AnswerTokens:
    """``prefix_ids``: fed after the generation prompt; ``option_ids``: tokens of "1".."4"."""

    prefix_ids: tuple[int, ...]
    option_ids: tuple[int, ...]


def answer_tokens(tokenizer, prompt_text: str, answered_text: Callable[[str], str], model_name: str = "") -> AnswerTokens:
    """The answer prefix and option tokens of ``tokenizer``.

    ``prompt_text``: the conversation up to the generation prompt; ``answered_text(option)``:
    the same conversation with the assistant's answer ``option`` (both rendered by the chat
    template). Special tokens are not added to either (they only shift both alike).
    """
    base = tokenizer.encode(prompt_text, add_special_tokens=False)
    prefixes, ids = [], []
    for option in OPTION_TOKENS:
        full = tokenizer.encode(answered_text(option), add_special_tokens=False)
        if full[: len(base)] != base:
            raise ValueError(
                f"the tokenizer of {model_name!r} tokenizes the prompt differently when answer {option!r} follows "
                "it; creg cannot tell where the answer starts"
            )
        rest = full[len(base):]
        j = next((j for j, t in enumerate(rest) if tokenizer.decode([t]).strip() == option), None)
        pieces = [tokenizer.decode([t]) for t in rest[:4]]
        if j is None or not tokenizer.decode(rest[: j + 1]).strip() == option:
            raise ValueError(
                f"answer {option!r} is not one token after the prompt for the tokenizer of {model_name!r} "
                f"(it continues {pieces}); creg reads the class logits from single-token options 1..4"
            )
        prefixes.append(tuple(rest[:j]))
        ids.append(rest[j])
    if len(set(prefixes)) != 1:
        raise ValueError(f"the options 1..4 follow different prefixes {prefixes} for the tokenizer of {model_name!r}")
    return AnswerTokens(prefix_ids=prefixes[0], option_ids=tuple(ids))
