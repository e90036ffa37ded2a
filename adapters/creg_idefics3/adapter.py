"""The Idefics3 adapter: SmolVLM and Idefics3 checkpoints (tiles + global image, pixel shuffle).

The Idefics3 image processor scales the longest edge to ``size``, stretches the image to whole
tiles of ``max_image_size`` px, cuts them out row by row and adds the whole image as one more
tile, last; each crop becomes ``<fake_token_around_image><row_r_col_c>`` (``<global-img>``)
and ``image_seq_len`` ``<image>`` tokens, a pixel-shuffled raster of its patches
(:func:`idefics3_image_text`). The layout reads rows and columns back from the markers in the
sequence (:class:`creg.hf.tiles.TiledImage`); GradCAM reads the SigLIP output the connector reads.
"""

from __future__ import annotations

from typing import Any, Sequence

from creg.adapter import VisionLayout
from creg.hf import ChatInputs, HFAdapter, TiledImage, VisionHook, even_tiles
from creg.hf.chat_inputs import ProcessorMode, processor_config, processor_mode_field


def idefics3_image_text(inputs: ChatInputs, vision: dict[str, Any], i: int) -> str:
    """Idefics3Processor's text for image ``i``: each tile's marker and tokens, a newline per row, the global image."""
    rows, cols, n = vision["rows"][i][0], vision["cols"][i][0], inputs.image_seq_len
    crop = lambda tag: f"<fake_token_around_image>{tag}" + "<image>" * n  # noqa: E731
    tiles = "".join("".join(crop(f"<row_{r}_col_{c}>") for c in range(1, cols + 1)) + "\n" for r in range(1, rows + 1))
    return tiles + "\n" * bool(rows) + crop("<global-img>") + "<fake_token_around_image>"


class Idefics3Adapter(HFAdapter):
    """``Idefics3ForConditionalGeneration`` (SmolVLM) with image splitting."""

    description = "SmolVLM / Idefics3 checkpoints (tiles + global image) via transformers"
    model_class = "Idefics3ForConditionalGeneration"
    image_features_module = "model.connector"

    class Options(HFAdapter.Options):
        processor: ProcessorMode = processor_mode_field()
        image_splitting: bool = True

    @classmethod
    def load_processor(cls, config, options) -> ChatInputs:
        inputs = ChatInputs.from_pretrained(config.model, options.processor, image_token="<image>", nested_images=True,
                                            image_text=idefics3_image_text, image_call_kwargs={
                                                "do_image_splitting": options.image_splitting, "return_row_col_info": True})
        inputs.image_seq_len = processor_config(config.model).get("image_seq_len", 169)
        return inputs

    def chat(self, question: str, answer: str | None = None) -> str:
        return self.processor.chat(question, answer)

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]):
        return {k: v for k, v in self.processor.encode(texts, images).items() if k not in ("rows", "cols")}

    def vision_layouts(self, batch, images) -> list[VisionLayout]:
        v, tok = self.model.config.vision_config, self.tokenizer
        side, k = v.image_size // v.patch_size, v.image_size // v.patch_size // self.model.config.scale_factor
        markers = {tok.convert_tokens_to_ids(f"<row_{r}_col_{c}>"): (r, c) for r in range(1, 7) for c in range(1, 7)}
        layouts = []
        for row, image in zip(batch["input_ids"].tolist(), images):
            tiles = [markers[t] for t in row if t in markers]
            rows, cols = max((r for r, _ in tiles), default=0), max((c for _, c in tiles), default=0)
            tiled = TiledImage.from_tiles(image.size, even_tiles(image.size, rows, cols), cells_hw=(k, k),
                                          patches_hw=(side, side), global_image="last")
            ids = batch["input_ids"][len(layouts)]
            layouts.append(tiled.layout((ids == self.processor.image_token_id).nonzero()[:, 0]))
        return layouts

    def vision_hook(self, batch, layouts: list[VisionLayout]) -> VisionHook:
        side = self.model.config.vision_config.image_size // self.model.config.vision_config.patch_size
        return VisionHook.square_crops(self.model.model.vision_model.post_layernorm,
                                       [lay.patch_hw[0] // side for lay in layouts], side)
