#!/usr/bin/env python
"""Why layer -2 is round-off: Grad x Act at each of CREG's layers as the RMSNorm eps changes.

A vision token reaches the answer from the input of the last block only through RMSNorm(h_j)
-> keys and values; RMSNorm ignores the scale of h_j up to eps, so h_j . dz/dh_j there is
proportional to eps (docs/paper-to-code.md). For each eps (every RMSNorm of the language model
set to it) this prints, over the vision tokens of ``--n`` synthetic scenes (target z_gt, as
gradxact and IG; sum over samples):

* max_j |sum_d g h| at layer -2 and sum_j sum_d |g h| there;
* the cancellation ratio sum_j |sum_d g h| / sum_j sum_d |g h| at layers -2..-5, and how many of
  the samples the record flag ``roundoff_layer_L`` fires for (ratio below creg's threshold,
  ``creg.sources.roundoff.roundoff_threshold``, which follows eps).

Examples (the docs/paper-to-code.md tables)::

    OMP_NUM_THREADS=1 python scripts/roundoff_eps.py --adapter qwen2vl-toy --n 8
    OMP_NUM_THREADS=1 python scripts/roundoff_eps.py --deep --hidden 256 --layers 28 --n 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

LAYERS = (-2, -3, -4, -5)


def add_model_arguments(ap: argparse.ArgumentParser) -> None:
    """The options that say which model :func:`load` builds, and how many scenes of which size."""
    ap.add_argument("--adapter", default="qwen2vl-toy", help="a registry preset")
    ap.add_argument("--deep", action="store_true", help="a random Qwen2-VL of --layers x --hidden instead (built here)")
    ap.add_argument("--model", help="with --deep: an existing checkpoint dir")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--size", type=int, default=224, help="scene width and height (px): 224 = 64 vision tokens")


def load(args):
    if args.deep:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_throughput import load_deep

        adapter, _ = load_deep(args.hidden, args.layers, args.model, heads=None, kv_heads=2)
        return adapter, f"random Qwen2-VL, {args.layers} layers, hidden {args.hidden}"
    from creg.plugins.manager import get_plugins
    from creg.config.presets import load_registry

    preset = load_registry()[args.adapter]
    return get_plugins().load("adapter", preset.adapter).load(preset.adapter_config(device="cpu")), args.adapter


def set_eps(model: torch.nn.Module, eps: float) -> None:
    """Every RMSNorm of the language model (blocks and final norm) to ``eps``."""
    for name, m in model.named_modules():
        if "visual" not in name and hasattr(m, "variance_epsilon"):
            m.variance_epsilon = eps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--eps", default="default,1e-5,1e-6,0", help="eps values ('default': the model's own)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from creg.explain.context import ExplainContext
    from creg.plugins.adapter import ForwardRequest
    from creg.sources.roundoff import norm_eps, sample_diagnostics
    from creg.sources.token_grid import vision_tokens
    from creg_synthetic.scenes import scene_sample

    adapter, label = load(args)
    own = adapter.decoder.layers[-1].input_layernorm.variance_epsilon
    samples = [scene_sample(0, i, (args.size, args.size)) for i in range(args.n)]
    print(f"{label}: {adapter.num_layers} decoder layers, model eps {own:g}; {args.n} synthetic scenes "
          f"{args.size}x{args.size}, target z_gt, 1 thread\n")
    print("| eps | max_j abs(g.h) at -2 | sum abs(g h) at -2 | " + " | ".join(f"ratio {l}" for l in LAYERS)
          + " | flagged (-2/-3/-4/-5) |")
    print("|---|---:|---:|" + "---:|" * len(LAYERS) + "---|")
    for text in args.eps.split(","):
        eps = own if text == "default" else float(text)
        set_eps(adapter.model, eps)
        top = total = 0.0
        signed = dict.fromkeys(LAYERS, 0.0)
        absolute = dict.fromkeys(LAYERS, 0.0)
        flagged = dict.fromkeys(LAYERS, 0)
        layer_eps = {l: norm_eps(adapter, l) for l in LAYERS}
        for s in samples:
            ctx = ExplainContext([s], adapter, ForwardRequest(layers=LAYERS))
            grads = ctx.gradients("gt", LAYERS)
            layout = ctx.layout(0)
            ratio, threshold = sample_diagnostics(grads, ctx.output.hidden, layer_eps, 0, layout)
            for l in LAYERS:
                prod = vision_tokens(grads[l][0].float() * ctx.output.hidden[l][0].detach().float(), layout)
                signed[l] += float(prod.sum(-1).abs().sum())
                absolute[l] += float(prod.abs().sum())
                flagged[l] += ratio[l] < threshold[l]
                if l == -2:
                    top = max(top, float(prod.sum(-1).abs().max()))
                    total += float(prod.abs().sum())
        ratios = " | ".join(f"{signed[l] / absolute[l]:.2g}" for l in LAYERS)
        flags = "/".join(str(flagged[l]) for l in LAYERS)
        print(f"| {text if text != 'default' else f'{own:g} (model)'} | {top:.2g} | {total:.2g} | {ratios} | {flags} of {args.n} |")
    set_eps(adapter.model, own)


if __name__ == "__main__":
    main()
