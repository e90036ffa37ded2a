"""The Gemma 3 adapter: google/gemma-3-*-it checkpoints (SigLIP, pooled to a fixed token grid).

The Gemma 3 image processor stretches the whole image to the vision tower's square; with
pan-and-scan (option ``pan_and_scan``, off as in the checkpoint's processor) it adds a row or a
column of crops of an elongated image after it. Each crop becomes ``<start_of_image>`` +
``mm_tokens_per_image`` soft tokens (an average-pooled raster of its SigLIP patches) +
``<end_of_image>``, the global image first (:class:`creg.hf.TiledImage`). Inputs come from the
checkpoint's ``Gemma3Processor`` (it needs no torchvision).
"""

from __future__ import annotations

import math

from creg.plugins.adapter import VisionLayout
from creg.hf import ChatInputs, HFAdapter, TiledImage, VisionHook, strip_tiles


class Gemma3Adapter(HFAdapter):
    """``Gemma3ForConditionalGeneration`` through the checkpoint's ``Gemma3Processor``."""

    model_class = "Gemma3ForConditionalGeneration"
    image_features_module = "model.multi_modal_projector"
    #: an image's soft tokens attend to each other both ways: the decoder is not causal there
    caches_text_prefix = False

    class Options(HFAdapter.Options):
        pan_and_scan: bool = False

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        return ChatInputs.from_pretrained(config.model, "full", image_token="<start_of_image>", nested_images=True,
                                          image_token_count=lambda *_: 0, image_call_kwargs={"do_pan_and_scan": options.pan_and_scan})

    @property
    def patch_side(self) -> int:
        return self.model.config.vision_config.image_size // self.model.config.vision_config.patch_size

    def vision_layouts(self, batch, images) -> list[VisionLayout]:
        cfg, k = self.model.config, math.isqrt(self.model.config.mm_tokens_per_image)
        layouts = []
        for row, image in zip(batch["input_ids"].cpu(), images):
            positions = (row == cfg.image_token_id).nonzero()[:, 0]  # the global image, then positions / k^2 - 1 crops
            tiled = TiledImage.from_tiles(image.size, strip_tiles(image.size, positions.numel() // k**2 - 1),
                                          cells_hw=(k, k), patches_hw=(self.patch_side,) * 2, global_image="first")
            layouts.append(tiled.layout(positions))
        return layouts

    def vision_hook(self, batch, layouts: list[VisionLayout]) -> VisionHook:
        return VisionHook.stacked_square_crops(self.model.model.vision_tower.post_layernorm, layouts)
