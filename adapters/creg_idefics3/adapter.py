"""The Idefics3 adapter: SmolVLM / Idefics3 (tiles + the global image last, pixel shuffle).

Each crop is ``<fake_token_around_image><row_r_col_c>`` (``<global-img>``) + ``image_seq_len``
``<image>`` tokens (:func:`idefics3_image_text`); the layout reads the tile arrangement back from
those markers (:class:`creg.hf.TiledImage`); GradCAM reads the SigLIP output the connector reads.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

from creg.plugins.adapter import VisionLayout
from creg.hf import ChatInputs, HFAdapter, TiledImage, VisionHook, even_tiles
from creg.hf.chat_inputs import ProcessorMode, processor_config, processor_mode_field


def idefics3_image_text(n: int, inputs: ChatInputs, vision: dict[str, Any], i: int) -> str:
    """Idefics3Processor's text for image ``i`` (``n`` tokens a crop): each tile's marker and tokens, a newline per row, the global image."""
    rows, cols = vision["rows"][i][0], vision["cols"][i][0]
    crop = lambda tag: f"<fake_token_around_image>{tag}" + "<image>" * n  # noqa: E731
    tiles = "".join("".join(crop(f"<row_{r}_col_{c}>") for c in range(1, cols + 1)) + "\n" for r in range(1, rows + 1))
    return tiles + "\n" * bool(rows) + crop("<global-img>") + "<fake_token_around_image>"


class Idefics3Adapter(HFAdapter):
    """``Idefics3ForConditionalGeneration`` (SmolVLM) with image splitting."""

    model_class = "Idefics3ForConditionalGeneration"
    image_features_module = "model.connector"

    class Options(HFAdapter.Options):
        processor: ProcessorMode = processor_mode_field()
        image_splitting: bool = True

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        n = processor_config(config.model).get("image_seq_len", 169)
        return ChatInputs.from_pretrained(config.model, options.processor, image_token="<image>", nested_images=True,
                                          image_text=partial(idefics3_image_text, n), image_call_kwargs={
                                              "do_image_splitting": options.image_splitting, "return_row_col_info": True})

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]):
        return {k: v for k, v in self.processor.encode(texts, images).items() if k not in ("rows", "cols")}

    def vision_layouts(self, batch, images) -> list[VisionLayout]:
        v, tok, layouts = self.model.config.vision_config, self.tokenizer, []
        side = v.image_size // v.patch_size
        markers = {tok.convert_tokens_to_ids(f"<row_{r}_col_{c}>"): (r, c) for r in range(1, 7) for c in range(1, 7)}
        for ids, image in zip(batch["input_ids"].cpu(), images):
            rows, cols = map(max, zip((0, 0), *(markers[t] for t in ids.tolist() if t in markers)))
            tiled = TiledImage.from_tiles(image.size, even_tiles(image.size, rows, cols), global_image="last",
                                          cells_hw=(side // self.model.config.scale_factor,) * 2, patches_hw=(side, side))
            layouts.append(tiled.layout((ids == self.processor.image_token_id).nonzero()[:, 0]))
        return layouts

    def vision_hook(self, batch, layouts: list[VisionLayout]) -> VisionHook:
        return VisionHook.stacked_square_crops(self.model.model.vision_model.post_layernorm, layouts)
