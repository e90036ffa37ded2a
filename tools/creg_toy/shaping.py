"""Shaping where the toy decides: where its answer reads the image, and that every block matters.

Two auxiliary losses for :mod:`tools.creg_toy.training`, and the probes that check what they aim at.

* **Read window.** The text after the image (the question and the answer position) may attend to
  vision tokens only in the decoder blocks ``read_window = (first, last)``; the loss is the mean
  attention mass that those text queries put on vision keys in every *other* block (eager
  attention, averaged over heads, then over queries or, ``read_reduce="max"``, the query that
  reads most: a mean lets a few positions keep a read that matters). A stock ``Qwen2VLForConditionalGeneration`` then
  reads the image where the window says, with no mask of its own at inference.
* **Every block matters.** Each step one block ``j`` (each in turn, then always the one whose
  knockout has cost least lately: ``training.knockout_block``) is knocked out
  (its output replaced by its input: the residual stream skips it) on part of the batch, and the
  loss asks that this costs at least ``margin`` nats of cross-entropy: ``relu(margin - (CE_ko -
  CE))``. Identity-initialised blocks otherwise stay inert through training.

Probes (:func:`block_effects`): per block, the mean drop of log p(gt) when the block is knocked
out, and the mean text-to-vision attention mass there (``python -m tools.creg_toy probe`` adds creg's own
:func:`creg.explain.layers.layer_effects`: the text->vision knock-out and the blank patch).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F


def decoder_layers(model) -> Sequence[torch.nn.Module]:
    return model.model.language_model.layers


@contextmanager
def knocked_out(model, block: int) -> Iterator[None]:
    """Block ``block`` of the decoder passes its input through unchanged."""
    layer = decoder_layers(model)[block]
    h = layer.register_forward_hook(lambda mod, args, kwargs, out: args[0] if args else kwargs["hidden_states"],
                                    with_kwargs=True, prepend=True)
    try:
        yield
    finally:
        h.remove()


@contextmanager
def attention_weights(model) -> Iterator[list]:
    """Collect every decoder block's attention weights ``(b, heads, q, k)`` (switches the text
    model to eager attention for the duration)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    got: list = [None] * len(decoder_layers(model))
    hooks = [layer.self_attn.register_forward_hook(lambda mod, args, out, i=i: got.__setitem__(i, out[1]))
             for i, layer in enumerate(decoder_layers(model))]
    try:
        yield got
    finally:
        for h in hooks:
            h.remove()
        model.set_attn_implementation(previous)


def text_to_vision_mass(weights: torch.Tensor, input_ids: torch.Tensor, image_token_id: int,
                        reduce: str = "mean") -> torch.Tensor:
    """``(b,)``: the attention mass on vision keys of the text queries after the image, averaged
    over heads, then the mean (``reduce="mean"``) or the largest (``"max"``) over those queries.

    ``weights``: ``(b, heads, s, s)``; ``input_ids``: ``(b, s)``."""
    vision = input_ids == image_token_id
    pos = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = torch.where(vision, pos, -1).amax(dim=1, keepdim=True)
    text_after = pos.unsqueeze(0) > last                                    # (b, s)
    mass = (weights * vision[:, None, None, :].to(weights.dtype)).sum(-1)   # (b, heads, q)
    if reduce == "max":
        return mass.mean(1).masked_fill(~text_after, 0.0).amax(-1)
    q = text_after[:, None, :].to(mass.dtype)
    return (mass * q).sum((1, 2)) / (q.sum((1, 2)) * weights.shape[1]).clamp_min(1)


def read_penalty(weights: Sequence[torch.Tensor], input_ids: torch.Tensor, image_token_id: int,
                 window: tuple[int, int], reduce: str = "mean") -> torch.Tensor:
    """Mean text-to-vision attention mass (:func:`text_to_vision_mass`) over the blocks outside
    ``window`` (inclusive)."""
    lo, hi = window
    outside = [w for i, w in enumerate(weights) if not lo <= i <= hi]
    if not outside:
        return weights[0].new_zeros(())
    return torch.stack([text_to_vision_mass(w, input_ids, image_token_id, reduce).mean() for w in outside]).mean()


def knockout_loss(logits: Callable[[dict], torch.Tensor], model, batch: dict, y: torch.Tensor, block: int,
                  ce_full: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``relu(margin - (CE with block knocked out - CE))`` on ``batch``, and the gap itself;
    ``logits(batch)``: the ``(b, 4)`` option logits the loss is taken on."""
    with knocked_out(model, block):
        z = logits(batch)
    gap = F.cross_entropy(z, y) - ce_full
    return F.relu(margin - gap), gap.detach()


@torch.no_grad()
def block_effects(adapter, batcher, samples) -> list[dict[str, float]]:
    """Per decoder block: the mean drop of log p(gt) when the block is knocked out (``knockout_drop``,
    > 0: it matters) and the mean text-to-vision attention mass there (``read_mass``). The
    text->vision knock-out and the blank patch of a block's input are
    :func:`creg.explain.layers.layer_effects`'."""
    model = adapter.model.eval()
    option_ids = list(adapter.option_token_ids)
    batch = batcher(samples)
    y = torch.tensor([s.option for s in samples])

    def logp() -> torch.Tensor:
        z = model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1, option_ids].float()
        return z.log_softmax(-1).gather(1, y[:, None]).squeeze(1)

    with attention_weights(model) as att:
        base = logp()
        mass = [float(text_to_vision_mass(w, batch["input_ids"], adapter.inputs.image_token_id).mean()) for w in att]
    rows = []
    for i in range(len(decoder_layers(model))):
        with knocked_out(model, i):
            rows.append({"block": i, "knockout_drop": float((base - logp()).mean()), "read_mass": mass[i]})
    return rows
