"""The LLaVA adapter: LLaVA-1.5 and LLaVA-NeXT checkpoints of llava-hf (transformers-native).

Inputs are built by the checkpoint's own processor (``LlavaProcessor`` / ``LlavaNextProcessor``,
PIL image processors, the chat template it ships), so creg sees what the model card's code
feeds the model. What is model-specific here is the vision layout (:mod:`creg_llava.layouts`):

* LLaVA-1.5: one grid over the centre crop of the resized image (llava-hf's processors crop a
  non-square image; a ``LlavaImageProcessor`` with ``do_pad`` pads it to a square instead,
  and the cells on the padding are marked as such);
* LLaVA-NeXT: the base image's grid, then the unpadded any-resolution grid whose row-end
  newline tokens have no pixel position;

and where GradCAM reads the vision tower: the CLIP layer whose output the projector uses
(``vision_feature_layer``, -2 in the releases), one (h, w) patch raster per crop, a sample's
crops (base image, then tiles) stacked along the height.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from creg.plugins.adapter import VisionGrid, VisionLayout
from creg.hf import HFAdapter, VisionHook
from creg.hf.chat_inputs import ChatInputs
from creg.hf.geometry import cells_in_image

from .layouts import ImageTokens, llava15_tokens, llava_next_tokens

IMAGE_TOKEN = "<image>"


class LlavaAdapter(HFAdapter):
    """LLaVA-1.5 (``LlavaForConditionalGeneration``) or LLaVA-NeXT (``LlavaNextForConditionalGeneration``)."""

    model_class: ClassVar[str] = "AutoModelForImageTextToText"

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        from transformers import AutoConfig

        kind = AutoConfig.from_pretrained(config.model).model_type
        if kind not in ("llava", "llava_next"):
            raise ValueError(f"{config.model!r} is a {kind!r} model; the llava adapter reads llava / llava_next checkpoints")

        def no_manual_path(vision: dict, i: int) -> int:
            raise NotImplementedError("LLaVA inputs come from the checkpoint's processor")

        return ChatInputs.from_pretrained(config.model, "full", image_token=IMAGE_TOKEN, image_token_count=no_manual_path)

    def chat(self, question: str, answer: str | None = None) -> str:
        return self.processor.chat(question, answer)

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        return self.processor.encode(texts, images)

    # -- geometry --------------------------------------------------------------------------
    @property
    def _is_next(self) -> bool:
        return self.model.config.model_type == "llava_next"

    def image_tokens(self, image_wh: tuple[int, int]) -> ImageTokens:
        """The grids of one image of ``image_wh`` = (W, H), from the processor's settings."""
        cfg, ip = self.model.config, self.processor.image_processor
        crop = (ip.crop_size["height"], ip.crop_size["width"]) if ip.do_center_crop else None
        patch = cfg.vision_config.patch_size
        if self._is_next:
            if cfg.vision_feature_select_strategy != "default":
                raise ValueError("LLaVA-NeXT with vision_feature_select_strategy='full' is not supported")
            return llava_next_tokens(image_wh, size=dict(ip.size), crop_hw=crop, patch=patch,
                                     tile_px=cfg.vision_config.image_size, pinpoints=cfg.image_grid_pinpoints)
        return llava15_tokens(image_wh, size=dict(ip.size), crop_hw=crop, patch=patch,
                              square_pad=bool(getattr(ip, "do_pad", False)) and hasattr(ip, "pad_to_square"),
                              cls_token=cfg.vision_feature_select_strategy == "full")

    def vision_layouts(self, batch: dict[str, torch.Tensor], images: Sequence[Any]) -> list[VisionLayout]:
        layouts = []
        for row, image in zip(batch["input_ids"].cpu(), images):
            tokens = self.image_tokens(image.size)
            run = (row == self.model.config.image_token_id).nonzero()[:, 0]
            if run.numel() != tokens.n_tokens:
                raise RuntimeError(f"{run.numel()} image tokens in the sequence, the layout expects {tokens.n_tokens}")
            grids = []
            for g in tokens.grids:
                inside = cells_in_image(g.cell_xy, image.size)
                grids.append(VisionGrid(token_index=run[g.offsets], grid_hw=g.grid_hw, cell_xy=g.cell_xy,
                                        cell_in_image=None if bool(inside.all()) else inside, name=g.name))
            spatial = torch.zeros(run.numel(), dtype=torch.bool)
            for g in tokens.grids:
                spatial[g.offsets] = True
            patch_xy = torch.cat(tokens.patch_xy)
            layouts.append(VisionLayout.from_grids(
                grids, non_spatial_index=run[~spatial] if not bool(spatial.all()) else None,
                patch_hw=tuple(patch_xy.shape[:2]), patch_xy=patch_xy))
        return layouts

    #: the projector reads the vision tower's ``hidden_states[vision_feature_layer]`` (CLS dropped by default)
    image_features_module = "model.multi_modal_projector"

    def split_image_features(self, features, batch, layouts):
        """The projector's input: each crop's patches, without the CLS row unless the strategy is "full"."""
        if self.model.config.vision_feature_select_strategy == "full":
            return super().split_image_features(features, batch, layouts)
        side = self.model.config.vision_config.image_size // self.model.config.vision_config.patch_size
        return VisionHook.square_crops(self.model.model.vision_tower, [lay.patch_hw[0] // side for lay in layouts], side).split(features)

    def vision_hook(self, batch: dict[str, torch.Tensor], layouts: list[VisionLayout]) -> VisionHook:
        """The output of the CLIP layer the projector reads: ``(n_crops, 1 + h*w, d)``, CLS first."""
        cfg = self.model.config
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        crops = [lay.patch_hw[0] // side for lay in layouts]
        if not isinstance(cfg.vision_feature_layer, int):
            raise ValueError(f"GradCAM reads one vision layer; this checkpoint concatenates {cfg.vision_feature_layer}")
        module = self.model.model.vision_tower.encoder.layers[cfg.vision_feature_layer]
        return VisionHook.cls_then_square_crops(module, crops, side)
