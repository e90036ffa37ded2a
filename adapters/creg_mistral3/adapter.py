"""The Mistral3 adapter: Pixtral vision (Mistral-Small-3.1 / 3.2, Pixtral-style checkpoints).

The Pixtral image processor scales an image down to fit ``longest_edge`` and rounds each side
up to whole tokens of ``patch_size * spatial_merge_size`` px (a stretch of the whole image);
the placeholder becomes one row of ``[IMG]`` per token row, each closed by ``[IMG_BREAK]``, the
last by ``[IMG_END]`` (:func:`pixtral_rows`). The vision tower runs every image of the batch
as one packed sequence, read by GradCAM at ``vision_feature_layer``.
"""

from __future__ import annotations

from typing import Any, Sequence

from creg.plugins.adapter import VisionLayout
from creg.hf import ChatInputs, HFAdapter, VisionHook, token_grid_layout

from .reference import pixtral_processor_config, pixtral_reference_inputs


def pixtral_rows(inputs: ChatInputs, vision: dict[str, Any], i: int) -> str:
    """``[IMG]`` x w, ``[IMG_BREAK]``, ... for each of h token rows; ``[IMG_END]`` closes the last."""
    h, w = (int(v) // inputs.image_call_kwargs["patch_size"] for v in vision["image_sizes"][i])
    return ("[IMG]" * w + "[IMG_BREAK]") * (h - 1) + "[IMG]" * w + "[IMG_END]"


class Mistral3Adapter(HFAdapter):
    """``Mistral3ForConditionalGeneration`` through the checkpoint's tokenizer and Pixtral image processor."""

    model_class = "Mistral3ForConditionalGeneration"
    image_features_module = "model.multi_modal_projector"

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        token_px = pixtral_processor_config(config.model)["token_px"]  # PixtralProcessor needs torchvision: manual
        return ChatInputs.from_pretrained(config.model, "manual", image_token="[IMG]", image_text=pixtral_rows,
                                          image_call_kwargs={"patch_size": token_px})

    def reference_inputs(self, texts: Sequence[str], images: Sequence[Any]):
        return pixtral_reference_inputs(self.config.model, self.tokenizer, self.processor.image_processor, texts, images)

    def vision_layouts(self, batch, images) -> list[VisionLayout]:
        px, m = self.processor.image_call_kwargs["patch_size"], self.model.config.spatial_merge_size
        return [token_grid_layout(row, self.processor.image_token_id, (h // px, w // px), (0, 0, *im.size), im.size,
                                  patch_hw=(h * m // px, w * m // px))
                for row, (h, w), im in zip(batch["input_ids"], batch["image_sizes"].tolist(), images)]

    def vision_hook(self, batch, layouts: list[VisionLayout]) -> VisionHook:
        layer = self.model.config.vision_feature_layer
        if not isinstance(layer, int):
            raise ValueError(f"GradCAM reads one vision layer; this checkpoint concatenates {layer}")
        module = self.model.model.vision_tower.transformer.layers[layer]
        return VisionHook.packed_sequence(module, [lay.patch_hw for lay in layouts])
