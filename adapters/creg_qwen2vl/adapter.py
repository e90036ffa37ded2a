"""The Qwen2-VL adapter: Qwen2-VL-2B/7B-Instruct or any local Qwen2-VL checkpoint.

Preprocessing reproduced: the checkpoint's own ``Qwen2VLImageProcessor`` -- "smart resize" of
the whole image to multiples of 28 px within ``[min_pixels, max_pixels]`` (aspect ratio kept
up to rounding; no crop, no pad), 14 px patches, 2 x 2 patches merged into one token -- and its
chat template (``<|vision_start|><|image_pad|>...<|vision_end|>`` then the question; the
generation prompt ``<|im_start|>assistant\\n``). Through the checkpoint's ``Qwen2VLProcessor``
when it can be built, else tokenizer + image processor + template, assembled identically
(option ``processor``: auto, full, manual). The merged grid covers the whole image, so cell
centres are the resize undone. Everything else is :class:`creg.hf.HFAdapter`.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import Field

from creg.adapter import AdapterConfig, VisionLayout
from creg.hf import ChatInputs, HFAdapter, VisionHook, raster_to_windows, token_grid_layout, windows_to_raster

from .chat_template import QWEN2VL_CHAT_TEMPLATE

IMAGE_TOKEN = "<|image_pad|>"
#: ``mm_token_type_ids`` value of image tokens (text = 0, image = 1, video = 2).
IMAGE_TOKEN_TYPE = 1


def merged_token_count(inputs: ChatInputs, vision: dict[str, Any], i: int) -> int:
    """One ``<|image_pad|>`` per merged cell: (t * h_p * w_p) / merge_size**2."""
    return int(vision["image_grid_thw"][i].prod()) // int(inputs.image_processor.merge_size) ** 2


class Qwen2VLAdapter(HFAdapter):
    """Qwen2-VL through ``transformers`` (``Qwen2VLForConditionalGeneration``)."""

    description = "Qwen2-VL (2B/7B-Instruct or a local checkpoint) via transformers"
    model_class = "Qwen2VLForConditionalGeneration"

    class Options(HFAdapter.Options):
        processor: Literal["auto", "full", "manual"] = Field(
            "auto", description="the checkpoint's Qwen2VLProcessor (full), tokenizer + image processor (manual), "
            "or full when it can be built (auto)")
        min_pixels: int | None = Field(None, description="override the image processor's lower resize bound")
        max_pixels: int | None = Field(None, description="override the image processor's upper resize bound")

    @classmethod
    def load_processor(cls, config: AdapterConfig, options: "Qwen2VLAdapter.Options") -> ChatInputs:
        bounds = {k: getattr(options, k) for k in ("min_pixels", "max_pixels") if getattr(options, k) is not None}
        return ChatInputs.from_pretrained(config.model, options.processor, image_token=IMAGE_TOKEN,
                                          image_token_count=merged_token_count,
                                          fallback_template=QWEN2VL_CHAT_TEMPLATE, **bounds)

    @property
    def inputs(self) -> ChatInputs:
        return self.processor

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

    def vision_layouts(self, batch: dict[str, torch.Tensor], images: Sequence[Any]) -> list[VisionLayout]:
        m = self.merge_size
        layouts = []
        for row, (t, h_p, w_p), image in zip(batch["input_ids"], batch["image_grid_thw"].tolist(), images):
            if t != 1:
                raise ValueError(f"expected one temporal patch per image, got grid {(t, h_p, w_p)}")
            w, h = image.size
            layouts.append(token_grid_layout(row, self.processor.image_token_id, (h_p // m, w_p // m), (0, 0, w, h),
                                             (w, h), patch_hw=(h_p, w_p)))
        return layouts

    def vision_hook(self, batch: dict[str, torch.Tensor], layouts: list[VisionLayout]) -> VisionHook:
        """The last vision block's output, patches in merge-window order, images one after another."""
        m, hws = self.merge_size, [lay.patch_hw for lay in layouts]
        sizes = [h * w for h, w in hws]
        return VisionHook(
            module=self.model.model.visual.blocks[-1],
            split=lambda out: [windows_to_raster(c, hw, m) for c, hw in zip(out.split(sizes), hws)],
            join=lambda rasters: torch.cat([raster_to_windows(r, m) for r in rasters]),
        )
