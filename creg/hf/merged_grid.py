"""Adapters whose image processor resizes the whole image and merges patches into tokens.

Qwen2-VL and Qwen2.5-VL share this input side: the checkpoint's image processor "smart-resizes"
the whole image to multiples of ``patch_size * merge_size`` px (no crop, no pad), cuts it into
patches and merges ``merge_size x merge_size`` patches into one image token; the chat template
holds one image token per merged cell, and ``image_grid_thw`` says each image's patch grid.
:class:`MergedGridAdapter` implements that side once (processor loading with its resize bounds,
the chat text, encoding with ``mm_token_type_ids``, the vision layout); a subclass names its
``model_class`` and ``chat_template`` and adds what differs in the vision encoder (its
``vision_hook``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from pydantic import Field, model_validator

from creg.core.images import MAX_PIXELS
from creg.hf.adapter import HFAdapter
from creg.hf.chat_inputs import ChatInputs, ProcessorMode, processor_mode_field
from creg.hf.geometry import token_grid_layout
from creg.plugins.adapter import AdapterConfig, VisionLayout

#: ``mm_token_type_ids`` value of image tokens (text = 0, image = 1, video = 2).
IMAGE_TOKEN_TYPE = 1


def merged_token_count(inputs: ChatInputs, vision: dict[str, Any], i: int) -> int:
    """One image token per merged cell: (t * h_p * w_p) / merge_size**2."""
    return int(vision["image_grid_thw"][i].prod()) // int(inputs.image_processor.merge_size) ** 2


class MergedGridAdapter(HFAdapter):
    """An :class:`HFAdapter` for whole-image, merged-patch-grid VLMs (see the module docstring)."""

    #: the image placeholder token of the chat text, one per merged cell
    image_token: ClassVar[str] = "<|image_pad|>"
    #: the chat template used when the checkpoint's processor brings none (option ``processor=manual``)
    chat_template: ClassVar[str]
    #: the patch merger reads the last vision block's output (what GradCAM must read)
    image_features_module: ClassVar[str | None] = "model.visual.merger"
    #: the checkpoint's processor class (in ``transformers``): the contract's reference for the inputs
    processor_class: ClassVar[str] = "Qwen2VLProcessor"

    class Options(HFAdapter.Options):
        processor: ProcessorMode = processor_mode_field()
        min_pixels: int | None = Field(None, ge=1, le=MAX_PIXELS,
                                       description="override the image processor's lower resize bound")
        max_pixels: int | None = Field(None, ge=1, le=MAX_PIXELS,
                                       description="override the image processor's upper resize bound")

        @model_validator(mode="after")
        def _bounds(self):
            if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
                raise ValueError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
            return self

    @classmethod
    def load_processor(cls, config: AdapterConfig, options: "MergedGridAdapter.Options") -> ChatInputs:
        bounds = {k: getattr(options, k) for k in ("min_pixels", "max_pixels") if getattr(options, k) is not None}
        return ChatInputs.from_pretrained(config.model, options.processor, image_token=cls.image_token,
                                          image_token_count=merged_token_count,
                                          fallback_template=cls.chat_template, **bounds)

    @property
    def merge_size(self) -> int:
        return int(self.processor.image_processor.merge_size)

    def chat(self, question: str, answer: str | None = None) -> str:
        return self.processor.chat(question, answer)

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        batch = self.processor.encode(texts, images)
        # transformers 5 needs the image-token mask next to input_ids for M-RoPE positions.
        batch.setdefault("mm_token_type_ids", (batch["input_ids"] == self.processor.image_token_id).long() * IMAGE_TOKEN_TYPE)
        return batch

    def reference_inputs(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """For the contract: :attr:`processor_class`'s own ``__call__``, built without ``__init__``
        (which builds a video processor, and that needs torchvision); text and images need none of it."""
        import transformers  # lazy: transformers

        cls = getattr(transformers, self.processor_class)
        p, tok = cls.__new__(cls), self.processor.tokenizer
        p.image_processor, p.tokenizer, p.video_processor, p.chat_template = self.processor.image_processor, tok, None, None
        p.image_token, p.video_token = getattr(tok, "image_token", "<|image_pad|>"), getattr(tok, "video_token", "<|video_pad|>")
        p.image_token_id, p.video_token_id = tok.convert_tokens_to_ids(p.image_token), tok.convert_tokens_to_ids(p.video_token)
        return dict(p(text=list(texts), images=list(images), padding=True, return_tensors="pt").items())

    def vision_layouts(self, batch: dict[str, torch.Tensor], images: Sequence[Any]) -> list[VisionLayout]:
        """One grid per image: merged cells over the whole (resized) image, patches under them."""
        m = self.merge_size
        layouts = []
        for row, (t, h_p, w_p), image in zip(batch["input_ids"], batch["image_grid_thw"].tolist(), images):
            if t != 1:
                raise ValueError(f"expected one temporal patch per image, got grid {(t, h_p, w_p)}")
            w, h = image.size
            layouts.append(token_grid_layout(row, self.processor.image_token_id, (h_p // m, w_p // m), (0, 0, w, h),
                                             (w, h), patch_hw=(h_p, w_p)))
        return layouts
