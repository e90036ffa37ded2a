"""``PixtralProcessor``'s settings and, since it cannot be built without torchvision, its input
ids transcribed from its source (transformers 5 ``processing_pixtral.py``): the contract's
reference path for :class:`creg_mistral3.adapter.Mistral3Adapter`, written apart from the
adapter's own :func:`~creg_mistral3.adapter.pixtral_rows`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from creg.hf.chat_inputs import processor_config


def pixtral_processor_config(model: str) -> dict[str, Any]:
    """``processor_config.json`` of the checkpoint (PixtralProcessor's defaults where absent), plus
    ``token_px`` = ``patch_size * spatial_merge_size``: the pixels of one image token."""
    saved = processor_config(model)
    config = {"patch_size": 16, "spatial_merge_size": 1, "image_token": "[IMG]", "image_break_token": "[IMG_BREAK]",
              "image_end_token": "[IMG_END]", **{k: v for k, v in saved.items() if k != "processor_class"}}
    return {**config, "token_px": config["patch_size"] * config["spatial_merge_size"]}


def pixtral_reference_inputs(model: str, tokenizer, image_processor, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
    """``PixtralProcessor(text=texts, images=images, padding=True)``'s ``input_ids`` /
    ``attention_mask``, as its ``__call__`` and ``replace_image_token`` build them."""
    cfg = pixtral_processor_config(model)
    patch_size = cfg["token_px"]  # _process_images: patch_size * spatial_merge_size
    image_inputs = image_processor(images=list(images), patch_size=patch_size, return_tensors="pt")
    prompt_strings = []
    for image_idx, text in enumerate(texts):
        height, width = image_inputs["image_sizes"][image_idx].tolist()
        num_height_tokens, num_width_tokens = height // patch_size, width // patch_size
        replace_tokens = [[cfg["image_token"]] * num_width_tokens + [cfg["image_break_token"]]] * num_height_tokens
        replace_tokens = [item for sublist in replace_tokens for item in sublist]
        replace_tokens[-1] = cfg["image_end_token"]
        prompt_strings.append(text.replace(cfg["image_token"], "".join(replace_tokens), 1))
    tokenizer.padding_side = "left"  # no second BOS after the template's, as apply_chat_template(tokenize=True)
    no_bos = {"add_special_tokens": False} if tokenizer.bos_token and prompt_strings[0].startswith(tokenizer.bos_token) else {}
    enc = tokenizer(prompt_strings, padding=True, return_tensors="pt", **no_bos)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], **image_inputs}
