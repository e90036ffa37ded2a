#!/usr/bin/env python
"""Which layers the round-off flag fires for, and why those and no others: ratio distributions per precision.

For each layer -2..-5 this prints, over ``--n`` scenes of the default synthetic benchmark (seed 0,
224x224: the samples of the default ``creg run``; CREG's target tau = z_pred - z_neg, one sample
per pass as the default run), the cancellation ratio sum_j |sum_d g h| / sum_j sum_d |g h| over
the vision tokens (min / median / max), the flag's threshold (largest over the samples;
``creg.sources.roundoff.roundoff_threshold``) and how many samples the flag ``roundoff_layer_L``
fires for. Each precision row re-runs the same scenes with the model cast and its RMSNorm eps set:

* float32, the model's eps -- what ``creg run`` measures;
* float64, the model's eps, and float64 with eps = 0 -- a ratio that is float32 round-off falls
  here, one that is the norm's eps falls with eps = 0, a ratio that is signal stays put;
* bfloat16, the model's eps -- the low-precision floor.

Examples (the docs/paper-to-code.md table)::

    OMP_NUM_THREADS=1 python scripts/roundoff_separation.py --adapter qwen2vl-toy --n 200
    OMP_NUM_THREADS=1 python scripts/roundoff_separation.py --deep --hidden 256 --layers 28 --n 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from roundoff_eps import LAYERS, add_model_arguments, load, set_eps  # noqa: E402

#: name -> (dtype, eps: None = the model's own)
PRECISIONS = {"float32": (torch.float32, None), "float64": (torch.float64, None),
              "float64-eps0": (torch.float64, 0.0), "bfloat16": (torch.bfloat16, None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help=f"comma-separated, of {', '.join(PRECISIONS)}")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from creg.explain.context import ExplainContext
    from creg.sources.contrastive_multilayer import CregSource
    from creg.sources.roundoff import norm_eps, sample_diagnostics
    from creg_synthetic.scenes import scene_sample

    adapter, label = load(args)
    own = adapter.decoder.layers[-1].input_layernorm.variance_epsilon
    samples = [scene_sample(0, i, (args.size, args.size)) for i in range(args.n)]
    source = CregSource(layers=list(LAYERS))
    print(f"{label}: {adapter.num_layers} decoder layers, model eps {own:g}; {args.n} synthetic scenes "
          f"{args.size}x{args.size} (seed 0), CREG's target, 1 thread\n")
    print("| precision | layer | ratio min | ratio median | ratio max | threshold (max) | flagged |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.precisions.split(","):
        dtype, eps = PRECISIONS[name]
        adapter.model.to(dtype)
        set_eps(adapter.model, own if eps is None else eps)
        layer_eps = {l: norm_eps(adapter, l) for l in LAYERS}
        ratios: dict[int, list[float]] = {l: [] for l in LAYERS}
        thresholds: dict[int, list[float]] = {l: [] for l in LAYERS}
        for s in samples:
            ctx = ExplainContext.for_sources([s], adapter, [source])
            r, t = sample_diagnostics(ctx.gradients(source.target, LAYERS), ctx.output.hidden, layer_eps, 0, ctx.layout(0))
            for l in LAYERS:
                ratios[l].append(r[l])
                thresholds[l].append(t[l])
        for l in LAYERS:
            v, t = np.array(ratios[l]), np.array(thresholds[l])
            print(f"| {name} | {l} | {v.min():.2g} | {np.median(v):.2g} | {v.max():.2g} | {t.max():.2g} | "
                  f"{int((v < t).sum())} of {len(v)} |")
    adapter.model.to(torch.float32)
    set_eps(adapter.model, own)


if __name__ == "__main__":
    main()
