#!/usr/bin/env python
"""Pool the records of several run directories (e.g. one per seed) into one table: per source,
n and every registered metric's mean with its 95 % bootstrap CI, plus the model's accuracy.

    python scripts/pool_runs.py runs/planted-s0 runs/planted-s1 runs/planted-s2

The runs' samples must differ (different seeds): records are concatenated, not matched.
"""

from __future__ import annotations

import argparse

import numpy as np

from creg.plugins.metric import metric_registry
from creg.store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    records = [r for path in args.runs for r in RunStore.read(path).records()]
    reg = metric_registry()
    sources = list(dict.fromkeys(r.source for r in records))
    first = [r for r in records if r.source == sources[0]]
    correct = np.array([r.correct for r in first if r.correct is not None], dtype=float)
    if correct.size:
        print(f"accuracy {correct.mean():.3f} (n={correct.size})")
    shown = [m for m in reg if any(not np.isnan(v) for v in m.values(records))]
    print("| source | n | " + " | ".join(m.heading for m in shown) + " |")
    print("|---|---:|" + "---:|" * len(shown))
    for name in sources:
        rs = [r for r in records if r.source == name]
        cells = []
        for m in shown:
            value, ci = m.summarize(rs)
            d = m.digits
            cells.append("–" if value is None else f"{value:.{d}f}" + (f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]" if ci else ""))
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
