"""The Gemma 3 adapter: google/gemma-3-*-it checkpoints (SigLIP, pooled to a fixed token grid).

The Gemma 3 image processor stretches the whole image to the vision tower's square; with
pan-and-scan (option ``pan_and_scan``, off as in the checkpoint's processor) it adds crops of an
elongated image after it, one row or one column of them. Each crop becomes
``<start_of_image>`` + ``mm_tokens_per_image`` soft tokens (an average-pooled raster of its SigLIP
patches) + ``<end_of_image>``, the global image first (:class:`creg.hf.tiles.TiledImage`). Inputs
come from the checkpoint's ``Gemma3Processor`` (it needs no torchvision).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from creg.adapter import VisionLayout
from creg.hf import ChatInputs, HFAdapter, TiledImage, VisionHook


def pan_and_scan_tiles(image_wh: tuple[int, int], n: int) -> list[list[tuple[float, float, float, float]]]:
    """The ``n`` crops of Gemma 3's pan-and-scan (``ceil(side / n)`` px each, the last one cut at the edge)."""
    w, h = image_wh
    if not n:
        return []
    if w >= h:
        s = math.ceil(w / n)
        return [[(i * s, 0, min((i + 1) * s, w), h) for i in range(n)]]
    s = math.ceil(h / n)
    return [[(0, i * s, w, min((i + 1) * s, h))] for i in range(n)]


class Gemma3Adapter(HFAdapter):
    """``Gemma3ForConditionalGeneration`` through the checkpoint's ``Gemma3Processor``."""

    description = "Gemma 3 (4B/12B/27B-it) via transformers, optional pan-and-scan crops"
    model_class = "Gemma3ForConditionalGeneration"
    image_features_module = "model.multi_modal_projector"

    class Options(HFAdapter.Options):
        pan_and_scan: bool = False

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        return ChatInputs.from_pretrained(config.model, "full", image_token="<start_of_image>", nested_images=True,
                                          image_token_count=lambda *_: 0, image_call_kwargs={"do_pan_and_scan": options.pan_and_scan})

    def chat(self, question: str, answer: str | None = None) -> str:
        return self.processor.chat(question, answer)

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]):
        return self.processor.encode(texts, images)

    def vision_layouts(self, batch, images) -> list[VisionLayout]:
        cfg = self.model.config
        side, k = cfg.vision_config.image_size // cfg.vision_config.patch_size, math.isqrt(cfg.mm_tokens_per_image)
        layouts = []
        for row, image in zip(batch["input_ids"].cpu(), images):
            positions = (row == cfg.image_token_id).nonzero()[:, 0]
            tiled = TiledImage.from_tiles(image.size, pan_and_scan_tiles(image.size, positions.numel() // k**2 - 1),
                                          cells_hw=(k, k), patches_hw=(side, side), global_image="first")
            layouts.append(tiled.layout(positions))
        return layouts

    def vision_hook(self, batch, layouts: list[VisionLayout]) -> VisionHook:
        side = self.model.config.vision_config.image_size // self.model.config.vision_config.patch_size
        return VisionHook.square_crops(self.model.model.vision_tower.post_layernorm,
                                       [lay.patch_hw[0] // side for lay in layouts], side)
