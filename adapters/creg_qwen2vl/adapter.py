"""The Qwen2-VL adapter: Qwen2-VL-2B/7B-Instruct or any local Qwen2-VL checkpoint.

Preprocessing reproduced: the checkpoint's own ``Qwen2VLImageProcessor`` -- "smart resize" of
the whole image to multiples of 28 px within ``[min_pixels, max_pixels]`` (aspect ratio kept
up to rounding; no crop, no pad), 14 px patches, 2 x 2 patches merged into one token -- and its
chat template (``<|vision_start|><|image_pad|>...<|vision_end|>`` then the question; the
generation prompt ``<|im_start|>assistant\\n``). Through the checkpoint's ``Qwen2VLProcessor``
when it can be built, else tokenizer + image processor + template, assembled identically
(option ``processor``: auto, full, manual). The merged grid covers the whole image, so cell
centres are the resize undone. The input side is :class:`creg.hf.merged_grid.MergedGridAdapter`,
everything else :class:`creg.hf.HFAdapter`.
"""

from __future__ import annotations

import torch

from creg.plugins.adapter import VisionLayout
from creg.hf import VisionHook, raster_to_windows, windows_to_raster
from creg.hf.merged_grid import IMAGE_TOKEN_TYPE, MergedGridAdapter, merged_token_count  # noqa: F401 - public names

from .chat_template import QWEN2VL_CHAT_TEMPLATE

IMAGE_TOKEN = MergedGridAdapter.image_token


class Qwen2VLAdapter(MergedGridAdapter):
    """Qwen2-VL through ``transformers`` (``Qwen2VLForConditionalGeneration``)."""

    model_class = "Qwen2VLForConditionalGeneration"
    chat_template = QWEN2VL_CHAT_TEMPLATE

    @property
    def inputs(self):
        return self.processor

    def vision_hook(self, batch: dict[str, torch.Tensor], layouts: list[VisionLayout]) -> VisionHook:
        """The last vision block's output, patches in merge-window order, images one after another."""
        m, hws = self.merge_size, [lay.patch_hw for lay in layouts]
        sizes = [h * w for h, w in hws]
        return VisionHook(
            module=self.model.model.visual.blocks[-1],
            split=lambda out: [windows_to_raster(c, hw, m) for c, hw in zip(out.split(sizes), hws)],
            join=lambda rasters: torch.cat([raster_to_windows(r, m) for r in rasters]),
        )
