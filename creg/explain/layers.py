"""Which decoder blocks read the image, measured causally, and the CREG layers that follow.

For every decoder block b and every sample (one at a time, no gradients):

* **knock-out** -- block b's text->vision attention is removed: in that block no token outside the
  image may attend to a vision token (the mask the block receives, :attr:`ModelParts.mask_kwarg`,
  is closed for those query/key pairs);
* **blank patch** -- the vision tokens' hidden states at block b's *input* are replaced by those of
  the same prompt on the sample's blank image (:meth:`creg.plugins.benchmark.Benchmark.blank_sample`: the
  objects removed), everything else unchanged.

The answer's change is measured as the mean drop of log p(gt) (the log-softmax of the four option
logits at the ground-truth class) and of the logit gap z_gt - max_{c != gt} z_c, original minus
intervened (positive: the block mattered), and the accuracy after the intervention.

Recommendation (:func:`recommend_layers`): a block *reads* the image when knocking out its
text->vision attention costs at least half of the largest knock-out drop (and that drop is at least
:data:`MIN_DROP` nats). Let r be the last block that reads. Eq. 2 at block r's own input is blind to
r's read (the pre-norm block sees each vision token through RMSNorm, which removes its scale, so
sum_d g h ~ 0 there), and hidden states above r no longer carry the evidence to the answer; so CREG's
layers are the inputs of the four blocks below r, hidden-state indices r-1 .. r-4 (those >= 0), as
negative indices. When r = 0 only the embedding output precedes it: [-(N+1)], with a note. When no
block's read matters, there is no recommendation (the paper's default stays in use).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from creg.core.sample import Sample
from creg.explain.model_parts import AnalysisError, model_parts
from creg.plugins.adapter import ForwardRequest, ModelParts, VLMAdapter

#: a knock-out must cost at least this many nats of log p(gt) (mean) for any block to count as reading.
MIN_DROP = 0.05
#: a block reads the image when its knock-out costs at least this share of the largest knock-out drop.
READ_SHARE = 0.5
#: how many hidden states below the last reading block CREG uses (the paper uses four layers).
N_LAYERS = 4


def answer_scores(logits: torch.Tensor, gt: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(b, 4)`` logits, ``(b,)`` gt -> (log p(gt), logit gap z_gt - max other, correct), each ``(b,)``."""
    z = logits.detach().float().cpu()
    gt = gt.cpu()
    logp = torch.log_softmax(z, dim=-1).gather(1, gt[:, None])[:, 0]
    others = z.masked_fill(torch.nn.functional.one_hot(gt, z.shape[1]).bool(), float("-inf")).amax(dim=1)
    gap = z.gather(1, gt[:, None])[:, 0] - others
    return logp.numpy(), gap.numpy(), (z.argmax(dim=1) == gt).numpy()


def _hidden_arg(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args, kwargs, hidden):
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


@contextmanager
def knocked_out(block: torch.nn.Module, mask_kwarg: str, vision: torch.Tensor) -> Iterator[None]:
    """Inside: ``block`` lets no non-vision query attend to a vision key. ``vision``: ``(b, seq)`` bool."""

    def pre(module, args, kwargs):
        hidden = _hidden_arg(args, kwargs)
        b, s = hidden.shape[:2]
        vis = vision.to(hidden.device)
        cut = ((~vis)[:, :, None] & vis[:, None, :])[:, None]  # b 1 q k
        mask = kwargs.get(mask_kwarg)
        if mask is None:
            mask = torch.ones(s, s, dtype=torch.bool, device=hidden.device).tril()[None, None].expand(b, 1, s, s)
        if mask.dtype == torch.bool:
            mask = mask & ~cut
        else:
            mask = mask.masked_fill(cut, torch.finfo(mask.dtype).min)
        return args, {**kwargs, mask_kwarg: mask}

    handle = block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def captured_inputs(blocks: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Inside: each block's input hidden state is recorded (detached) into the yielded list."""
    seen: list[torch.Tensor | None] = [None] * len(blocks)
    handles = []
    for i, block in enumerate(blocks):
        def pre(module, args, kwargs, i=i):
            seen[i] = _hidden_arg(args, kwargs).detach().clone()
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patched_input(block: torch.nn.Module, positions: torch.Tensor, values: torch.Tensor) -> Iterator[None]:
    """Inside: ``block``'s input at sequence ``positions`` (``(n,)``, batch row 0) is ``values`` (``(n, d)``)."""

    def pre(module, args, kwargs):
        hidden = _hidden_arg(args, kwargs).clone()
        hidden[0, positions.to(hidden.device)] = values.to(hidden.device, hidden.dtype)
        return _with_hidden(args, kwargs, hidden)

    handle = block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True)
    try:
        yield
    finally:
        handle.remove()


def _vision_positions(layout) -> torch.Tensor:
    idx = layout.token_index.long().cpu()
    if layout.non_spatial_index is not None:
        idx = torch.cat([idx, layout.non_spatial_index.long().cpu()])
    return idx


def layer_effects(adapter: VLMAdapter, samples: Sequence[Sample], blank: Callable[[Sample], Sample], *,
                  log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Per block: mean drop of log p(gt) and of the logit gap under knock-out and blank patching (module docstring)."""
    parts: ModelParts = model_parts(adapter, "creg analyze layers")
    if parts.mask_kwarg is None:
        raise AnalysisError(f"adapter {type(adapter).__name__} declares no mask keyword for its decoder blocks "
                            "(ModelParts.mask_kwarg; e.g. a flash-attention kernel, which takes no dense mask: load "
                            "it with --adapter-opt attn_implementation=sdpa): the text->vision knock-out cannot run")
    n_blocks = len(parts.blocks)
    base_lp, base_gap, base_ok = [], [], []
    ko = {"logp": [[] for _ in range(n_blocks)], "gap": [[] for _ in range(n_blocks)], "ok": [[] for _ in range(n_blocks)]}
    pa = {"logp": [[] for _ in range(n_blocks)], "gap": [[] for _ in range(n_blocks)], "ok": [[] for _ in range(n_blocks)]}
    with torch.no_grad():
        for j, s in enumerate(samples):
            gt = torch.tensor([s.option])
            out = adapter.forward([s], ForwardRequest())
            lp, gap, ok = answer_scores(out.class_logits, gt)
            base_lp.append(lp[0]), base_gap.append(gap[0]), base_ok.append(ok[0])
            pos = _vision_positions(out.vision[0])
            seq_vision = torch.zeros(1, int(out.answer_index.max()) + 1, dtype=torch.bool)
            seq_vision[0, pos] = True
            b = blank(s)
            with captured_inputs(parts.blocks) as blank_inputs:
                bout = adapter.forward([b], ForwardRequest())
            bpos = _vision_positions(bout.vision[0])
            if bpos.numel() != pos.numel():
                raise AnalysisError(f"sample {s.id!r}: its blank image gives {bpos.numel()} vision tokens, the image "
                                    f"{pos.numel()}: the hidden states cannot be patched")
            for k, block in enumerate(parts.blocks):
                with knocked_out(block, parts.mask_kwarg, seq_vision):
                    r = answer_scores(adapter.forward([s], ForwardRequest()).class_logits, gt)
                for key, v in zip(("logp", "gap", "ok"), r):
                    ko[key][k].append(v[0])
                values = blank_inputs[k][0, bpos.to(blank_inputs[k].device)]
                with patched_input(block, pos, values):
                    r = answer_scores(adapter.forward([s], ForwardRequest()).class_logits, gt)
                for key, v in zip(("logp", "gap", "ok"), r):
                    pa[key][k].append(v[0])
            log(f"layers: sample {j + 1}/{len(samples)}")
    base_lp, base_gap = np.array(base_lp), np.array(base_gap)
    rows = []
    for k in range(n_blocks):
        rows.append({
            "block": k, "input_layer": k - (n_blocks + 1),
            "knockout_logp_drop": float(np.mean(base_lp - np.array(ko["logp"][k]))),
            "knockout_gap_drop": float(np.mean(base_gap - np.array(ko["gap"][k]))),
            "knockout_accuracy": float(np.mean(ko["ok"][k])),
            "patch_logp_drop": float(np.mean(base_lp - np.array(pa["logp"][k]))),
            "patch_gap_drop": float(np.mean(base_gap - np.array(pa["gap"][k]))),
            "patch_accuracy": float(np.mean(pa["ok"][k])),
        })
    result = {"n": len(samples), "num_layers": n_blocks, "accuracy": float(np.mean(base_ok)),
              "logp": float(base_lp.mean()), "blocks": rows}
    result["recommendation"] = recommend_layers(rows, n_blocks)
    return result


def recommend_layers(rows: Sequence[dict[str, Any]], n_blocks: int) -> dict[str, Any]:
    """The rule of the module docstring: ``{"layers": [...] | None, "read_blocks", "last_read", "note"}``."""
    drops = np.array([r["knockout_logp_drop"] for r in rows], dtype=np.float64)
    top = float(drops.max()) if drops.size else 0.0
    if top < MIN_DROP:
        return {"layers": None, "read_blocks": [], "last_read": None,
                "note": f"no block's text->vision knock-out costs {MIN_DROP} nats of log p(gt): no recommendation "
                        "(the paper's default layers stay in use)"}
    reads = [int(i) for i in np.flatnonzero(drops >= READ_SHARE * top)]
    r = max(reads)
    below = [t for t in range(r - 1, r - 1 - N_LAYERS, -1) if t >= 0]
    if not below:
        return {"layers": [-(n_blocks + 1)], "read_blocks": reads, "last_read": r,
                "note": "the image is read in block 0: only the embedding output precedes it"}
    return {"layers": [t - (n_blocks + 1) for t in below], "read_blocks": reads, "last_read": r,
            "note": f"the last block that reads the image is block {r} (input layer {r - (n_blocks + 1)}); "
                    f"CREG uses the inputs of the {len(below)} blocks below it"}


def layers_markdown(result: dict[str, Any], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += [f"Mean change of the answer per decoder block (n={result['n']} samples; accuracy {result['accuracy']:.3f}, "
              f"mean log p(gt) {result['logp']:+.3f}): drop = original − intervened (> 0: the block matters).", "",
              "| block | input layer | knock-out Δlog p(gt) | knock-out Δgap | knock-out acc | blank-patch Δlog p(gt) | "
              "blank-patch Δgap | blank-patch acc |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["blocks"]:
        lines.append(f"| {r['block']} | {r['input_layer']} | {r['knockout_logp_drop']:+.3f} | {r['knockout_gap_drop']:+.3f} | "
                     f"{r['knockout_accuracy']:.3f} | {r['patch_logp_drop']:+.3f} | {r['patch_gap_drop']:+.3f} | "
                     f"{r['patch_accuracy']:.3f} |")
    rec = result["recommendation"]
    lines.append("")
    if rec["layers"] is None:
        lines.append(f"Recommendation: none -- {rec['note']}.")
    else:
        lines.append(f"Blocks that read the image (knock-out ≥ {READ_SHARE:.0%} of the largest): "
                     f"{', '.join(map(str, rec['read_blocks']))}; {rec['note']}.")
        lines.append(f"Recommended CREG layers: {','.join(map(str, rec['layers']))}  "
                     f"(`--source-opt creg.layers={','.join(map(str, rec['layers']))}`, or `creg.layers=auto`)")
    return "\n".join(lines) + "\n"
