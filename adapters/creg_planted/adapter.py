"""The ``planted`` adapter: :class:`creg_planted.model.PlantedVLM` behind the adapter contract.

Sequence per sample (left-padded to the batch's longest)::

    <bos> ref-name words [<ref-pos>] <sep> vision cells (raster) <sep> tgt-name words <ask>

``<ref-pos>`` (``reference="text"`` only) carries A's box centre; the class logits are the head's
output at ``<ask>``. Hidden-state indices follow the Hugging Face convention (:mod:`creg.plugins.adapter`).

It declares ``provides_causal_effects``: :meth:`PlantedAdapter.causal_effects` gives, per sample,
the exact effect of removing each vision token on the logit gap of the true answer
(:mod:`creg.core.ground_truth`), computed in float64.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import Field, model_validator

from creg.plugins.adapter import (AdapterConfig, AttentionCallback, ForwardOutput, ForwardRequest, ModelParts, VisionLayout,
                          VLMAdapter)
from creg.core.compass import uniform_cell_xy
from creg.core.ground_truth import logit_gap
from creg.plugins.options import PluginOptions
from creg.core.sample import Sample
from creg.plugins.block_stack import gradient_start, replay_from, run_blocks

from .model import DIM, SEG_NONE, SEG_REF, SEG_TGT, TOKEN, PlantedVLM, attention_bias, word_ids
from .vision import cell_features, grid_shape

#: vision-token rows per float64 pass of :meth:`PlantedAdapter.causal_effects`.
REMOVAL_CHUNK = 64


class PlantedAdapter(VLMAdapter):
    """A hand-built VLM whose evidence is known (docs/planted.md). ``config.model``, ``dtype`` and
    ``device`` are ignored: it runs on the CPU in float32 (causal effects in float64)."""

    attentions_preserve_numerics = True  # attention is always computed explicitly
    provides_causal_effects = True

    class Options(PluginOptions):
        layers: int = Field(6, ge=3, le=48, description="decoder blocks (block 0 reads the names)")
        read_block: int = Field(-2, description="the block (0-based; negative counts from the end, -1 = last) in "
                                "which the answer token reads A's and B's cells and writes B - A; the paper's "
                                "CREG layers -2..-5 are the inputs of the last four blocks")
        mix: float = Field(0.1, ge=0.0, le=1.0, allow_inf_nan=False,
                           description="processing blocks: each token adds mix x the mean features of the tokens "
                           "before it and mix x its own object features (0: the blocks are identities)")
        decoy: bool = Field(False, description="add a decoy head to the read block: it attends to the top-left "
                            "cells and its output projection is zero")
        reference: Literal["pixels", "text"] = Field(
            "pixels", description="pixels: A is found by its name among the cells; text: B only is read from "
            "the cells, A's position is given by a <ref-pos> token in the text")
        patch_px: int = Field(28, ge=4, le=256, description="pixels per grid cell (about; 28: a 224 px image is 8 x 8 "
                              "tokens, as Qwen2-VL merges it)")
        logit_scale: float = Field(100.0, gt=0, allow_inf_nan=False,
                                   description="logits = scale x (B - A) / max(width, height) along each axis")

        @model_validator(mode="after")
        def _read_exists(self) -> "PlantedAdapter.Options":
            t = self.read_block + self.layers if self.read_block < 0 else self.read_block
            if not 1 <= t < self.layers:
                raise ValueError(f"read_block {self.read_block} is not one of blocks 1..{self.layers - 1} "
                                 f"(or -1..-{self.layers - 1}) of a {self.layers}-block model")
            return self

    def __init__(self, config: AdapterConfig | None = None, **options: Any):
        config = config or AdapterConfig(model="planted", options=self.Options(**options))
        if isinstance(config.options, dict):
            config = config.model_copy(update={"options": self.Options(**config.options)})
        super().__init__(config)
        o: PlantedAdapter.Options = config.options
        self.options = o
        read = o.read_block + o.layers if o.read_block < 0 else o.read_block
        kw = dict(layers=o.layers, read=read, mix=o.mix, decoy=o.decoy, reference=o.reference, logit_scale=o.logit_scale)
        self.model = PlantedVLM(**kw).float()
        self._exact = PlantedVLM(**kw).double()

    @property
    def num_layers(self) -> int:
        return len(self.model.blocks)

    @property
    def read_block(self) -> int:
        """The 0-based block that reads A and B."""
        return self.model.read

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    # -- inputs --------------------------------------------------------------------------------
    def _images(self, samples: Sequence[Sample], images: Sequence[Any] | None) -> list[Any]:
        if images is not None and len(images) != len(samples):
            raise ValueError(f"got {len(images)} images for {len(samples)} samples")
        loaded = [s.load_image() for s in samples] if images is None else [im.convert("RGB") for im in images]
        for s, im in zip(samples, loaded):
            if tuple(im.size) != tuple(s.image_size):
                raise ValueError(f"sample {s.id!r}: the image is {im.size[0]}x{im.size[1]} but image_size says "
                                 f"{s.image_size[0]}x{s.image_size[1]}")
        return loaded

    def _text(self, words: list[int], segment: int) -> tuple[list[int], list[int]]:
        return words, [segment] * len(words)

    def encode(self, samples: Sequence[Sample], images: Sequence[Any] | None = None, *, model: PlantedVLM | None = None,
               grad_vision: bool = False):
        """Left-padded embeddings ``(b, s, D)``, key-validity ``(b, s)``, layouts, activations per sample."""
        model = model or self.model
        dtype = next(model.parameters()).dtype
        seqs, layouts, acts_list = [], [], []
        for s, img in zip(samples, self._images(samples, images)):
            w, h = s.image_size
            gh, gw = grid_shape((w, h), self.options.patch_px)
            acts = cell_features(img, (gh, gw)).to(dtype)
            if grad_vision:
                acts = acts.requires_grad_(True)
            acts_list.append(acts)
            cell_xy = uniform_cell_xy((gh, gw), (w, h))
            scale = float(max(w, h))
            centre = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)  # positions are relative to it
            ref_ids, ref_seg = self._text([TOKEN["<bos>"], *word_ids(s.ref_name)], SEG_REF)
            ref_seg[0] = SEG_NONE
            pos_token = self.options.reference == "text"
            if pos_token:
                ref_ids, ref_seg = ref_ids + [TOKEN["<ref-pos>"]], ref_seg + [SEG_NONE]
            prefix_ids, prefix_seg = ref_ids + [TOKEN["<sep>"]], ref_seg + [SEG_NONE]
            tgt_ids, tgt_seg = self._text(word_ids(s.tgt_name), SEG_TGT)
            suffix_ids, suffix_seg = [TOKEN["<sep>"], *tgt_ids, TOKEN["<ask>"]], [SEG_NONE, *tgt_seg, SEG_NONE]
            prefix = model.text_embeddings(torch.tensor(prefix_ids), torch.tensor(prefix_seg)).to(dtype)
            if pos_token:
                (xa, ya) = s.ref_box.center
                prefix = prefix.clone()
                prefix[len(ref_ids) - 1, DIM["pos"]] = ((torch.tensor([xa, ya], dtype=torch.float64) - centre) / scale).to(dtype)
            with torch.set_grad_enabled(grad_vision):
                vis = model.vision_embeddings(acts.reshape(gh * gw, -1), (cell_xy.reshape(-1, 2) - centre) / scale)
                suffix = model.text_embeddings(torch.tensor(suffix_ids), torch.tensor(suffix_seg)).to(dtype)
                seqs.append(torch.cat([prefix, vis, suffix]))
            layouts.append((len(prefix_ids), gh, gw, cell_xy))
        length = max(e.shape[0] for e in seqs)
        pad = [length - e.shape[0] for e in seqs]
        with torch.set_grad_enabled(grad_vision):
            x = torch.stack([torch.cat([e.new_zeros(p, e.shape[1]), e]) for e, p in zip(seqs, pad)])
        valid = torch.stack([torch.arange(length) >= p for p in pad])
        vision = [VisionLayout(token_index=torch.arange(gh * gw) + p + pre, grid_hw=(gh, gw), cell_xy=cxy,
                               patch_hw=(gh, gw))
                  for (pre, gh, gw, cxy), p in zip(layouts, pad)]
        return x, valid, vision, acts_list

    @staticmethod
    def attention_bias(valid: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(b, s)`` valid keys -> ``(b, 1, s, s)`` additive bias: causal, no padding keys."""
        s = valid.shape[1]
        return attention_bias((torch.ones(s, s, dtype=torch.bool).tril()[None] & valid[:, None, :])[:, None], dtype)

    # -- contract ------------------------------------------------------------------------------
    def forward(self, samples: Sequence[Sample], request: ForwardRequest = ForwardRequest(), *,
                on_attention: AttentionCallback | None = None, images: Sequence[Any] | None = None) -> ForwardOutput:
        grad_vision = request.vision_activations
        grad_from = gradient_start(self.layer_to_block, request.layers, grad_vision)
        x, valid, vision, acts = self.encode(samples, images, grad_vision=grad_vision)
        mask = self.attention_bias(valid, x.dtype)
        hidden, logits, answer = run_blocks(self.model.blocks, self.model.norm, self.model.head, x, grad_from=grad_from,
                                            grad_vision=grad_vision, block_kwargs={"bias": mask},
                                            on_attention=on_attention)
        return ForwardOutput(
            class_logits=logits.float(), hidden={l: hidden[self.layer_to_block(l)] for l in request.layers},
            vision=vision, vision_activations=acts if grad_vision else None, answer_index=answer,
            state={"mask": mask, "answer_index": answer},
        )

    def model_parts(self) -> ModelParts:
        """The hand-built blocks (each takes its additive mask as ``bias``); no vision tower to
        re-initialise: the cell features are computed from the pixels, nothing there is a weight."""
        return ModelParts(blocks=list(self.model.blocks), vision=None, mask_kwarg="bias")

    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return replay_from(self.model.blocks, self.model.norm, self.model.head, hidden, self.layer_to_block(layer),
                           output.state, mask_kwarg="bias").float()

    # -- checks against the plain model (the contract's reference hooks) ------------------------
    def reference_hidden_states(self, samples: Sequence[Sample]) -> list[torch.Tensor]:
        """Every hidden state of a plain pass over the blocks (the last after the final norm)."""
        with torch.no_grad():
            x, valid, _, _ = self.encode(samples)
            mask = self.attention_bias(valid, x.dtype)
            states = [x]
            for block in self.model.blocks:
                x, _ = block(x, bias=mask)
                states.append(x)
            states[-1] = self.model.norm(x)
        return states

    def next_token_logits(self, samples: Sequence[Sample]) -> torch.Tensor:
        """``(b, 4)``: the plain model's output at the answer position (its whole "vocabulary")."""
        with torch.no_grad():
            x, valid, _, _ = self.encode(samples)
            return self.model.run(x, self.attention_bias(valid, x.dtype), torch.full((x.shape[0],), x.shape[1] - 1))

    option_token_ids = (0, 1, 2, 3)

    # -- ground truth --------------------------------------------------------------------------
    def causal_effects(self, samples: Sequence[Sample], images: Sequence[Any] | None = None) -> list[torch.Tensor]:
        """Per sample, ``(H_g, W_g)`` float64: gap(x) - gap(x without vision token j), where gap is the
        true answer's logit minus the highest other logit (:func:`creg.core.ground_truth.logit_gap`) and
        "without token j" masks j as a key in every block -- the same as deleting it from the
        sequence, since the decoder has no position encoding besides the cells' own features."""
        out = []
        model = self._exact
        with torch.no_grad():
            x, valid, vision, _ = self.encode(samples, images, model=model)
            mask = self.attention_bias(valid, x.dtype)
            answer = torch.full((1,), x.shape[1] - 1)
            for i, (s, lay) in enumerate(zip(samples, vision)):
                label = torch.tensor([s.option])
                base = logit_gap(model.run(x[i:i + 1], mask[i:i + 1], answer), label)
                tokens = lay.token_index
                effects = torch.empty(tokens.numel(), dtype=torch.float64)
                for start in range(0, tokens.numel(), REMOVAL_CHUNK):
                    chunk = tokens[start:start + REMOVAL_CHUNK]
                    m = mask[i:i + 1].repeat(len(chunk), 1, 1, 1)
                    m[torch.arange(len(chunk)), 0, :, chunk] = -1e30  # no query attends to token j
                    gaps = logit_gap(model.run(x[i:i + 1].expand(len(chunk), -1, -1), m, answer.expand(len(chunk))),
                                     label.expand(len(chunk)))
                    effects[start:start + len(chunk)] = base - gaps
                out.append(effects.reshape(lay.grid_hw))
        return out
