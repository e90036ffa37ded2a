#!/usr/bin/env python
"""The docs' multi-grid heatmap: a tiled model (2 x 3 tiles plus a global image) explained by
``target_box`` and ``gradxact``, drawn by :meth:`creg.api.Explanation.plot` (relevance spread to
pixel space, tiles outlined; docs/user-guide.md, "Heatmaps of tiled models").

The model is the example adapter's tiny random VLM behind the test suite's tiled adapter
(``tests/tiled_adapters.py``), so the picture needs no download::

    OMP_NUM_THREADS=1 python scripts/multigrid_figure.py docs/figures/multigrid-heatmap.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="where to write the figure (png, pdf or svg)")
    ap.add_argument("--dpi", type=int, default=110)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from PIL import Image, ImageDraw
    from tiled_adapters import GridTilesAdapter

    from creg.plugins.adapter import AdapterConfig
    from creg.api import Model

    ref, tgt = (40, 130, 100, 190), (230, 40, 290, 100)
    image = Image.new("RGB", (336, 224), (90, 120, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse(ref, fill=(200, 80, 60))
    draw.rectangle(tgt, fill=(60, 80, 200))
    model = Model("2x3 tiles + global", GridTilesAdapter.load(AdapterConfig(model="random:0")))
    ex = model.explain(image, ref=("ball", ref), tgt=("box", tgt), sources=["target_box", "gradxact"])
    print(ex.plot(args.out, dpi=args.dpi))


if __name__ == "__main__":
    main()
