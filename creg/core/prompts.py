"""The prompt templates of the paper's Appendix A.1.

Each template asks for one of four numbered options, "1".."4" = left, right, above, below
(:data:`creg.core.sample.RELATIONS`). Template A is the paper's default.
"""

from __future__ import annotations

import string

PROMPTS: dict[str, str] = {
    "A": (
        "In this image, where is the {tgt} relative to the {ref}? Choose one option: "
        "1) to the left, 2) to the right, 3) above, 4) below. Answer with just the number."
    ),
    "B": (
        "Look at the image. Is the {tgt} to the left (1), right (2), above (3), or below (4) "
        "the {ref}? Answer with one number."
    ),
    "C": (
        "I can see two objects: {ref} and {tgt}. What is the spatial position of {tgt} "
        "relative to {ref}? Options: 1=left, 2=right, 3=above, 4=below. Answer:"
    ),
}

#: The answer tokens whose next-token logits are the class logits z_1..z_4.
OPTION_TOKENS: tuple[str, ...] = ("1", "2", "3", "4")

DEFAULT_PROMPT = "A"


#: The only fields a literal template may hold.
TEMPLATE_FIELDS = frozenset({"ref", "tgt"})


def resolve_template(prompt: str) -> str:
    """A template name ("A", "B", "C") or a literal template containing ``{ref}`` and ``{tgt}`` and no
    other field (``{0}``, ``{x.y}``, a format spec or a stray brace is a ValueError; ``{{``/``}}``
    write a literal brace)."""
    if prompt in PROMPTS:
        return PROMPTS[prompt]

    if not isinstance(prompt, str) or "{ref}" not in prompt or "{tgt}" not in prompt:
        raise ValueError(
            f"unknown prompt {prompt!r}: use one of {', '.join(PROMPTS)} or a template with {{ref}} and {{tgt}}"
        )
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(prompt) if name is not None]
    except ValueError as e:
        raise ValueError(f"prompt {prompt!r}: {e} (write a literal brace as {{{{ or }}}})") from None
    bad = [name for name, spec, conv in fields if name not in TEMPLATE_FIELDS or spec or conv]
    if bad:
        raise ValueError(f"prompt {prompt!r}: only the fields {{ref}} and {{tgt}} are allowed, got {{{bad[0]}}} "
                         "(write a literal brace as {{ or }})")
    return prompt


def render_prompt(prompt: str, ref: str, tgt: str) -> str:
    """The question text for one sample."""
    return resolve_template(prompt).format(ref=ref, tgt=tgt)
