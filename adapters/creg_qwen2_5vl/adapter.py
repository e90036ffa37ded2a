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

import torch

from creg.plugins.adapter import VisionLayout
from creg.hf import VisionHook, raster_to_windows, windows_to_raster
from creg.hf.merged_grid import IMAGE_TOKEN_TYPE, MergedGridAdapter, merged_token_count  # noqa: F401 - public names

from .chat_template import QWEN2_5VL_CHAT_TEMPLATE

IMAGE_TOKEN = MergedGridAdapter.image_token


class Qwen2_5VLAdapter(MergedGridAdapter):
    """Qwen2.5-VL through ``transformers`` (``Qwen2_5_VLForConditionalGeneration``)."""

    model_class = "Qwen2_5_VLForConditionalGeneration"
    chat_template = QWEN2_5VL_CHAT_TEMPLATE
    processor_class = "Qwen2_5_VLProcessor"

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
