#!/usr/bin/env python
"""How many steps integrated gradients needs: the completeness gap by integration rule and steps.

For ``--n`` synthetic scenes this prints, per rule and step count, the largest and the median
completeness gap |sum_j attr_j - (z(x) - z(0))| / |z(x) - z(0)| of IG at layer -2 (zero
baseline, target z_gt; :mod:`creg.sources.integrated_gradients`), and the CPU time of the
integral in forward-pass units (1 FPU = one plain ``model(**inputs)``; the keys and values of
the last block once per batch, :mod:`creg.hf.scaled_replay`). The default ``steps`` of the
``integrated_gradients`` source is the smallest count whose largest gap is under 5% on the toy
and on the 28-layer shape (docs/sources.md).

Examples::

    OMP_NUM_THREADS=1 python scripts/ig_convergence.py --adapter qwen2vl-toy --n 8
    OMP_NUM_THREADS=1 python scripts/ig_convergence.py --deep --hidden 256 --layers 28 --n 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from roundoff_eps import add_model_arguments

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--methods", default="gausslegendre_log,gausslegendre")
    ap.add_argument("--steps", default="50,100,200,400")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from roundoff_eps import load

    from creg.plugins.adapter import ForwardRequest
    from creg.sources.integrated_gradients import completeness_gap, path_endpoints, token_integrated_gradients
    from creg_synthetic.scenes import scene_sample

    adapter, label = load(args)
    samples = [scene_sample(0, i, (args.size, args.size)) for i in range(args.n)]
    rows: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    for s in samples:
        inputs = adapter.encode([s])
        with torch.no_grad():
            t0 = time.process_time()
            adapter.model(**inputs)
            unit = time.process_time() - t0
        out = adapter.forward([s], ForwardRequest(layers=(-2,)))
        gt = torch.tensor([s.option])
        shape = tuple(out.hidden[-2].shape[:2])
        replay = adapter.scaled_layer_replay(out, -2)
        delta = path_endpoints(replay, shape, gt)
        for method in args.methods.split(","):
            for steps in (int(x) for x in args.steps.split(",")):
                t0 = time.process_time()
                attr = token_integrated_gradients(replay, shape, gt, steps=steps, method=method)
                cost = (time.process_time() - t0) / unit
                gaps, costs = rows.setdefault((method, steps), ([], []))
                gaps.append(float(completeness_gap(attr, delta)[0]))
                costs.append(cost)
    print(f"{label}: {args.n} synthetic scenes {args.size}x{args.size}, IG at -2, target z_gt, 1 thread, CPU time\n")
    print("| rule | steps | max gap | median gap | FPU (median) |")
    print("|---|---:|---:|---:|---:|")
    for (method, steps), (gaps, costs) in rows.items():
        print(f"| {method} | {steps} | {max(gaps):.3g} | {statistics.median(gaps):.3g} | {statistics.median(costs):.3f} |")


if __name__ == "__main__":
    main()
