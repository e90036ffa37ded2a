"""Tiny, randomly initialised LLaVA-1.5 and LLaVA-NeXT checkpoints built locally (no hub access).

:func:`build_tiny_llava` writes a directory laid out like llava-hf/llava-1.5-7b-hf (or, with
``next=True``, llava-hf/llava-v1.6-vicuna-7b-hf): ``config.json`` + weights of the real
transformers classes (CLIP vision tower, Llama decoder), a ``LlamaTokenizer`` with the
Llama-family quirk that matters here -- "1" is a prefix-space piece ``▁`` plus the digit, so
the model answers "ASSISTANT:" with ``▁`` first -- the llava-hf chat template, and the
image processor and processor configuration. It loads back through the same
``from_pretrained`` calls a hub id takes. Seconds to build, a few MB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from creg.hf.tiny_configs import TINY_SIZES

#: The chat template of llava-hf/llava-1.5-7b-hf: "USER: <image>\n{question} ASSISTANT:".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

DEFAULTS: dict[str, Any] = {
    **TINY_SIZES,
    "vision_layers": 3,
    "image_size": 112,
}


def build_tokenizer(vocab_size: int = DEFAULTS["vocab_size"]):
    """A ``LlamaTokenizer`` (byte-fallback BPE over ``▁``-marked words) trained on the prompts.

    Digits are never merged with ``▁`` (as in Llama's vocabulary), so " 1" is ``▁`` + ``1``.
    """
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    from creg.hf.tiny_tokenizers import training_corpus

    corpus = training_corpus() + ["USER: ASSISTANT: 1 2 3 4"] * 8
    specials = ["<unk>", "<s>", "</s>"]
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    bpe = Tokenizer(models.BPE(byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(specials) - len(bytes_), show_progress=False)
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = {tok: i for i, tok in enumerate(specials + bytes_)}
    for tok in sorted(state["vocab"], key=state["vocab"].get):
        vocab.setdefault(tok, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, padding_side="left", add_bos_token=True)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"], "pad_token": "<pad>"})
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    return tokenizer


def build_tiny_llava(out_dir: str | Path, *, next: bool = False, pad_to_square: bool = False, seed: int = 0,
                     **overrides: Any) -> Path:
    """Write a tiny LLaVA-1.5 (``next=False``) or LLaVA-NeXT checkpoint to ``out_dir``.

    ``overrides`` may set any key of :data:`DEFAULTS`. LLaVA-1.5: shortest edge resized to
    ``image_size`` then centre-cropped, as llava-hf's ``CLIPImageProcessor`` does. LLaVA-NeXT:
    ``image_grid_pinpoints`` scaled from the released 336 px ones to ``image_size``.
    ``pad_to_square``: LLaVA-1.5 with a ``LlavaImageProcessor`` that pads to a square first (the
    original LLaVA-1.5 preprocessing) instead of cropping.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        LlavaImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        LlavaProcessor,
    )

    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config

    c = tiny_sizes(DEFAULTS, overrides, "LLaVA")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(c["vocab_size"])
    s = c["image_size"]
    pinpoints = [[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]]
    config = dict(
        text_config=tiny_text_config(c, vocab_size=padded_vocab_size(tokenizer), model_type="llama",
                                     pad_token_id=tokenizer.pad_token_id),
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": c["vision_hidden_size"],
            "intermediate_size": 2 * c["vision_hidden_size"],
            "num_hidden_layers": c["vision_layers"],
            "num_attention_heads": c["vision_heads"],
            "patch_size": c["patch_size"],
            "image_size": s,
            "projection_dim": c["vision_hidden_size"],
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(s // c["patch_size"]) ** 2,
    )
    torch.manual_seed(seed)
    size, crop = {"shortest_edge": s}, {"height": s, "width": s}
    if next:
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(**config, image_grid_pinpoints=pinpoints))
        image_processor = LlavaNextImageProcessor(size=size, crop_size=crop, image_grid_pinpoints=pinpoints)
        processor_class = LlavaNextProcessor
    else:
        model = LlavaForConditionalGeneration(LlavaConfig(**config))
        image_processor = (LlavaImageProcessor(size=size, crop_size=crop, do_pad=True) if pad_to_square
                           else CLIPImageProcessor(size=size, crop_size=crop))
        processor_class = LlavaProcessor
    model.eval().save_pretrained(out)
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=c["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out
