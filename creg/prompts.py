"""The prompt templates of the paper's Appendix A.1.

Each template asks for one of four numbered options, "1".."4" = left, right, above, below
(:data:`creg.sample.RELATIONS`). Template A is the paper's default.
"""

from __future__ import annotations

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


def resolve_template(prompt: str) -> str:
    """A template name ("A", "B", "C") or a literal template containing ``{ref}`` and ``{tgt}``."""
    if prompt in PROMPTS:
        return PROMPTS[prompt]
    if "{ref}" in prompt and "{tgt}" in prompt:
        return prompt
    raise ValueError(
        f"unknown prompt {prompt!r}: use one of {', '.join(PROMPTS)} or a template with {{ref}} and {{tgt}}"
    )


def render_prompt(prompt: str, ref: str, tgt: str) -> str:
    """The question text for one sample."""
    return resolve_template(prompt).format(ref=ref, tgt=tgt)
