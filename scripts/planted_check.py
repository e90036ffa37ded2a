#!/usr/bin/env python
"""The planted model's own numbers on the synthetic scenes: accuracy, and where its exact causal
effects lie (docs/planted.md).

For every scene: the answer (argmax of the class logits) and the per-cell causal effects
(:meth:`creg_planted.adapter.PlantedAdapter.causal_effects`); the share of the total absolute
effect that lies on cells overlapping A's or B's box (a cell's footprint is its share of the grid).
Printed per seed and pooled.

    python scripts/planted_check.py --n 200 --seeds 0 1 2
    python scripts/planted_check.py --n 200 --seeds 0 1 2 --adapter-opt reference=text
    python scripts/planted_check.py --n 48 --seeds 0 --distractors 3   # also: effect on distractor-only cells
"""

from __future__ import annotations

import argparse
import json

import torch

from creg.core.sample import Box
from creg_planted.adapter import PlantedAdapter
from creg_synthetic.benchmark import SyntheticBenchmark


def on_boxes(sample, grid_hw: tuple[int, int], boxes) -> torch.Tensor:
    """``(h, w)`` bool: cells whose footprint overlaps any of ``boxes``."""
    gh, gw = grid_hw
    w, h = sample.image_size
    xs, ys = torch.arange(gw)[None, :] * (w / gw), torch.arange(gh)[:, None] * (h / gh)
    out = torch.zeros(gh, gw, dtype=torch.bool)
    for b in boxes:
        out |= (xs < b.x1) & (xs + w / gw > b.x0) & (ys < b.y1) & (ys + h / gh > b.y0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--adapter-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--distractors", type=int, default=0, help="the benchmark's distractors option")
    args = ap.parse_args()
    options = {k: json.loads(v) if v[:1] in "-0123456789tf[{" else v
               for k, v in (o.split("=", 1) for o in args.adapter_opt)}
    ad = PlantedAdapter(**options)
    pooled = {"n": 0, "correct": 0, "on": 0.0, "total": 0.0, "distractors": 0.0}
    for seed in args.seeds:
        samples = list(SyntheticBenchmark(n=args.n, seed=seed, distractors=args.distractors).samples())
        correct, on, total, on_distractors = 0, 0.0, 0.0, 0.0
        for i in range(0, len(samples), args.batch):
            batch = samples[i:i + args.batch]
            with torch.no_grad():
                pred = ad.forward(batch).class_logits.argmax(1).tolist()
            correct += sum(p == s.option for p, s in zip(pred, batch))
            for s, e in zip(batch, ad.causal_effects(batch)):
                boxes = [s.tgt_box] if ad.options.reference == "text" else [s.ref_box, s.tgt_box]
                a = e.abs()
                named = on_boxes(s, tuple(e.shape), boxes)
                on += float(a[named].sum())
                total += float(a.sum())
                others = [Box(x0=x0, y0=y0, x1=x1, y1=y1) for x0, y0, x1, y1 in
                          (d["box"] for d in s.meta.get("distractors", []))]
                if others:
                    on_distractors += float(a[on_boxes(s, tuple(e.shape), others) & ~named].sum())
        print(f"seed {seed}: n={len(samples)} accuracy {correct / len(samples):.3f}, "
              f"causal effect on {'B' if ad.options.reference == 'text' else 'A∪B'} cells {on / total:.4f}"
              + (f", on distractor-only cells {on_distractors / total:.4f}" if args.distractors else ""))
        for k, v in (("n", len(samples)), ("correct", correct), ("on", on), ("total", total),
                     ("distractors", on_distractors)):
            pooled[k] += v
    print(f"pooled: n={pooled['n']} accuracy {pooled['correct'] / pooled['n']:.3f}, "
          f"causal effect share {pooled['on'] / pooled['total']:.4f}"
          + (f", on distractor-only cells {pooled['distractors'] / pooled['total']:.4f}" if args.distractors else ""))


if __name__ == "__main__":
    main()
