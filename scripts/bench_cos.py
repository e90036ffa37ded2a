#!/usr/bin/env python
"""What ``--cos`` adds to a run, now and with the COS code of an earlier commit, in one process.

The Table-1 sources run through the run pipeline (:func:`creg.explain.pipeline.explain_batch`) on the
same samples three ways, interleaved repetition by repetition so that a shared machine's load
drifts over all three alike: without COS, with COS, and with COS computed by
``creg/explain/occlusion.py`` as it was at ``--against`` (read with ``git show``; same adapter, same
sources, same everything else). Printed: "--cos adds" = time with COS / time without - 1 (the
best repetition of each), for the toy model at batch sizes 1 and 16 and, with ``--deep``, for
a random 28-layer Qwen2-VL (``bench_throughput.load_deep``) at 64 vision tokens, batch 1. The
records of both COS paths are compared too (largest difference of any Delta S).

Time is process CPU time with one thread (on CUDA: wall clock between synchronisations).

    nice -n 19 python scripts/bench_cos.py --against 91e6a31 --deep
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_throughput as bt  # noqa: E402


def old_occlusion(commit: str):
    """``creg.explain.occlusion`` as it was at ``commit``, as a separate module."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "-C", str(root), "show", f"{commit}:creg/explain/occlusion.py"], capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType("creg._occlusion_at_" + commit)
    mod.__package__ = "creg"
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{commit}:creg/explain/occlusion.py", "exec"), mod.__dict__)
    return mod


def measure(adapter, samples, sizes, repeats, old):
    import creg.explain.pipeline as pipeline
    from creg.explain.pipeline import ScoringSettings, explain_batch

    srcs = bt.sources(bt.TABLE1)
    new_fn = pipeline.causal_occlusion

    def run(size, cos, fn=new_fn):
        pipeline.causal_occlusion = fn
        try:
            return [explain_batch(samples[i:i + size], srcs, adapter, ScoringSettings(cos=cos))
                    for i in range(0, len(samples), size)]
        finally:
            pipeline.causal_occlusion = new_fn

    for _ in range(2):  # warm-up, one-time costs included
        run(1, True), run(1, True, old.causal_occlusion)
    diff = 0.0
    for a, b in zip(run(sizes[0], True), run(sizes[0], True, old.causal_occlusion)):
        for (_, ra), (_, rb) in zip(a.scored, b.scored):
            for x, y in zip(ra, rb):
                diff = max(diff, abs(x.cos["peak"]["delta"] - y.cos["peak"]["delta"]),
                           abs(x.cos["area_matched"]["delta"] - y.cos["area_matched"]["delta"]))
    rows = {}
    for size in sizes:
        t = {"plain": [], "now": [], "before": []}
        for _ in range(repeats):
            t["plain"].append(bt.cpu_time(lambda: run(size, False)))
            t["now"].append(bt.cpu_time(lambda: run(size, True)))
            t["before"].append(bt.cpu_time(lambda: run(size, True, old.causal_occlusion)))
        best = {k: min(v) for k, v in t.items()}
        rows[size] = (best["now"] / best["plain"] - 1, best["before"] / best["plain"] - 1, best["plain"] / len(samples))
    return rows, diff


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", default="91e6a31", help="the commit whose creg/explain/occlusion.py is 'before'")
    p.add_argument("--n", type=int, default=16, help="toy samples")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--deep", action="store_true", help="also a random 28-layer Qwen2-VL (hidden --hidden), 64 tokens")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--n-deep", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    bt._CUDA = args.device.startswith("cuda")
    torch.set_num_threads(1)
    old = old_occlusion(args.against)
    print(f"--cos adds (time with COS / without - 1, best of {args.repeats}); 'before' = creg/explain/occlusion.py at {args.against}\n")
    print("| model | batch size | s per sample without COS | --cos adds now | --cos adds before | max abs ΔS difference |")
    print("|---|---:|---:|---:|---:|---:|")
    rows, diff = measure(bt.load_toy(args.device), bt.synthetic(args.n), (1, 16), args.repeats, old)
    for size, (now, before, unit) in rows.items():
        print(f"| toy (qwen2vl-toy), Table-1 sources | {size} | {unit:.3f} | +{now:.2f}x | +{before:.2f}x | {diff:.1e} |", flush=True)
    if args.deep:
        adapter, _ = bt.load_deep(args.hidden, 28, None, args.device)
        rows, diff = measure(adapter, bt.synthetic(args.n_deep, 224), (1,), args.repeats, old)
        for size, (now, before, unit) in rows.items():
            print(f"| 28 layers, hidden {args.hidden}, 64 tokens, Table-1 sources | {size} | {unit:.3f} | +{now:.2f}x | "
                  f"+{before:.2f}x | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
