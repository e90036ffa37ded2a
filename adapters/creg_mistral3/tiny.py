"""A tiny, randomly initialised Mistral3 (Pixtral vision) checkpoint built locally (no hub access).

:func:`build_tiny_mistral3` writes a directory laid out like
mistralai/Mistral-Small-3.1-24B-Instruct-2503 in its transformers form: ``config.json`` +
weights of ``Mistral3ForConditionalGeneration`` (Pixtral vision tower, patch merger, Mistral
decoder), a tokenizer with ``[IMG]`` / ``[IMG_BREAK]`` / ``[IMG_END]``, a Mistral-style chat
template (``[INST]`` ... ``[/INST]``), the Pixtral image processor (PIL backend; images whose
longest edge exceeds ``longest_edge`` are scaled down, every side rounded up to whole
``patch_size * 2`` px tokens) and ``PixtralProcessor``'s configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from creg.hf.tiny_configs import TINY_SIZES

#: Mistral-Small-3.1's template reduced to one user turn with images and the assistant's answer.
MISTRAL3_CHAT_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}{{- '[INST]' }}"
    "{%- for block in message['content'] %}{%- if block['type'] == 'text' %}{{- block['text'] }}"
    "{%- elif block['type'] == 'image' %}{{- '[IMG]' }}{%- endif %}{%- endfor %}{{- '[/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{%- for block in message['content'] %}{{- block['text'] }}{%- endfor %}"
    "{{- eos_token }}{%- endif %}{%- endfor %}"
)
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]")

DEFAULTS: dict[str, Any] = {
    **TINY_SIZES,
    "longest_edge": 224,
}


def build_tiny_mistral3(out_dir: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny Mistral3 checkpoint to ``out_dir``; ``overrides`` may set any key of :data:`DEFAULTS`."""
    import torch
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config
    from creg.hf.tiny_tokenizers import build_qwen2_tokenizer

    c = tiny_sizes(DEFAULTS, overrides, "Mistral3")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer(SPECIAL_TOKENS, MISTRAL3_CHAT_TEMPLATE, vocab_size=c["vocab_size"],
                                      eos_token="</s>", pad_token="<pad>", bos_token="<s>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = Mistral3Config(
        text_config=tiny_text_config(c, vocab_size=padded_vocab_size(tokenizer), model_type="mistral",
                                     head_dim=c["text_hidden_size"] // c["text_heads"], bos_token_id=ids["<s>"],
                                     eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"]),
        vision_config={"model_type": "pixtral", "hidden_size": c["vision_hidden_size"],
                       "intermediate_size": 2 * c["vision_hidden_size"], "num_hidden_layers": c["vision_layers"],
                       "num_attention_heads": c["vision_heads"], "head_dim": c["vision_hidden_size"] // c["vision_heads"],
                       "image_size": c["longest_edge"], "patch_size": c["patch_size"]},
        image_token_index=ids["[IMG]"], spatial_merge_size=2, vision_feature_layer=-1, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    Mistral3ForConditionalGeneration(config).eval().save_pretrained(out)
    image_processor = PixtralImageProcessorPil(size={"longest_edge": c["longest_edge"]}, patch_size=c["patch_size"])
    image_processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # PixtralProcessor itself needs torchvision to be built; its configuration is written as it saves it.
    (out / "processor_config.json").write_text(json.dumps({
        "processor_class": "PixtralProcessor", "patch_size": c["patch_size"], "spatial_merge_size": 2,
        "image_token": "[IMG]", "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"}, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(MISTRAL3_CHAT_TEMPLATE)
    return out
