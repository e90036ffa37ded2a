"""The Qwen2.5-VL adapter: Qwen2.5-VL-3B/7B-Instruct or any local Qwen2.5-VL checkpoint.

Preprocessing reproduced: the checkpoint's ``Qwen2VLImageProcessor`` (Qwen2.5-VL ships the
Qwen2-VL one) -- "smart resize" of the whole image to multiples of 28 px within
``[min_pixels, max_pixels]`` (no crop, no pad), 14 px patches, 2 x 2 patches merged into one
token -- and its chat template (the generation prompt ``<|im_start|>assistant\\n``), through the
checkpoint's ``Qwen2_5_VLProcessor`` when it can be built, else tokenizer + image processor +
template assembled identically (option ``processor``). The merged grid covers the whole image.

What differs from Qwen2-VL is inside the vision encoder: most blocks attend within windows
(``window_size`` px), so the encoder keeps its patches permuted window by window
(``window_index``) and restores the order only after the merger. GradCAM's activations (the
last block's output) are un-permuted here before they are cut into per-image raster grids.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import Field

from creg.adapter import AdapterConfig, VisionLayout
from creg.hf import ChatInputs, HFAdapter, VisionHook, raster_to_windows, token_grid_layout, windows_to_raster

from . import DESCRIPTION
from .chat_template import QWEN2_5VL_CHAT_TEMPLATE

IMAGE_TOKEN = "<|image_pad|>"
IMAGE_TOKEN_TYPE = 1  # mm_token_type_ids: text 0, image 1, video 2


def merged_token_count(inputs: ChatInputs, vision: dict[str, Any], i: int) -> int:
    """One ``<|image_pad|>`` per merged cell: (t * h_p * w_p) / merge_size**2."""
    return int(vision["image_grid_thw"][i].prod()) // int(inputs.image_processor.merge_size) ** 2


class Qwen2_5VLAdapter(HFAdapter):
    """Qwen2.5-VL through ``transformers`` (``Qwen2_5_VLForConditionalGeneration``)."""

    description = DESCRIPTION
    model_class = "Qwen2_5_VLForConditionalGeneration"

    class Options(HFAdapter.Options):
        processor: Literal["auto", "full", "manual"] = Field(
            "auto", description="the checkpoint's processor (full), tokenizer + image processor (manual), "
            "or full when it can be built (auto)")
        min_pixels: int | None = Field(None, description="override the image processor's lower resize bound")
        max_pixels: int | None = Field(None, description="override the image processor's upper resize bound")

    @classmethod
    def load_processor(cls, config: AdapterConfig, options: "Qwen2_5VLAdapter.Options") -> ChatInputs:
        bounds = {k: getattr(options, k) for k in ("min_pixels", "max_pixels") if getattr(options, k) is not None}
        return ChatInputs.from_pretrained(config.model, options.processor, image_token=IMAGE_TOKEN,
                                          image_token_count=merged_token_count,
                                          fallback_template=QWEN2_5VL_CHAT_TEMPLATE, **bounds)

    @property
    def merge_size(self) -> int:
        return int(self.processor.image_processor.merge_size)

    def chat(self, question: str, answer: str | None = None) -> str:
        return self.processor.chat(question, answer)

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        batch = self.processor.encode(texts, images)
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
        """The last vision block's output: merge units in window order across the batch's images."""
        from transformers.vision_utils import get_vision_window_index

        visual, m = self.model.model.visual, self.merge_size
        window_index, _ = get_vision_window_index(batch["image_grid_thw"], spatial_merge_size=m,
                                                  window_size=visual.window_size, patch_size=visual.patch_size)
        order = torch.argsort(window_index)
        hws = [lay.patch_hw for lay in layouts]
        sizes = [h * w for h, w in hws]

        def split(out: torch.Tensor) -> list[torch.Tensor]:
            raster_order = out.reshape(-1, m * m, out.shape[-1])[order.to(out.device)].reshape(out.shape)
            return [windows_to_raster(c, hw, m) for c, hw in zip(raster_order.split(sizes), hws)]

        def join(rasters: list[torch.Tensor]) -> torch.Tensor:
            raster_order = torch.cat([raster_to_windows(r, m) for r in rasters])
            d = raster_order.shape[-1]
            return raster_order.reshape(-1, m * m, d)[window_index.to(raster_order.device)].reshape(-1, d)

        return VisionHook(module=visual.blocks[-1], split=split, join=join)
