"""A small but real vision-language model behind the :class:`creg.plugins.adapter.VLMAdapter` contract
(test-only: the model creg's own source tests run on; plugin authors may use it too).

It exists so that relevance sources can be tested without Qwen2-VL: every number it returns
comes from an actual torch computation, and it honours the contract in full -- hidden-state
indices in the Hugging Face convention, gradients from the earliest requested layer only,
vision-encoder activations with gradients, attention maps streamed one layer at a time,
left padding, and :meth:`FakeVLMAdapter.logits_from_layer` replaying only the blocks above a
layer.

Model (einops axis names): an image is cut into an ``(hp, wp)`` grid of ``patch_px`` patches;
each patch's per-channel mean and std plus a sinusoidal position code go through a linear
embedding and one residual MLP block -- the "vision encoder", whose output ``(hp, wp, dv)``
is the vision activation used by GradCAM. ``merge x merge`` patches are concatenated and
projected to one vision token of width ``d`` (as Qwen2-VL's merger does), giving the
``(hg, wg)`` token grid. The sequence is ``[bos] ref-name tokens [sep] vision tokens [sep]
tgt-name tokens [ask]``, left-padded to the longest sample; ``num_layers`` pre-norm causal
transformer blocks follow, then a final norm and a 4-way head read at the last position.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from creg.core.sample import Sample
from creg.plugins.block_stack import gradient_start, replay_from, run_blocks
from creg.plugins.adapter import (
    AdapterConfig,
    AttentionCallback,
    ForwardOutput,
    ForwardRequest,
    ModelParts,
    VisionLayout,
    VLMAdapter,
)

VOCAB = 97
BOS, SEP, ASK = 0, 1, 2


def word_ids(text: str) -> list[int]:
    """Deterministic token ids of the words of ``text`` (3..VOCAB-1)."""
    return [3 + int(hashlib.md5(w.encode()).hexdigest(), 16) % (VOCAB - 3) for w in text.lower().split()]


class Block(nn.Module):
    """Pre-norm causal multi-head self-attention + MLP, with the attention map returned."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (b, s, d); ``mask`` (b, 1, s, s) bool, True = may attend. Returns (x, attn (b, h, s, s))."""
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        attn = torch.nan_to_num(attn)  # padding queries see no key at all
        x = x + self.out((attn @ v).transpose(1, 2).reshape(b, s, d))
        return x + self.mlp(self.norm2(x)), attn


class FakeVLM(nn.Module):
    def __init__(self, *, d: int = 32, dv: int = 24, heads: int = 4, num_layers: int = 4, merge: int = 2, seed: int = 0):
        super().__init__()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.merge = merge
        self.patch_embed = nn.Linear(6 + 4, dv)
        self.vision_mlp = nn.Sequential(nn.LayerNorm(dv), nn.Linear(dv, 2 * dv), nn.GELU(), nn.Linear(2 * dv, dv))
        self.merger = nn.Linear(merge * merge * dv, d)
        self.embed = nn.Embedding(VOCAB, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 4)
        torch.random.set_rng_state(gen_state)
        self.requires_grad_(False)


class FakeVLMAdapter(VLMAdapter):
    """:class:`FakeVLM` behind the adapter contract. ``config.options``: ``d``, ``dv``, ``heads``,
    ``num_layers``, ``merge``, ``seed``, ``patch_px`` (default 16)."""

    description = "test-only fake VLM"
    #: its attention is always computed explicitly: streaming it changes nothing in the pass.
    attentions_preserve_numerics = True

    def __init__(self, config: AdapterConfig | None = None, **options: Any):
        config = config or AdapterConfig(model="fake", options=options)
        super().__init__(config)
        opts = dict(config.options)
        self.patch_px = int(opts.pop("patch_px", 16))
        self.model = FakeVLM(**{k: int(v) for k, v in opts.items()})
        #: number of :meth:`forward` calls (tests check that sources share one).
        self.forward_calls = 0

    @property
    def num_layers(self) -> int:
        return len(self.model.blocks)

    def model_parts(self) -> ModelParts:
        """Blocks receive their bool mask as ``mask``; the vision tower is the patch embedding, its MLP
        and the merger."""
        return ModelParts(blocks=list(self.model.blocks), mask_kwarg="mask",
                          vision=nn.ModuleList([self.model.patch_embed, self.model.vision_mlp, self.model.merger]))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    # -- pieces -------------------------------------------------------------------------------

    def _patch_grid(self, image) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch features ``(hp, wp, 10)`` of the resized image and the resized size (w, h)."""
        m, p = self.model.merge, self.patch_px
        w, h = image.size
        gw, gh = max(1, round(w / (p * m))), max(1, round(h / (p * m)))
        hp, wp = gh * m, gw * m
        img = image.convert("RGB").resize((wp * p, hp * p))
        px = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).view(hp, p, wp, p, 3) / 255.0
        mean, std = px.mean(dim=(1, 3)), px.std(dim=(1, 3))  # hp wp 3
        ys = (torch.arange(hp, dtype=torch.float32)[:, None] + 0.5) / hp
        xs = (torch.arange(wp, dtype=torch.float32)[None, :] + 0.5) / wp
        pos = torch.stack(
            [torch.sin(math.pi * ys).expand(hp, wp), torch.cos(math.pi * ys).expand(hp, wp),
             torch.sin(math.pi * xs).expand(hp, wp), torch.cos(math.pi * xs).expand(hp, wp)], dim=-1)
        return torch.cat([mean, std, pos], dim=-1), (wp * p, hp * p)

    def _merge(self, acts: torch.Tensor) -> torch.Tensor:
        """``(hp, wp, dv)`` -> ``(hg * wg, d)`` vision tokens in raster order."""
        m = self.model.merge
        hp, wp, dv = acts.shape
        x = acts.view(hp // m, m, wp // m, m, dv).permute(0, 2, 1, 3, 4).reshape((hp // m) * (wp // m), m * m * dv)
        return self.model.merger(x)

    # -- contract -----------------------------------------------------------------------------

    def forward(
        self,
        samples: Sequence[Sample],
        request: ForwardRequest = ForwardRequest(),
        *,
        on_attention: AttentionCallback | None = None,
        images: Sequence[Any] | None = None,
    ) -> ForwardOutput:
        self.forward_calls += 1
        images = list(images) if images is not None else [s.load_image() for s in samples]
        grad_vision = request.vision_activations
        grad_from = gradient_start(self.layer_to_block, request.layers, grad_vision)

        seqs, layouts, acts_list = [], [], []
        for s, img in zip(samples, images):
            feats, (rw, rh) = self._patch_grid(img)
            with torch.set_grad_enabled(grad_vision):
                acts = self.model.patch_embed(feats)
                acts = acts + self.model.vision_mlp(acts)
                if grad_vision:
                    acts = acts.detach().requires_grad_(True)
                acts_list.append(acts)
                vis = self._merge(acts)
            hp, wp, _ = acts.shape
            gh, gw = hp // self.model.merge, wp // self.model.merge
            prefix = torch.tensor([BOS, *word_ids(s.ref_name), SEP])
            suffix = torch.tensor([SEP, *word_ids(s.tgt_name), ASK])
            with torch.set_grad_enabled(grad_vision):
                emb = torch.cat([self.model.embed(prefix), vis, self.model.embed(suffix)])
            seqs.append(emb)
            w, h = s.image_size
            ys = (torch.arange(gh, dtype=torch.float64) + 0.5) * (h / gh)
            xs = (torch.arange(gw, dtype=torch.float64) + 0.5) * (w / gw)
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            layouts.append((len(prefix), gh, gw, torch.stack([xx, yy], dim=-1), (hp, wp)))

        length = max(e.shape[0] for e in seqs)
        d = seqs[0].shape[1]
        pad = [length - e.shape[0] for e in seqs]
        with torch.set_grad_enabled(grad_vision):
            x = torch.stack([torch.cat([e.new_zeros(p_, d), e]) for e, p_ in zip(seqs, pad)])  # left padding
        valid = torch.stack([torch.arange(length) >= p_ for p_ in pad])  # b s
        mask = self._mask(valid)
        vision = [
            VisionLayout(token_index=torch.arange(gh * gw) + p_ + pre, grid_hw=(gh, gw), cell_xy=cxy, patch_hw=patch)
            for (pre, gh, gw, cxy, patch), p_ in zip(layouts, pad)
        ]
        hidden, logits, answer_index = run_blocks(self.model.blocks, self.model.norm, self.model.head, x,
                                                  grad_from=grad_from, grad_vision=grad_vision,
                                                  block_kwargs={"mask": mask}, on_attention=on_attention)
        keep = {l: hidden[self.layer_to_block(l)] for l in request.layers}
        return ForwardOutput(
            class_logits=logits.float(),
            hidden=keep,
            vision=vision,
            vision_activations=acts_list if grad_vision else None,
            answer_index=answer_index,
            state={"mask": mask, "answer_index": answer_index},
        )

    @staticmethod
    def _mask(valid: torch.Tensor) -> torch.Tensor:
        """``(b, 1, s, s)``: causal and not attending to padding keys."""
        s = valid.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool).tril()
        return (causal[None] & valid[:, None, :])[:, None]

    def logits_from_embeddings(self, output: ForwardOutput, embeddings: torch.Tensor) -> torch.Tensor:
        """The whole decoder from hidden index 0, ``(r * b, seq, d) -> (r * b, 4)`` (for Captum)."""
        return self.logits_from_layer(output, 0, embeddings)

    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return replay_from(self.model.blocks, self.model.norm, self.model.head, hidden, self.layer_to_block(layer),
                           output.state, mask_kwarg="mask").float()
