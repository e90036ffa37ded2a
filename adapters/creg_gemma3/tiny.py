"""A tiny, randomly initialised Gemma 3 checkpoint built locally (no hub access).

:func:`build_tiny_gemma3` writes a directory laid out like google/gemma-3-4b-it:
``config.json`` + weights of ``Gemma3ForConditionalGeneration`` (SigLIP vision tower, average
pooling to ``mm_tokens_per_image`` tokens, Gemma 3 decoder), a tokenizer that declares
``<start_of_image>`` / ``<end_of_image>`` / ``<image_soft_token>`` as ``boi_token`` /
``eoi_token`` / ``image_token``, Gemma 3's chat template (``<start_of_turn>user`` ...
``<start_of_turn>model``), the Gemma 3 image processor (whole image stretched to a square;
pan-and-scan crops when asked) and ``Gemma3Processor``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from creg.hf.tiny_configs import TINY_SIZES

#: google/gemma-3-4b-it's template reduced to user / assistant turns with images and text.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages -%}{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' }}{%- for item in message['content'] -%}{%- if item['type'] == 'image' -%}"
    "{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", *IMAGE_TOKENS.values())

DEFAULTS: dict[str, Any] = {
    **TINY_SIZES,
    "image_size": 112,
    "tokens_per_side": 4,
    "min_crop_size": 32,
}


def build_tiny_gemma3(out_dir: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny Gemma 3 checkpoint to ``out_dir``; ``overrides`` may set any key of :data:`DEFAULTS`
    (``image_size`` 896, ``tokens_per_side`` 16 and ``min_crop_size`` 256 in the releases)."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config
    from creg.hf.tiny_tokenizers import build_qwen2_tokenizer

    c = tiny_sizes(DEFAULTS, overrides, "Gemma3")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer(SPECIAL_TOKENS, GEMMA3_CHAT_TEMPLATE, vocab_size=c["vocab_size"],
                                      eos_token="<end_of_turn>", pad_token="<pad>", bos_token="<bos>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = c["text_hidden_size"] // c["text_heads"]
    config = Gemma3Config(
        text_config=tiny_text_config(c, vocab_size=padded_vocab_size(tokenizer), model_type="gemma3_text", head_dim=head_dim,
                                     query_pre_attn_scalar=head_dim, sliding_window=4096, bos_token_id=ids["<bos>"],
                                     eos_token_id=ids["<end_of_turn>"], pad_token_id=ids["<pad>"]),
        vision_config={"model_type": "siglip_vision_model", "hidden_size": c["vision_hidden_size"],
                       "intermediate_size": 2 * c["vision_hidden_size"], "num_hidden_layers": c["vision_layers"],
                       "num_attention_heads": c["vision_heads"], "image_size": c["image_size"], "patch_size": c["patch_size"]},
        mm_tokens_per_image=c["tokens_per_side"] ** 2, boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # initialised to zeros, which would make every image the same to the decoder
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=0.02)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"  # declare the image tokens as the releases do
    path.write_text(json.dumps({**json.loads(path.read_text()), **IMAGE_TOKENS}, indent=2, sort_keys=True) + "\n")
    from transformers import AutoTokenizer

    image_processor = Gemma3ImageProcessorPil(size={"height": c["image_size"], "width": c["image_size"]},
                                              pan_and_scan_min_crop_size=c["min_crop_size"])
    Gemma3Processor(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(out),
                    chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=c["tokens_per_side"] ** 2).save_pretrained(out)
    return out
