"""A tiny, randomly initialised InternVL checkpoint built locally (no hub access).

:func:`build_tiny_internvl` writes a directory laid out like OpenGVLab/InternVL3-2B-hf:
``config.json`` + weights of ``InternVLForConditionalGeneration`` (InternViT-style vision
tower, pixel-shuffle projector, Qwen2 decoder), a ``Qwen2Tokenizer`` with InternVL's image
tokens (``<img>``, ``</img>``, ``<IMG_CONTEXT>``, declared as the tokenizer's
``start_image_token`` / ``end_image_token`` / ``context_image_token``), the -hf chat template,
the ``GotOcr2ImageProcessor`` configuration and ``processor_config.json``. It loads back
through the same ``from_pretrained`` calls a hub id takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from creg.hf.tiny_configs import TINY_SIZES

from .chat_template import INTERNVL_CHAT_TEMPLATE

IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *IMAGE_TOKENS.values())

DEFAULTS: dict[str, Any] = {
    **TINY_SIZES,
    "tile_size": 112,
    "max_patches": 12,
}


def build_tokenizer(vocab_size: int = DEFAULTS["vocab_size"]):
    """A ``Qwen2Tokenizer`` trained on the prompts (:mod:`creg.hf.tiny_tokenizers`) with InternVL's tokens."""
    from creg.hf.tiny_tokenizers import build_qwen2_tokenizer

    return build_qwen2_tokenizer(SPECIAL_TOKENS, INTERNVL_CHAT_TEMPLATE, vocab_size=vocab_size)


def _declare_image_tokens(out: Path) -> None:
    """Name the image tokens in ``tokenizer_config.json`` as the -hf releases do; the tokenizer
    then has ``start_image_token``, ``context_image_token``, ... (and their ``*_id``)."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(IMAGE_TOKENS)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build_tiny_internvl(out_dir: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny InternVL checkpoint to ``out_dir``; ``overrides`` may set any key of
    :data:`DEFAULTS` (``tile_size`` is the vision tower's image size, 448 in the releases)."""
    import torch
    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration

    c = tiny_sizes(DEFAULTS, overrides, "InternVL")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(c["vocab_size"])
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    tile, patch = c["tile_size"], c["patch_size"]
    seq_per_tile = (tile // patch // 2) ** 2
    config = InternVLConfig(
        text_config=tiny_text_config(
            c, vocab_size=padded_vocab_size(tokenizer), model_type="qwen2",
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"]),
        vision_config={
            "hidden_size": c["vision_hidden_size"],
            "intermediate_size": 2 * c["vision_hidden_size"],
            "num_hidden_layers": c["vision_layers"],
            "num_attention_heads": c["vision_heads"],
            "image_size": tile,
            "patch_size": patch,
        },
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=seq_per_tile,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    InternVLForConditionalGeneration(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    _declare_image_tokens(out)
    GotOcr2ImageProcessor(
        size={"height": tile, "width": tile}, max_patches=c["max_patches"], crop_to_patches=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(out)
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "InternVLProcessor", "image_seq_length": seq_per_tile}, indent=2) + "\n"
    )
    (out / "chat_template.jinja").write_text(INTERNVL_CHAT_TEMPLATE)
    return out
