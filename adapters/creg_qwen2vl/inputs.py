"""Turning questions and images into Qwen2-VL model inputs.

Two interchangeable paths give identical ``input_ids`` / ``pixel_values``:

* ``full``: the checkpoint's ``Qwen2VLProcessor`` (``AutoProcessor.from_pretrained``), as the
  model card does it. transformers 5.x cannot build it without torchvision (its video
  processor needs it).
* ``manual``: the tokenizer + the image processor (``AutoImageProcessor``, which picks the PIL
  backend when torchvision is missing) + the chat template, assembled here exactly as the
  processor does: render the chat, expand each ``<|image_pad|>`` into one token per merged
  vision cell, tokenise with left padding, mark image tokens in ``mm_token_type_ids``.

``auto`` tries ``full`` and falls back to ``manual``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from .chat_template import QWEN2VL_CHAT_TEMPLATE

ProcessorMode = Literal["auto", "full", "manual"]

IMAGE_TOKEN = "<|image_pad|>"
#: ``mm_token_type_ids`` value of image tokens (text = 0, image = 1, video = 2).
IMAGE_TOKEN_TYPE = 1


def user_messages(question: str) -> list[dict[str, Any]]:
    """One user turn: the image, then the question (the order of the Qwen2-VL model card)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def _local_chat_template(model: str) -> str | None:
    path = Path(model)
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text())["chat_template"]
    return None


class Qwen2VLInputs:
    """Encodes a batch of (question, image) pairs; ``mode`` says which path is in use."""

    def __init__(self, tokenizer, image_processor, chat_template: str, processor=None):
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"  # the answer position is then the last one
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.processor = processor
        self.mode: Literal["full", "manual"] = "full" if processor is not None else "manual"
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.patch_size: int = int(image_processor.patch_size)
        self.merge_size: int = int(image_processor.merge_size)

    @classmethod
    def from_pretrained(cls, model: str, mode: ProcessorMode = "auto", **image_kwargs: Any) -> "Qwen2VLInputs":
        """Load from a hub id or local directory. ``image_kwargs`` (e.g. ``min_pixels``,
        ``max_pixels``) override the image processor's settings."""
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        if mode not in ("auto", "full", "manual"):
            raise ValueError(f"processor mode must be auto, full or manual, got {mode!r}")
        if mode in ("auto", "full"):
            try:
                processor = AutoProcessor.from_pretrained(model, **image_kwargs)
            except (ImportError, OSError, ValueError) as e:
                # transformers 5.x: the video processor needs torchvision (ImportError); a local
                # directory may lack the processor's files. The manual path needs neither.
                if mode == "full":
                    raise ImportError(f"cannot build the Qwen2VLProcessor of {model!r}: {e}") from e
            else:
                template = processor.chat_template or processor.tokenizer.chat_template or QWEN2VL_CHAT_TEMPLATE
                return cls(processor.tokenizer, processor.image_processor, template, processor=processor)
        tokenizer = AutoTokenizer.from_pretrained(model)
        image_processor = AutoImageProcessor.from_pretrained(model, **image_kwargs)
        template = tokenizer.chat_template or _local_chat_template(model) or QWEN2VL_CHAT_TEMPLATE
        return cls(tokenizer, image_processor, template)

    def render(self, question: str) -> str:
        """The chat text with the generation prompt (one ``<|image_pad|>`` per image)."""
        return self.tokenizer.apply_chat_template(
            user_messages(question), chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def encode(self, questions: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Model inputs for ``b`` pairs: ``input_ids``/``attention_mask``/``mm_token_type_ids``
        ``(b, seq)`` left-padded, ``pixel_values`` ``(sum_i t_i*h_i*w_i, c*t_p*p*p)`` in Qwen's
        merge-window order, ``image_grid_thw`` ``(b, 3)`` patch grid (t, h, w) per image."""
        texts = [self.render(q) for q in questions]
        if self.processor is not None:
            enc = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
            return {k: v for k, v in enc.items()}
        vision = self.image_processor(images=list(images), return_tensors="pt")
        per_cell = self.merge_size**2
        expanded = []
        for text, thw in zip(texts, vision["image_grid_thw"]):
            n_tokens = int(thw.prod()) // per_cell
            head, sep, tail = text.partition(IMAGE_TOKEN)
            if not sep or IMAGE_TOKEN in tail:
                raise ValueError(f"the chat template must place exactly one {IMAGE_TOKEN} per question")
            expanded.append(head + IMAGE_TOKEN * n_tokens + tail)
        enc = self.tokenizer(expanded, padding=True, return_tensors="pt")
        input_ids = enc["input_ids"]
        mm_token_type_ids = torch.where(input_ids == self.image_token_id, IMAGE_TOKEN_TYPE, 0)
        return {
            "input_ids": input_ids,
            "attention_mask": enc["attention_mask"],
            "mm_token_type_ids": mm_token_type_ids,
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"],
        }
