"""The planted model: a pre-norm decoder (RMSNorm, softmax attention, gated MLP) whose weights are
written by hand, so that what it reads is known (docs/planted.md).

Residual stream (``d = D`` named dimensions, :data:`DIM`). Every token carries a constant
``bias`` of :data:`MASSIVE` (a "massive activation" as real LLMs have), which keeps every token's
RMS within a few per cent of ``C0 = MASSIVE / sqrt(D)``: the weights below read the normalised
stream at unit scale by multiplying with ``C0``.

Blocks (0-based):

* block 0, **names**: the answer token ``<ask>`` averages the word vectors (colour, shape) of the
  reference name into ``qa`` and of the target name into ``qb``; with ``reference="text"`` a third
  head copies A's position from the ``<ref-pos>`` token, negated, into ``dir``.
* the **read** block (``read_block``): head A attends from ``<ask>`` to the cells of the object
  named by ``qa`` (score ``log(1 + f / eps)`` for the named colour and shape, 0 for an object that
  shares one of the two words, negative for other objects: weights proportional to the object's
  pixel share, so the output is the object's pixel centroid) and writes ``-position``; head B does the same for
  ``qb`` and writes ``+position``: ``dir = centroid(B) - centroid(A)``. Positions are relative to the
  image centre. In the read heads ``<ask>`` also scores :data:`ASK_SINK_SCORE` on ``<bos>`` (value 0):
  with no named object in the image both heads read the sink, ``dir`` is 0, and nothing depends on
  where a cell lies. A decoy head (option) attends to the top-left cells and its output projection is zero.
* every other block, **processing**: ``<ask>`` adds ``mix`` times the mean RGB and object features of
  all tokens (the other tokens' attention sits on ``<bos>`` and adds nothing), and each token's gated
  MLP adds ``mix`` times its own RGB and object features. The answer barely depends on them
  (``mix=0``: they are identities).

Final RMSNorm, then the head reads ``dir``: logits ``scale * (-dx, dx, -dy, dy)`` = left, right,
above, below (image y grows downwards), plus :data:`TIE_LOGIT` on "left" from the constant ``bias``
dimension (the answer when nothing is seen, the same wherever anything lies). Tokens other than
``<ask>`` attend to ``<bos>`` in the names and read blocks (an attention sink), so nothing but
``<ask>`` gathers there; a head that reads nothing puts every query, ``<ask>`` too, on ``<bos>``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .vision import COLOURS, N_FEATURES, N_OBJECTS, SHAPES

#: named dimensions of the residual stream (a slice or an index).
DIM: dict[str, slice | int] = {
    "bias": 0, "rgb": slice(1, 4), "obj": slice(4, 4 + N_OBJECTS), "pos": slice(16, 18), "vis": 18, "bos": 19,
    "refw": 20, "tgtw": 21, "refpos": 22, "ask": 23, "word": slice(24, 31), "qa": slice(31, 38), "qb": slice(38, 45),
    "dir": slice(45, 47), "off": slice(47, 49),
}
D = 50
HEADS, HEAD_DIM, MLP_DIM = 3, 16, 16  # MLP units: 3 RGB + 12 object channels
#: the constant of the ``bias`` dimension, and the nominal RMS of every token.
MASSIVE = 64.0
C0 = MASSIVE / math.sqrt(D)
#: object features are log(1 + f / EPS_OBJECT) / ALPHA in [0, 1]; the read's score is ALPHA times that.
EPS_OBJECT = 1e-6
ALPHA = math.log1p(1.0 / EPS_OBJECT)
#: attention scores of the names block (names over the sink) and of the sink for everyone else.
NAME_SCORE, SINK_SCORE, DECOY_SCORE = 30.0, 15.0, 10.0
#: the read heads' score of ``<ask>`` on the ``<bos>`` sink: above a cell without the named object (0),
#: below a cell the object covers (log(1 + f / EPS_OBJECT), 13.8 at f = 1); the sink's value is 0.
ASK_SINK_SCORE = 7.0
#: the score on the sink of a head that reads nothing: exp(-UNUSED_SINK) is 0 in float32, so it attends to
#: nothing else (not even, by a round-off, more to the first tokens than to the last).
UNUSED_SINK = 120.0
#: the logit by which "left" wins when no object is seen (all other logits are then 0).
TIE_LOGIT = 1e-3
#: the gate's constant pre-activation in processing blocks.
GATE = 4.0

VOCAB: tuple[str, ...] = ("<pad>", "<bos>", "<sep>", "<ask>", "<ref-pos>", "<unk>", *COLOURS, *SHAPES)
TOKEN = {t: i for i, t in enumerate(VOCAB)}
#: segments: 0 none, 1 the reference name, 2 the target name.
SEG_NONE, SEG_REF, SEG_TGT = 0, 1, 2


def word_ids(name: str) -> list[int]:
    """Token ids of a name's words (colour and shape words known, anything else ``<unk>``)."""
    return [TOKEN.get(w, TOKEN["<unk>"]) for w in name.lower().split()]


def object_features(fractions: torch.Tensor) -> torch.Tensor:
    """``(..., 12)`` pixel shares f -> ``log(1 + f / EPS_OBJECT) / ALPHA`` (0 at 0, 1 at 1)."""
    return torch.log1p(fractions / EPS_OBJECT) / ALPHA


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class Block(nn.Module):
    """Pre-norm block: causal multi-head softmax attention, then a gated (SiLU) MLP."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role
        self.norm1, self.norm2 = RMSNorm(D), RMSNorm(D)
        self.q, self.k, self.v = (nn.Linear(D, HEADS * HEAD_DIM, bias=False) for _ in range(3))
        self.o = nn.Linear(HEADS * HEAD_DIM, D, bias=False)
        self.gate, self.up = nn.Linear(D, MLP_DIM, bias=False), nn.Linear(D, MLP_DIM, bias=False)
        self.down = nn.Linear(MLP_DIM, D, bias=False)
        for p in self.parameters():
            if p.dim() == 2:  # every matrix starts at zero; the builders below write what the block does
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (b, s, D); ``bias`` (b, 1, s, s) additive mask (:func:`attention_bias`). Returns (x, attn (b, h, s, s))."""
        b, s, _ = x.shape
        a = self.norm1(x)
        q, k, v = (f(a).view(b, s, HEADS, HEAD_DIM).transpose(1, 2) for f in (self.q, self.k, self.v))
        attn = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(HEAD_DIM) + bias, dim=-1)
        x = x + self.o((attn @ v).transpose(1, 2).reshape(b, s, HEADS * HEAD_DIM))
        m = self.norm2(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m)), attn


def attention_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(b, 1, s, s)`` bool (True = may attend) -> additive bias: 0 where allowed, a huge negative
    number elsewhere (a padding row, which may attend to nothing, gets a finite uniform row that no
    real token reads)."""
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, -1e30 if dtype == torch.float64 else -1e9)


def _index(name: str, offset: int = 0) -> int:
    d = DIM[name]
    return (d.start if isinstance(d, slice) else d) + offset


def _sink(block: Block, head: int, row: int, ask: float = 0.0, score: float = SINK_SCORE) -> None:
    """Row ``row`` of ``head``: every query but ``<ask>`` scores ``score`` on ``<bos>``, ``<ask>`` ``ask``."""
    r, scale = head * HEAD_DIM + row, math.sqrt(HEAD_DIM)
    with torch.no_grad():
        block.q.weight[r, _index("bias")] = score * C0 / MASSIVE * scale
        block.q.weight[r, _index("ask")] = (ask - score) * C0 * scale
        block.k.weight[r, _index("bos")] = C0


def names_block(reference: str) -> Block:
    """Block 0: ``<ask>`` gathers the names' word vectors (and, ``reference="text"``, -A's position)."""
    blk, scale = Block("names"), math.sqrt(HEAD_DIM)
    gathers = [("refw", "word", "qa", 1.0), ("tgtw", "word", "qb", 1.0)]
    if reference == "text":
        gathers.append(("refpos", "pos", "dir", -1.0))
    with torch.no_grad():
        for h, (key, src, dst, sign) in enumerate(gathers):
            r0 = h * HEAD_DIM
            blk.q.weight[r0, _index("ask")] = NAME_SCORE * C0 * scale
            blk.k.weight[r0, _index(key)] = C0
            _sink(blk, h, 1)
            width = DIM[src].stop - DIM[src].start
            for j in range(width):
                blk.v.weight[r0 + j, _index(src, j)] = C0
                blk.o.weight[_index(dst, j), r0 + j] = sign
        for h in range(len(gathers), HEADS):  # an unused head: every query, <ask> too, on the sink
            _sink(blk, h, 0, ask=UNUSED_SINK, score=UNUSED_SINK)
    return blk


def read_block(reference: str, decoy: bool) -> Block:
    """The read: head A (``qa``) writes -centroid(A), head B (``qb``) +centroid(B) into ``dir``."""
    blk, scale = Block("read"), math.sqrt(HEAD_DIM)
    heads = [("qb", 1.0)] if reference == "text" else [("qa", -1.0), ("qb", 1.0)]
    with torch.no_grad():
        for h, (query, sign) in enumerate(heads):
            r0 = h * HEAD_DIM
            words = DIM[query].stop - DIM[query].start
            for c in range(len(COLOURS)):
                for s in range(len(SHAPES)):
                    # the object (c, s) scores ALPHA * (2 (q_c + q_s) - sum q) * feature: ALPHA * feature for
                    # "<c> <s>", 0 for an object that shares one word (no boost), -ALPHA * feature for the others
                    r = r0 + c * len(SHAPES) + s
                    blk.q.weight[r, DIM[query]] = -ALPHA * C0 * scale * torch.ones(words)
                    blk.q.weight[r, _index(query, c)] += 2 * ALPHA * C0 * scale
                    blk.q.weight[r, _index(query, len(COLOURS) + s)] += 2 * ALPHA * C0 * scale
                    blk.k.weight[r, _index("obj", c * len(SHAPES) + s)] = C0
            _sink(blk, h, N_OBJECTS, ask=ASK_SINK_SCORE)
            for j in range(2):  # the value: the cell's centre plus its object pixels' offset from it
                blk.v.weight[r0 + j, _index("pos", j)] = C0
                blk.v.weight[r0 + j, _index("off", j)] = C0
                blk.o.weight[_index("dir", j), r0 + j] = sign
        if decoy:  # attends to the top-left cells; its output projection stays zero
            r0 = len(heads) * HEAD_DIM
            blk.q.weight[r0, _index("ask")] = DECOY_SCORE * C0 * scale
            blk.k.weight[r0, _index("vis")] = 2 * C0
            blk.k.weight[r0, _index("pos", 0)] = -C0
            blk.k.weight[r0, _index("pos", 1)] = -C0
            _sink(blk, len(heads), 1)
        for h in range(len(heads) + decoy, HEADS):  # an unused head: every query, <ask> too, on the sink
            _sink(blk, h, 0, ask=UNUSED_SINK, score=UNUSED_SINK)
    return blk


def processing_block(mix: float) -> Block:
    """The answer token adds ``mix`` x the mean RGB and object features of all tokens (head 0, uniform);
    every other token attends to the ``<bos>`` sink (value 0) only. Each token's gated MLP adds
    ``mix`` x its own RGB and object features. (Were every token to average the tokens before it, the
    first cells in raster order would be averaged into every later token whatever the image shows:
    a position prior for attention rollout.)"""
    blk = Block("processing")
    rgb, obj = _index("rgb"), _index("obj")
    with torch.no_grad():
        for j in range(3):
            blk.v.weight[j, rgb + j] = C0
            blk.o.weight[rgb + j, j] = mix
            blk.gate.weight[j, _index("bias")] = GATE * C0 / MASSIVE
            blk.up.weight[j, rgb + j] = C0
            blk.down.weight[rgb + j, j] = mix / F.silu(torch.tensor(GATE)).item()
        for j in range(N_OBJECTS):
            blk.v.weight[3 + j, obj + j] = C0
            blk.o.weight[obj + j, 3 + j] = mix
            blk.gate.weight[3 + j, _index("bias")] = GATE * C0 / MASSIVE
            blk.up.weight[3 + j, obj + j] = C0
            blk.down.weight[obj + j, 3 + j] = mix / F.silu(torch.tensor(GATE)).item()
        _sink(blk, 0, HEAD_DIM - 1, ask=0.0, score=UNUSED_SINK)  # <ask> scores 0 everywhere: uniform
        for h in range(1, HEADS):
            _sink(blk, h, 0, ask=UNUSED_SINK, score=UNUSED_SINK)
    return blk


class PlantedVLM(nn.Module):
    """Embeddings, ``layers`` blocks (0: names, ``read``: the read, the rest processing), final norm, head."""

    def __init__(self, *, layers: int, read: int, mix: float, decoy: bool, reference: str, logit_scale: float):
        super().__init__()
        if not 1 <= read < layers:
            raise ValueError(f"the read block must be one of 1..{layers - 1} (block 0 reads the names), got {read}")
        self.read = read
        self.embed = nn.Embedding(len(VOCAB), D)
        self.segment = nn.Embedding(3, D)
        blocks = [names_block(reference)]
        blocks += [read_block(reference, decoy) if t == read else processing_block(mix) for t in range(1, layers)]
        self.blocks = nn.ModuleList(blocks)
        self.norm = RMSNorm(D)
        self.head = nn.Linear(D, 4, bias=False)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.segment.weight.zero_()
            self.head.weight.zero_()
            for tok, i in TOKEN.items():
                if tok != "<pad>":
                    self.embed.weight[i, _index("bias")] = MASSIVE
            for flag, tok in (("bos", "<bos>"), ("ask", "<ask>"), ("refpos", "<ref-pos>")):
                self.embed.weight[TOKEN[tok], _index(flag)] = 1.0
            for c, colour in enumerate(COLOURS):
                self.embed.weight[TOKEN[colour], _index("word", c)] = 1.0
            for s, shape in enumerate(SHAPES):
                self.embed.weight[TOKEN[shape], _index("word", len(COLOURS) + s)] = 1.0
            self.segment.weight[SEG_REF, _index("refw")] = 1.0
            self.segment.weight[SEG_TGT, _index("tgtw")] = 1.0
            dx, dy = _index("dir", 0), _index("dir", 1)
            for row, (col, sign) in enumerate(((dx, -1), (dx, 1), (dy, -1), (dy, 1))):  # left right above below
                self.head.weight[row, col] = sign * logit_scale * C0
            # a constant tie-break towards "left": with no object (dir = 0) the answer is "left" by TIE_LOGIT,
            # read from the bias dimension only, so it depends on no cell
            self.head.weight[0, _index("bias")] = TIE_LOGIT * C0 / MASSIVE
        self.requires_grad_(False)

    def text_embeddings(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """``(s,)`` token ids and segments -> ``(s, D)``."""
        return self.embed(ids) + self.segment(segments)

    def vision_embeddings(self, activations: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(n, 17)`` cell activations (RGB, pixel shares, offset) and ``(n, 2)`` cell centres (over the
        image's longer side) -> ``(n, D)`` tokens."""
        n, dtype = activations.shape[0], activations.dtype
        base = torch.zeros(n, D, dtype=dtype)
        base[:, _index("bias")] = MASSIVE
        base[:, _index("vis")] = 1.0
        base[:, DIM["pos"]] = positions.to(dtype)
        objects = slice(3, 3 + N_OBJECTS)
        feats = torch.cat([activations[:, :3], object_features(activations[:, objects]), activations[:, objects.stop:]], -1)
        proj = torch.zeros(N_FEATURES, D, dtype=dtype)
        for k, name in enumerate(("rgb", "obj", "off")):
            src = (slice(0, 3), objects, slice(objects.stop, N_FEATURES))[k]
            proj[torch.arange(src.start, src.stop), torch.arange(_index(name), _index(name) + src.stop - src.start)] = 1.0
        return base + feats @ proj

    def logits(self, x: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """``(b, s, D)`` last hidden state (before the final norm), ``(b,)`` answer positions -> ``(b, 4)``."""
        return self.head(self.norm(x)[torch.arange(x.shape[0]), answer])

    def run(self, x: torch.Tensor, bias: torch.Tensor, answer: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Blocks ``start..`` on ``x`` (b, s, D), then the head: ``(b, 4)`` (no hooks, no bookkeeping)."""
        for block in self.blocks[start:]:
            x, _ = block(x, bias=bias)
        return self.logits(x, answer)
