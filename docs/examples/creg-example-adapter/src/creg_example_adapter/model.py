"""The third party's own model: a tiny, randomly initialised VLM in plain torch (einops axis names).

* the image is resized to a whole number of ``CELL_PX`` cells, cut into ``PATCH_PX`` patches
  ``(h_p, w_p)``; a per-patch encoder gives the vision activations ``(h_p, w_p, d_v)``;
  2 x 2 patches merge into one vision token, giving the ``(H_g, W_g)`` grid (as Qwen2-VL does);
* the sequence is ``[bos] [img_start] vision tokens (raster order) [img_end] question words
  [ask]``, left-padded, so the answer position is the last one;
* ``N_LAYERS`` pre-norm causal transformer blocks, a final norm and a vocabulary head.

In a real plugin this is the model library (transformers, your research code); the adapter
(:mod:`creg_example_adapter.adapter`) is the part you write for creg.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from creg.core.prompts import OPTION_TOKENS

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


def embed(model: TinyVLM, ids: torch.Tensor, valid: torch.Tensor, activations: list[torch.Tensor]) -> torch.Tensor:
    """Hidden-state index 0: token (or merged vision) embeddings + positions, ``(b, s, d)``."""
    x = model.embed(ids)
    for i, act in enumerate(activations):
        merged = rearrange(act, "(hg mh) (wg mw) e -> (hg wg) (mh mw e)", mh=2, mw=2)
        x = x.index_put((torch.tensor([i]), (ids[i] == IMG).nonzero()[:, 0]), model.merge(merged))
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    return x + model.position(positions)


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """``(b, 1, s, s)``: causal, never onto padding; a pad position sees itself (no NaN rows)."""
    s = valid.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(s, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye)[:, None]


def hidden_states(model: TinyVLM, x: torch.Tensor, mask: torch.Tensor, root: int | None, grad_from_vision: bool) -> dict[int, torch.Tensor]:
    """Hidden states by index 0..N (N = after the final norm) from the embeddings ``x``. Below
    ``root`` nothing keeps a graph; at ``root`` the state becomes a leaf that requires grad."""
    states: dict[int, torch.Tensor] = {}
    for t in range(N_LAYERS + 1):
        if t == root and not grad_from_vision:
            x = x.detach().requires_grad_(True)
        states[t] = x
        if t == N_LAYERS:
            break
        with torch.set_grad_enabled(grad_from_vision or (root is not None and t >= root)):
            x = model.blocks[t](x, mask)
            if t == N_LAYERS - 1:
                x = model.norm(x)
    return states


def sequence(n_vis: int, question: str) -> list[int]:
    """Token ids of one prompt: ``[bos] [img_start] n_vis x [img] [img_end] question words [ask]``."""
    return [BOS, IMG_START] + [IMG] * n_vis + [IMG_END] + word_ids(question) + [ASK]


def left_pad(rows: list[list[int]]) -> torch.Tensor:
    """``(b, s)`` the rows left-padded with ``PAD`` (the answer position is then the last one)."""
    return torch.tensor([[PAD] * (max(map(len, rows)) - len(r)) + r for r in rows])
