#!/usr/bin/env python
"""Attention rollout's own cost: the running matrix product vs. the answer row propagated from the top.

Streams ``--layers`` random causal attention maps ``(1, heads, T, T)`` (T = vision tokens + 70
text tokens, as for a Qwen2-VL prompt) through two readers and times each reader's work alone
(the maps are generated beforehand), medians over ``--repeats``, one process:

* ``product``: the 0.1 reader, R <- Â_l @ R at every layer (O(L T^3)), then row a of R;
* ``row``: :class:`creg.sources.attention_rollout.AttentionRollout`, keeps Â_l and propagates
  row a from the top, r <- r Â_l (O(L T^2)).

Both give the same row (checked). Example (docs/speed.md)::

    OMP_NUM_THREADS=1 python scripts/bench_rollout.py --tokens 64 256 1024
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from creg.sources.attention_rollout import AttentionRollout, rollout_layer


def product_rollout(maps: list[torch.Tensor], answer: int) -> torch.Tensor:
    product = None
    for attn in maps:
        a = rollout_layer(attn)
        product = a if product is None else torch.bmm(a, product)
    return product[:, answer]


def row_rollout(maps: list[torch.Tensor], answer: int) -> torch.Tensor:
    reader = AttentionRollout()
    for i, attn in enumerate(maps):
        reader.update(i, attn)
    return reader.rows(torch.tensor([answer]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 256, 1024], help="vision tokens")
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.layers} layers, {args.heads} heads, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    print("| vision tokens | T | product (ms) | answer row (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    for n_vis in args.tokens:
        t = n_vis + 70
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        maps = [torch.softmax(torch.randn(1, args.heads, t, t, generator=g).masked_fill(~causal, float("-inf")), -1)
                for _ in range(args.layers)]
        times = {}
        for name, fn in (("product", product_rollout), ("row", row_rollout)):
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = fn(maps, t - 1)
                runs.append(time.perf_counter() - start)
            times[name] = (statistics.median(runs), result)
        assert torch.allclose(times["product"][1], times["row"][1], atol=1e-6)
        p, r = times["product"][0] * 1e3, times["row"][0] * 1e3
        print(f"| {n_vis} | {t} | {p:.1f} | {r:.1f} | {p / r:.1f}x |")


if __name__ == "__main__":
    main()
