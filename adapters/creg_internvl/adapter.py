"""The InternVL adapter: transformers-native InternVL 2.5 / 3 checkpoints (the "-hf" releases).

Inputs are built as ``InternVLProcessor`` builds them (it cannot be constructed without
torchvision, its video processor needs it): the chat template, the ``GotOcr2ImageProcessor``
(PIL backend) with ``crop_to_patches`` on -- the processor's own default, i.e. dynamic tiling
with the thumbnail, as the model is used -- and each image placeholder expanded into
``<img>`` + ``<IMG_CONTEXT>`` x (tokens per tile x crops) + ``</img>``. The vision layout has
one grid per crop (:mod:`creg_internvl.layouts`); GradCAM reads the vision tower's output
feature layer, one (h, w) patch raster per crop, a sample's crops stacked along the height.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import Field

from creg.plugins.adapter import VisionGrid, VisionLayout
from creg.hf import HFAdapter, VisionHook
from creg.hf.chat_inputs import ChatInputs

from .layouts import Tile, internvl_tiles
from .chat_template import INTERNVL_CHAT_TEMPLATE


class InternVLAdapter(HFAdapter):
    """InternVL (``InternVLForConditionalGeneration``) with dynamic tiling."""

    model_class = "InternVLForConditionalGeneration"

    class Options(HFAdapter.Options):
        tiling: bool = Field(True, description="dynamic tiling + thumbnail (crop_to_patches), as InternVLProcessor does")
        max_tiles: int | None = Field(None, ge=1, description="most tiles per image (default: the checkpoint's max_patches)")
        min_tiles: int | None = Field(None, ge=1, description="fewest tiles per image (default: min_patches)")

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        inputs = ChatInputs.from_pretrained(config.model, "manual", image_token="<IMG_CONTEXT>",
                                            image_token_count=lambda vision, i: 0, fallback_template=INTERNVL_CHAT_TEMPLATE)
        ip = inputs.image_processor
        ip.crop_to_patches = options.tiling
        ip.max_patches = options.max_tiles or ip.max_patches
        ip.min_patches = options.min_tiles or ip.min_patches
        return inputs

    def chat(self, question: str, answer: str | None = None) -> str:
        return self.processor.chat(question, answer)

    # -- inputs ----------------------------------------------------------------------------
    @property
    def tokens_per_tile(self) -> int:
        v = self.model.config.vision_config
        return int(v.image_size[0] // v.patch_size[0] * self.model.config.downsample_ratio) ** 2

    def tiles(self, image_wh: tuple[int, int]) -> list[Tile]:
        """The crops of one image of ``image_wh`` = (W, H), from the image processor's settings."""
        ip, v = self.processor.image_processor, self.model.config.vision_config
        return internvl_tiles(image_wh, tile_px=ip.size["height"], patch=v.patch_size[0],
                              downsample=self.model.config.downsample_ratio, min_tiles=ip.min_patches,
                              max_tiles=ip.max_patches, crop_to_patches=ip.crop_to_patches)

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` ``(b, seq)`` left-padded; ``pixel_values``
        ``(sum of crops, 3, T, T)``, each image's tiles then its thumbnail."""
        tok, placeholder = self.processor.tokenizer, self.processor.image_token
        vision = self.processor.image_processor(images=list(images), return_tensors="pt")
        expanded = []
        for text, n_crops in zip(texts, vision["num_patches"].tolist()):
            head, sep, tail = text.partition(placeholder)
            if not sep or placeholder in tail:
                raise ValueError(f"the chat template must place exactly one {placeholder} per conversation")
            run = placeholder * (self.tokens_per_tile * n_crops)
            expanded.append(f"{head}{tok.start_image_token}{run}{tok.end_image_token}{tail}")
        enc = tok(expanded, padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "pixel_values": vision["pixel_values"]}

    def reference_inputs(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """For the contract: ``InternVLProcessor``'s own ``__call__`` (built without its video processor)."""
        from .reference import processor_without_video

        processor = processor_without_video(self.tokenizer, self.processor.image_processor, self.tokens_per_tile)
        return dict(processor(text=list(texts), images=list(images), padding=True, return_tensors="pt").items())

    # -- geometry --------------------------------------------------------------------------
    def vision_layouts(self, batch: dict[str, torch.Tensor], images: Sequence[Any]) -> list[VisionLayout]:
        layouts = []
        for row, image in zip(batch["input_ids"].cpu(), images):
            tiles = self.tiles(image.size)
            run = (row == self.processor.image_token_id).nonzero()[:, 0]
            if run.numel() != len(tiles) * self.tokens_per_tile:
                raise RuntimeError(f"{run.numel()} image tokens in the sequence, {len(tiles)} crops expect "
                                   f"{len(tiles) * self.tokens_per_tile}")
            grids = [VisionGrid(token_index=run[t.offsets], grid_hw=tuple(t.cell_xy.shape[:2]), cell_xy=t.cell_xy,
                                name=t.name) for t in tiles]
            patch_xy = torch.cat([t.patch_xy for t in tiles])
            layouts.append(VisionLayout.from_grids(grids, patch_hw=tuple(patch_xy.shape[:2]), patch_xy=patch_xy))
        return layouts

    def vision_hook(self, batch: dict[str, torch.Tensor], layouts: list[VisionLayout]) -> VisionHook:
        """The feature layer the projector reads (``vision_feature_layer``): ``(n_crops, 1 + h*w, d)``, CLS first."""
        cfg = self.model.config
        side = cfg.vision_config.image_size[0] // cfg.vision_config.patch_size[0]
        crops = [lay.patch_hw[0] // side for lay in layouts]
        if not isinstance(cfg.vision_feature_layer, int):
            raise ValueError(f"GradCAM reads one vision layer; this checkpoint concatenates {cfg.vision_feature_layer}")
        tower = self.model.model.vision_tower
        module = tower.layernorm if cfg.vision_feature_layer == -1 else tower.encoder.layer[cfg.vision_feature_layer]
        return VisionHook.cls_then_square_crops(module, crops, side)
