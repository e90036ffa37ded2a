"""What the toy model is trained and checked on: synthetic scenes, their flipped copies, and the
adapter's model inputs.

Scenes come from the ``synthetic`` benchmark and the model from the ``qwen2vl`` adapter, both
looked up in creg's plugin registry (this package imports neither plugin). Training draws the
scenes of step ``t`` from their own seed (:func:`train_seed`), so a resumed run sees exactly the
scenes it would have seen without the interruption.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from creg.core.sample import Box, Sample

#: what a horizontal / vertical flip of the image does to a relation.
FLIP_RELATION = {
    "h": {"left": "right", "right": "left", "above": "above", "below": "below"},
    "v": {"left": "left", "right": "right", "above": "below", "below": "above"},
}
FLIP_RELATION["hv"] = {r: FLIP_RELATION["v"][FLIP_RELATION["h"][r]] for r in FLIP_RELATION["h"]}

#: The image processor's normalisation (OpenAI CLIP mean/std, as in Qwen2-VL's preprocessor).
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


def adapter_class():
    """The ``qwen2vl`` adapter class, through the plugin registry."""
    from creg.plugins.manager import get_plugins

    return get_plugins().load("adapter", "qwen2vl")


def load_adapter(model_dir: str):
    from creg.plugins.adapter import AdapterConfig

    return adapter_class().load(AdapterConfig(model=str(model_dir), dtype="float32", device="cpu"))


def scenes(seed: int, n: int, **options: Any) -> Iterator[Sample]:
    """Scenes 0..n-1 of ``seed`` from the ``synthetic`` benchmark (through the plugin registry);
    ``options`` are the benchmark's (``layout``, ``colours``, ``width``, ...)."""
    from creg.plugins.manager import get_plugins

    bench = get_plugins().load("benchmark", "synthetic")
    return iter(bench(seed=seed, n=n, **options).samples())


def train_seed(run_seed: int, step: int) -> int:
    """Scene seed of training step ``step`` (>= 1): far from the held-out seeds (< 100000)."""
    return (1000 + run_seed) * 1_000_000 + step


def flip_sample(s: Sample, how: str) -> Sample:
    """``s`` with its image flipped ``"h"`` (left-right), ``"v"`` (top-bottom) or ``"hv"`` (both):
    boxes mirrored, relation mapped by :data:`FLIP_RELATION`."""
    w, h = s.image_size
    img = s.load_image()
    if "h" in how:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if "v" in how:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)

    def mirror(b: Box) -> Box:
        x0, x1 = (w - b.x1, w - b.x0) if "h" in how else (b.x0, b.x1)
        y0, y1 = (h - b.y1, h - b.y0) if "v" in how else (b.y0, b.y1)
        return Box(x0=x0, y0=y0, x1=x1, y1=y1)

    return s.model_copy(update=dict(
        id=f"{s.id}-flip{how}", image=img, ref_box=mirror(s.ref_box), tgt_box=mirror(s.tgt_box),
        relation=FLIP_RELATION[how][s.relation], meta={**s.meta, "flip": how},
    ))


def blank_sample(s: Sample) -> Sample:
    """``s`` with its objects removed: an image of the scene's background colour (the top-left
    pixel), same size, names, boxes and relation."""
    img = s.load_image().convert("RGB")
    return s.model_copy(update=dict(id=f"{s.id}-blank", image=Image.new("RGB", img.size, img.getpixel((0, 0))),
                                    meta={**s.meta, "blank": True}))


def patchify(image: Image.Image, side: int, patch: int = 14, merge: int = 2, temporal: int = 2) -> torch.Tensor:
    """``(h*w, 3*temporal*patch*patch)`` pixel values in Qwen2-VL's merge-window order, as the
    image processor gives them when it resizes ``image`` to ``side`` x ``side`` (bicubic)."""
    image = image.convert("RGB")
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(_MEAN).view(3, 1, 1)) / torch.tensor(_STD).view(3, 1, 1)
    x = x.unsqueeze(0).expand(temporal, -1, -1, -1)
    t, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(1, t, c, gh // merge, merge, patch, gw // merge, merge, patch).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gh * gw, c * t * patch * patch)


class Batcher:
    """Model inputs for samples: token ids from the adapter (cached per name pair), pixel values
    from :func:`patchify` at the side the adapter's image processor resizes square images to."""

    def __init__(self, adapter):
        self.adapter = adapter
        self._ids: dict[tuple[str, str], torch.Tensor] = {}
        self._grid: torch.Tensor | None = None
        self.side: int | None = None

    def token_ids(self, s: Sample) -> torch.Tensor:
        key = (s.ref_name, s.tgt_name)
        if key not in self._ids:
            enc = self.adapter.encode([s])
            self._ids[key] = enc["input_ids"][0]
            self._grid = enc["image_grid_thw"][0]
            self.side = int(self._grid[1]) * int(self.adapter.inputs.image_processor.patch_size)
        return self._ids[key]

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        ids = [self.token_ids(s) for s in samples]
        square = all(s.image_size == samples[0].image_size and s.image_size[0] == s.image_size[1] for s in samples)
        if len({len(i) for i in ids}) != 1 or not square:  # the general case: the adapter itself
            return self.adapter.encode(samples)
        input_ids = torch.stack(ids)
        image_token = self.adapter.inputs.image_token_id
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": (input_ids == image_token).long(),
            "pixel_values": torch.cat([patchify(s.load_image(), self.side) for s in samples]),
            "image_grid_thw": self._grid.unsqueeze(0).repeat(len(samples), 1),
        }


def check_inputs(batcher: Batcher, samples: Sequence[Sample], atol: float = 1e-4) -> float:
    """Fail unless the fast batch matches the adapter's own encoding of ``samples`` (token ids
    exactly, pixel values within ``atol``: resizing may round differently); returns the largest
    pixel difference."""
    fast, ref = batcher(samples), batcher.adapter.encode(samples)
    worst = 0.0
    for k, v in ref.items():
        got = fast[k].to(v.dtype)
        if got.shape != v.shape:
            raise AssertionError(f"training input {k!r} has shape {tuple(got.shape)}, the adapter's {tuple(v.shape)}")
        if v.is_floating_point():
            worst = max(worst, float((got - v).abs().max()))
            if worst > atol:
                raise AssertionError(f"training input {k!r} differs from the adapter's encoding by {worst:.2e}")
        elif not torch.equal(got, v):
            raise AssertionError(f"training input {k!r} differs from the adapter's encoding")
    return worst
