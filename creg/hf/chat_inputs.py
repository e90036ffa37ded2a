"""Questions and images to model inputs the way a VLM's processor does it.

Two interchangeable paths give identical inputs:

* ``full``: the checkpoint's processor (``AutoProcessor.from_pretrained``), as the model card
  does it. Some transformers 5 processors cannot be built without torchvision (a video
  processor needs it).
* ``manual``: the tokenizer + the image processor (``AutoImageProcessor``, which picks the PIL
  backend when torchvision is missing) + the chat template, assembled here as the processors
  do: render the chat, expand the one image placeholder into the image's text, tokenize with
  left padding. The image's text is ``image_token`` x ``image_token_count(inputs, vision, i)``,
  or -- for layouts with rows, breaks or markers -- whatever ``image_text(inputs, vision, i)``
  returns (e.g. Pixtral's rows of ``[IMG]`` closed by ``[IMG_BREAK]`` / ``[IMG_END]``,
  Idefics3's ``<row_r_col_c>`` tiles then ``<global-img>``).

``auto`` tries ``full`` and falls back to ``manual``. Left padding puts every row's answer
position last. ``image_call_kwargs`` go to the image processor (or the processor) on every
call, e.g. Pixtral's ``patch_size`` or Idefics3's ``do_image_splitting``; ``nested_images``
hands the images over as one list per sample (``[[image], ...]``), as Idefics3's and Gemma 3's
processors batch them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import Field

ProcessorMode = Literal["auto", "full", "manual"]


def messages(question: str, answer: str | None = None) -> list[dict[str, Any]]:
    """One user turn (the image, then the question) and, with ``answer``, the assistant's turn."""
    turns = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return turns


def special_tokens_kwargs(tokenizer, texts: Sequence[str]) -> dict[str, Any]:
    """``{"add_special_tokens": False}`` when the chat text already starts with the BOS token (a
    template that writes it), else {}: the rule of transformers' ``processor.apply_chat_template(...,
    tokenize=True)``, the model card's path, so a tokenizer that adds BOS does not add a second one."""
    bos = getattr(tokenizer, "bos_token", None)
    return {"add_special_tokens": False} if bos and texts and texts[0].startswith(bos) else {}


def processor_mode_field(default: ProcessorMode = "auto") -> Any:
    """The ``processor`` option of an adapter built on :class:`ChatInputs` (declared once here)."""

    return Field(default, description="the checkpoint's processor (full), tokenizer + image processor + chat "
                 "template assembled by creg (manual), or full when it can be built here (auto)")


def processor_config(model: str) -> dict[str, Any]:
    """The checkpoint's ``processor_config.json`` (a local directory or a hub id's cached file); {} when absent."""
    if Path(model).is_dir():
        path = Path(model) / "processor_config.json"
    else:
        from transformers.utils import cached_file  # lazy: transformers

        found = cached_file(model, "processor_config.json", _raise_exceptions_for_missing_entries=False)
        path = Path(found) if found else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def local_chat_template(model: str) -> str | None:
    """The chat template a local checkpoint directory ships in its own file, if any."""
    path = Path(model)
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text())["chat_template"]
    return None


#: ``(inputs, vision, i) -> int``: how many placeholder tokens image ``i`` becomes.
TokenCount = Callable[["ChatInputs", dict[str, Any], int], int]
#: ``(inputs, vision, i) -> str``: the text that replaces image ``i``'s placeholder.
ImageText = Callable[["ChatInputs", dict[str, Any], int], str]


class ChatInputs:
    """Encodes (text, image) pairs. ``image_token_count(inputs, vision, i)``: how many
    placeholder tokens image ``i`` of the image processor's output ``vision`` becomes
    (``inputs`` is this object, e.g. for ``inputs.image_processor.merge_size``); or
    ``image_text(inputs, vision, i)``: the whole text that replaces its placeholder (rows,
    breaks, markers). See the module docstring for ``image_call_kwargs`` and ``nested_images``."""

    def __init__(self, tokenizer, image_processor, chat_template: str, *, image_token: str,
                 image_token_count: TokenCount | None = None, processor=None, image_text: ImageText | None = None,
                 image_call_kwargs: dict[str, Any] | None = None, nested_images: bool = False):
        if (image_token_count is None) == (image_text is None):
            raise TypeError("give exactly one of image_token_count and image_text")
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.image_token = image_token
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(image_token)
        self.image_token_count = image_token_count
        self.image_text = image_text or (lambda inputs, vision, i: image_token * image_token_count(inputs, vision, i))
        self.image_call_kwargs = dict(image_call_kwargs or {})
        self.nested_images = nested_images
        self.processor = processor
        self.mode: Literal["full", "manual"] = "full" if processor is not None else "manual"

    @classmethod
    def from_pretrained(cls, model: str, mode: ProcessorMode = "auto", *, image_token: str,
                        image_token_count: TokenCount | None = None, fallback_template: str | None = None,
                        image_text: ImageText | None = None, image_call_kwargs: dict[str, Any] | None = None,
                        nested_images: bool = False, **image_kwargs: Any) -> "ChatInputs":
        """Load from a hub id or local directory; ``image_kwargs`` override image-processor settings
        at load time, ``image_call_kwargs`` are passed on every call."""
        from transformers import (  # lazy: transformers
            AutoImageProcessor,
            AutoProcessor,
            AutoTokenizer,
        )

        if mode not in ("auto", "full", "manual"):
            raise ValueError(f"processor mode must be auto, full or manual, got {mode!r}")
        common = dict(image_token=image_token, image_token_count=image_token_count, image_text=image_text,
                      image_call_kwargs=image_call_kwargs, nested_images=nested_images)
        if mode in ("auto", "full"):
            try:
                processor = AutoProcessor.from_pretrained(model, **image_kwargs)
            except (ImportError, OSError, ValueError, TypeError) as e:
                if mode == "full":
                    raise ImportError(f"cannot build the processor of {model!r}: {e}") from e
            else:
                template = processor.chat_template or processor.tokenizer.chat_template or fallback_template
                return cls(processor.tokenizer, processor.image_processor, template, processor=processor, **common)
        tokenizer = AutoTokenizer.from_pretrained(model)
        image_processor = AutoImageProcessor.from_pretrained(model, **image_kwargs)
        template = tokenizer.chat_template or local_chat_template(model) or fallback_template
        if template is None:
            raise ValueError(f"{model!r} ships no chat template")
        return cls(tokenizer, image_processor, template, **common)

    def chat(self, question: str, answer: str | None = None) -> str:
        """The conversation text: up to the generation prompt, or with the assistant's ``answer``."""
        return self.tokenizer.apply_chat_template(
            messages(question, answer), chat_template=self.chat_template, tokenize=False,
            add_generation_prompt=answer is None,
        )

    def encode(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` ``(b, seq)`` left-padded, plus the image processor's
        outputs (``pixel_values``, grid sizes, ...)."""
        batch_images = [[im] for im in images] if self.nested_images else list(images)
        text_kwargs = special_tokens_kwargs(self.tokenizer, texts)
        if self.processor is not None:
            enc = self.processor(text=list(texts), images=batch_images, padding=True, return_tensors="pt",
                                 **text_kwargs, **self.image_call_kwargs)
            return dict(enc.items())
        vision = dict(self.image_processor(images=batch_images, return_tensors="pt", **self.image_call_kwargs).items())
        expanded = []
        for i, text in enumerate(texts):
            head, sep, tail = text.partition(self.image_token)
            if not sep or self.image_token in tail:
                raise ValueError(f"the chat template must place exactly one {self.image_token} per conversation")
            expanded.append(head + self.image_text(self, vision, i) + tail)
        enc = self.tokenizer(expanded, padding=True, return_tensors="pt", **text_kwargs)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], **vision}
