"""A tiny, randomly initialised vision-language model behind the creg adapter contract.

Everything a real adapter must get right is here in ~200 lines of plain torch (einops axis
names):

* the image is resized to a whole number of ``CELL_PX`` cells, cut into ``PATCH_PX`` patches
  ``(h_p, w_p)``; a per-patch encoder gives the vision activations ``(h_p, w_p, d_v)``;
  2 x 2 patches merge into one vision token, giving the ``(H_g, W_g)`` grid (as Qwen2-VL does);
* the sequence is ``[bos] [img_start] vision tokens (raster order) [img_end] question words
  [ask]``, left-padded, so the answer position is the last one;
* ``N_LAYERS`` pre-norm causal transformer blocks, a final norm and a vocabulary head; the class
  logits are the head's logits for the option tokens "1".."4" at the answer position;
* hidden-state indices follow the Hugging Face convention (0 = embeddings, i = input of block
  i + 1, -1 = after the final norm); gradients start at the earliest requested layer;
* ``logits_from_layer`` replays only the blocks above a layer.

It streams no attention maps and says so (``NotImplementedError``); its test declares
``supports_attentions = False``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from creg.plugins.adapter import AdapterConfig, ForwardOutput, ForwardRequest, VisionLayout, VLMAdapter
from creg.core.compass import uniform_cell_xy
from creg.core.prompts import OPTION_TOKENS, render_prompt
from creg.core.sample import Sample

CELL_PX, PATCH_PX, MAX_CELLS = 28, 14, 64
D, D_VISION, N_LAYERS, HEADS, VOCAB, MAX_LEN = 32, 16, 3, 4, 256, 512
PAD, BOS, IMG_START, IMG, IMG_END, ASK = 0, 1, 2, 3, 4, 5
OPTION_IDS = {tok: 6 + i for i, tok in enumerate(OPTION_TOKENS)}  # "1".."4" -> 6..9
FIRST_WORD_ID = 10


def word_ids(text: str) -> list[int]:
    """Each whitespace-separated word hashed to one token id (digits "1".."4" keep theirs)."""
    return [
        OPTION_IDS.get(w, FIRST_WORD_ID + int(hashlib.md5(w.encode()).hexdigest(), 16) % (VOCAB - FIRST_WORD_ID))
        for w in text.lower().split()
    ]


class Block(nn.Module):
    """Pre-norm causal self-attention + MLP on ``(b, s, d)`` with a boolean ``(b, 1, s, s)`` mask."""

    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b s (three h e) -> three b h s e", three=3, h=HEADS)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(rearrange(attn, "b h s e -> b s (h e)"))
        return x + self.mlp(self.norm2(x))


class TinyVLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Sequential(nn.Linear(3 * PATCH_PX * PATCH_PX, D_VISION), nn.GELU(), nn.LayerNorm(D_VISION))
        self.merge = nn.Linear(4 * D_VISION, D)
        self.embed = nn.Embedding(VOCAB, D)
        self.position = nn.Embedding(MAX_LEN, D)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYERS))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB)


def to_patches(image, size: tuple[int, int]) -> torch.Tensor:
    """``(h_p, w_p, 3 * PATCH_PX**2)`` pixels in [-1, 1] of ``image`` resized to whole cells."""
    w, h = size
    scale = min(1.0, (MAX_CELLS / ((w / CELL_PX) * (h / CELL_PX))) ** 0.5)
    gw, gh = max(1, round(w * scale / CELL_PX)), max(1, round(h * scale / CELL_PX))
    resized = image.resize((gw * CELL_PX, gh * CELL_PX))
    pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).float()
    pixels = pixels.reshape(gh * CELL_PX, gw * CELL_PX, 3) / 127.5 - 1.0
    return rearrange(pixels, "(hp ph) (wp pw) c -> hp wp (c ph pw)", ph=PATCH_PX, pw=PATCH_PX)


class ExampleTinyAdapter(VLMAdapter):
    """``AdapterConfig.model`` is ``"random"`` or ``"random:SEED"`` (the weights' seed)."""

    description = "example third-party adapter: a tiny random VLM in plain torch"

    def __init__(self, config: AdapterConfig, model: TinyVLM):
        super().__init__(config)
        self.model = model
        self.option_token_ids = tuple(OPTION_IDS[t] for t in OPTION_TOKENS)

    @classmethod
    def load(cls, config: AdapterConfig) -> "ExampleTinyAdapter":
        kind, _, seed = config.model.partition(":")
        if kind != "random":
            raise ValueError(f"model must be 'random' or 'random:SEED', got {config.model!r}")
        torch.manual_seed(int(seed or 0))
        model = TinyVLM().eval().requires_grad_(False)
        return cls(config, model.to("cpu" if config.device == "auto" else config.device))

    @property
    def num_layers(self) -> int:
        return N_LAYERS

    @property
    def device(self) -> torch.device:
        return self.model.head.weight.device

    def _inputs(self, samples: Sequence[Sample], images: Sequence[Any] | None):
        """Token ids ``(b, s)`` (left-padded), validity mask, patches per sample, layouts."""
        if images is not None and len(images) != len(samples):
            raise ValueError(f"got {len(images)} images for {len(samples)} samples")
        rows, patches, layouts = [], [], []
        for i, s in enumerate(samples):
            image = s.load_image() if images is None else images[i].convert("RGB")
            if tuple(image.size) != tuple(s.image_size):
                raise ValueError(f"sample {s.id!r}: the image is {image.size} but image_size says {s.image_size}")
            p = to_patches(image, s.image_size)
            grid_hw = (p.shape[0] // 2, p.shape[1] // 2)
            question = word_ids(render_prompt(self.config.prompt, s.ref_name, s.tgt_name))
            rows.append([BOS, IMG_START] + [IMG] * (grid_hw[0] * grid_hw[1]) + [IMG_END] + question + [ASK])
            patches.append(p)
            layouts.append((grid_hw, tuple(p.shape[:2]), s.image_size))
        seq = max(map(len, rows))
        ids = torch.tensor([[PAD] * (seq - len(r)) + r for r in rows], device=self.device)
        valid = ids != PAD
        vision = [
            VisionLayout(
                token_index=(ids[i] == IMG).nonzero()[:, 0].cpu(),
                grid_hw=grid_hw,
                cell_xy=uniform_cell_xy(grid_hw, size),
                patch_hw=patch_hw,
            )
            for i, (grid_hw, patch_hw, size) in enumerate(layouts)
        ]
        return ids, valid, [p.to(self.device) for p in patches], vision

    def _embed(self, ids, valid, activations: list[torch.Tensor]) -> torch.Tensor:
        """Hidden-state index 0: token (or merged vision) embeddings + positions, ``(b, s, d)``."""
        x = self.model.embed(ids)
        for i, act in enumerate(activations):
            merged = rearrange(act, "(hg mh) (wg mw) e -> (hg wg) (mh mw e)", mh=2, mw=2)
            x = x.index_put((torch.tensor([i]), (ids[i] == IMG).nonzero()[:, 0]), self.model.merge(merged))
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        return x + self.model.position(positions)

    @staticmethod
    def _mask(valid: torch.Tensor) -> torch.Tensor:
        """``(b, 1, s, s)``: causal, never onto padding; a pad position sees itself (no NaN rows)."""
        s = valid.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=valid.device).tril()
        eye = torch.eye(s, dtype=torch.bool, device=valid.device)
        return ((causal & valid[:, None, :]) | eye)[:, None]

    def _run(self, ids, valid, acts, mask, root: int | None, grad_from_vision: bool) -> dict[int, torch.Tensor]:
        """Hidden states by index 0..N (N = after the final norm). Below ``root`` nothing keeps a
        graph; at ``root`` the state becomes a leaf that requires grad."""
        with torch.set_grad_enabled(grad_from_vision):
            x = self._embed(ids, valid, acts)
        states: dict[int, torch.Tensor] = {}
        for t in range(N_LAYERS + 1):
            if t == root and not grad_from_vision:
                x = x.detach().requires_grad_(True)
            states[t] = x
            if t == N_LAYERS:
                break
            with torch.set_grad_enabled(grad_from_vision or (root is not None and t >= root)):
                x = self.model.blocks[t](x, mask)
                if t == N_LAYERS - 1:
                    x = self.model.norm(x)
        return states

    def _logits(self, final: torch.Tensor) -> torch.Tensor:
        """``(b, vocab)`` next-token logits at the last (answer) position."""
        return self.model.head(final[:, -1:])[:, 0]

    def forward(self, samples, request: ForwardRequest = ForwardRequest(), *, on_attention=None, images=None) -> ForwardOutput:
        if request.attentions:
            raise NotImplementedError("ExampleTinyAdapter does not stream attention maps")
        ids, valid, patches, vision = self._inputs(samples, images)
        mask = self._mask(valid)
        targets = {layer: self.layer_to_block(layer) for layer in request.layers}
        with torch.no_grad():
            acts = [self.model.patch(p) for p in patches]
        activations = [a.requires_grad_(True) for a in acts] if request.vision_activations else None
        states = self._run(ids, valid, acts, mask, min(targets.values(), default=None), request.vision_activations)
        with torch.set_grad_enabled(states[N_LAYERS].requires_grad):
            logits = self._logits(states[N_LAYERS])[:, list(self.option_token_ids)]
        return ForwardOutput(
            class_logits=logits.float(),
            hidden={layer: states[t] for layer, t in targets.items()},
            vision=vision,
            vision_activations=activations,
            answer_index=torch.full((len(samples),), ids.shape[1] - 1, dtype=torch.long),
            state=mask,
        )

    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        mask: torch.Tensor = output.state
        r = hidden.shape[0] // mask.shape[0]
        mask = mask.repeat(r, 1, 1, 1)
        t = self.layer_to_block(layer)
        x = hidden
        for i in range(t, N_LAYERS):
            x = self.model.blocks[i](x, mask)
        if t < N_LAYERS:
            x = self.model.norm(x)
        return self._logits(x)[:, list(self.option_token_ids)].float()

    def next_token_logits(self, samples: Sequence[Sample]) -> torch.Tensor:
        """``(b, vocab)`` the model's own next-token logits at the answer position (no request)."""
        ids, valid, patches, _ = self._inputs(samples, None)
        with torch.no_grad():
            states = self._run(ids, valid, [self.model.patch(p) for p in patches], self._mask(valid), None, False)
            return self._logits(states[N_LAYERS]).float()
