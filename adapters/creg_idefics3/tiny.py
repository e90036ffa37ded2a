"""A tiny, randomly initialised Idefics3 (SmolVLM) checkpoint built locally (no hub access).

:func:`build_tiny_idefics3` writes a directory laid out like HuggingFaceTB/SmolVLM-Instruct:
``config.json`` + weights of ``Idefics3ForConditionalGeneration`` (SigLIP-style vision tower,
pixel-shuffle connector, Llama decoder), a tokenizer with Idefics3's image tokens
(``<fake_token_around_image>``, ``<image>``, ``<global-img>``, ``<row_r_col_c>``), SmolVLM's
chat template (``User:<image>...<end_of_utterance>\\nAssistant:``, the answer after a space),
the Idefics3 image processor (longest edge to ``longest_edge``, then tiles of ``tile_size``
px plus the global image) and ``Idefics3Processor``'s configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from creg.hf.tiny_configs import TINY_SIZES

#: The chat template of HuggingFaceTB/SmolVLM-Instruct.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                  "<global-img>", *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))

DEFAULTS: dict[str, Any] = {
    **TINY_SIZES,
    "tile_size": 112,
    "longest_edge": 336,
}


def build_tiny_idefics3(out_dir: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny Idefics3 checkpoint to ``out_dir``; ``overrides`` may set any key of :data:`DEFAULTS`
    (``tile_size`` is the vision tower's image size, 384 in SmolVLM; ``longest_edge`` 4 x 384 there)."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config
    from creg.hf.tiny_tokenizers import build_qwen2_tokenizer

    c = tiny_sizes(DEFAULTS, overrides, "Idefics3")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer(SPECIAL_TOKENS, SMOLVLM_CHAT_TEMPLATE, vocab_size=c["vocab_size"],
                                      eos_token="<end_of_utterance>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    tile, patch, scale = c["tile_size"], c["patch_size"], 2
    config = Idefics3Config(
        text_config=tiny_text_config(c, vocab_size=padded_vocab_size(tokenizer), model_type="llama",
                                     bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<end_of_utterance>"],
                                     pad_token_id=ids["<|endoftext|>"]),
        vision_config={"hidden_size": c["vision_hidden_size"], "intermediate_size": 2 * c["vision_hidden_size"],
                       "num_hidden_layers": c["vision_layers"], "num_attention_heads": c["vision_heads"],
                       "image_size": tile, "patch_size": patch},
        image_token_id=ids["<image>"], scale_factor=scale, tie_word_embeddings=False,
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    Idefics3ForConditionalGeneration(config).eval().save_pretrained(out)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": c["longest_edge"]}, max_image_size={"longest_edge": tile})
    Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=(tile // patch // scale) ** 2,
                      chat_template=SMOLVLM_CHAT_TEMPLATE).save_pretrained(out)
    return out
