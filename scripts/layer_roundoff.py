#!/usr/bin/env python
"""How much of CREG's layer -2 is signal: the Grad x Act cancellation ratio per layer.

At hidden index -2 (the input of the last decoder block) a vision token reaches the answer only
through the last block's keys and values of norm(h_j); a scale-invariant norm makes
g_j . h_j = sum_d g_jd h_jd cancel up to the norm's eps (docs/paper-to-code.md). For each layer
of CREG's default set this prints, over the vision tokens of ``--n`` synthetic scenes (CREG's
target, tau = z_pred - z_neg):

* ratio = sum_j |sum_d g h| / sum_j sum_d |g h|  (1 = no cancellation, ~1e-7 = float32 round-off);
* the mean Eq. 3 weight w_l the layer gets in CREG's aggregate;
* how many CREG peak sectors change when layer -2 is dropped (layers -3,-4,-5).

Example (the docs/paper-to-code.md figures)::

    OMP_NUM_THREADS=1 python scripts/layer_roundoff.py --adapter qwen2vl-toy --n 50
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", default="qwen2vl-toy", help="a registry preset")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", type=int, default=224, help="scene width and height (px)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from creg.core.compass import project_to_compass
    from creg.explain.context import ExplainContext
    from creg.plugins.manager import get_plugins
    from creg.config.presets import load_registry
    from creg.sources.contrastive_multilayer import DEFAULT_LAYERS, CregSource
    from creg.sources.token_grid import vision_tokens
    from creg_synthetic.scenes import scene_sample

    preset = load_registry()[args.adapter]
    adapter = get_plugins().load("adapter", preset.adapter).load(preset.adapter_config(device="cpu"))
    full, short = CregSource(), CregSource(layers=DEFAULT_LAYERS[1:])
    signed = {l: 0.0 for l in DEFAULT_LAYERS}
    absolute = {l: 0.0 for l in DEFAULT_LAYERS}
    weights = torch.zeros(len(DEFAULT_LAYERS), dtype=torch.float64)
    changed = 0
    for i in range(args.n):
        sample = scene_sample(0, i, (args.size, args.size))
        ctx = ExplainContext.for_sources([sample], adapter, [full, short])
        grads = ctx.gradients(full.target, full.layers)
        layout = ctx.layout(0)
        for l in DEFAULT_LAYERS:
            prod = grads[l][0].float() * ctx.output.hidden[l][0].detach().float()  # seq d
            prod = vision_tokens(prod, layout)  # n_vis d
            signed[l] += float(prod.sum(-1).abs().sum())
            absolute[l] += float(prod.abs().sum())
        (_, w), = full.vision_relevance(ctx)
        weights += w.double()
        peaks = []
        for src in (full, short):
            m = src.explain(ctx)[0]
            peaks.append(project_to_compass(m.values, sample.ref_box, sample.tgt_box, sample.image_size,
                                            cell_xy=m.cell_xy).peak_sector)
        changed += peaks[0] != peaks[1]
    print(f"adapter {args.adapter} ({adapter.num_layers} decoder layers), {args.n} synthetic scenes "
          f"{args.size}x{args.size}, {torch.get_num_threads()} thread(s), target tau = z_pred - z_neg")
    print("| layer | sum_j abs(sum_d g h) / sum_j sum_d abs(g h) | mean Eq. 3 weight |")
    print("|---:|---:|---:|")
    for k, l in enumerate(DEFAULT_LAYERS):
        print(f"| {l} | {signed[l] / absolute[l]:.3g} | {float(weights[k]) / args.n:.3f} |")
    print(f"CREG peak sectors that change when layer -2 is dropped: {changed} of {args.n}")


if __name__ == "__main__":
    main()
