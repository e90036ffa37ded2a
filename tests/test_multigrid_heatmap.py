"""Multi-grid heatmaps (creg.report.multigrid): relevance of overlapping grids (tiles + a global
image) spread to pixel space, in ``creg explain``, ``Explanation.plot`` and the report's figures."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiled_adapters import TILE_CELLS, GridTilesAdapter  # noqa: E402

from creg.plugins.adapter import AdapterConfig  # noqa: E402
from creg.report.multigrid import outlines, split_grids, spread_to_pixels  # noqa: E402
from creg.explain.grids import GridSpan, grid_spans

pytest.importorskip("matplotlib")

#: image 4 x 2 px, raster 1 px per image px: a global 1x2 grid and a 2x2 tile over the left half.
GRIDS = (GridSpan("global", 1, 2), GridSpan("tile 0", 2, 2))
VALUES = np.array([[4.0, 0.0, 1.0, 2.0, 3.0, 0.0]])
XY = np.array([[[1, 1], [3, 1], [0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5]]], dtype=float)


def test_spread_to_pixels_by_hand():
    """Global cell 0 (value 4) covers the left 2 x 2 px: 1 per px; the tile's cells cover 1 px each."""
    raster = spread_to_pixels(VALUES, XY, GRIDS, (4, 2), longest=4)
    assert raster.tolist() == [[2.0, 3.0, 0.0, 0.0], [4.0, 1.0, 0.0, 0.0]]
    assert raster.sum() == VALUES.sum()  # every cell's mass lands on the raster


def test_spread_keeps_the_mass_on_a_finer_raster():
    raster = spread_to_pixels(VALUES, XY, GRIDS, (4, 2), longest=40)
    assert raster.shape == (20, 40)
    assert raster.sum() == pytest.approx(VALUES.sum())
    assert raster[:10, :10] == pytest.approx(np.full((10, 10), 4 / 400 + 1 / 100))  # global 4 over 20x20, tile 1 over 10x10


def test_split_and_outlines():
    (g_v, g_xy), (t_v, t_xy) = split_grids(VALUES, XY, GRIDS)
    assert g_v.tolist() == [[4.0, 0.0]] and t_v.tolist() == [[1.0, 2.0], [3.0, 0.0]] and t_xy.shape == (2, 2, 2)
    assert outlines(XY, GRIDS, (4, 2)) == [("tile 0", (0.0, 0.0, 2.0, 2.0))]  # the global grid needs none
    with pytest.raises(ValueError, match="does not fit"):
        split_grids(VALUES[:, :5], XY[:, :5], GRIDS)


@pytest.fixture(scope="module")
def tiled():
    return GridTilesAdapter.load(AdapterConfig(model="random:0"))


@pytest.fixture(scope="module")
def image():
    from PIL import Image

    return Image.new("RGB", (336, 224), (90, 120, 90))


BOXES = dict(ref=("ball", (40, 130, 100, 190)), tgt=("box", (230, 40, 290, 100)))


def test_grid_spans_come_from_the_layout(tiled, image):
    from creg.core.sample import Box, make_sample

    s = make_sample(id="x", image=image, image_size=image.size, ref_name="a", ref_box=Box(x0=0, y0=0, x1=9, y1=9),
                    tgt_name="b", tgt_box=Box(x0=20, y0=20, x1=30, y1=30), relation="right")
    (layout,) = tiled.forward([s]).vision
    spans = grid_spans(layout, layout.grid_hw)
    assert [g.name for g in spans] == [f"tile {k}" for k in range(6)] + ["global"]
    assert all((g.h, g.w) == (TILE_CELLS, TILE_CELLS) for g in spans)
    assert grid_spans(layout, (1, 1)) is None  # a point map (oracle) is not on the grids
    from creg.plugins.adapter import VisionLayout

    single = VisionLayout.from_grids([layout.grids[0]])
    assert grid_spans(single, single.grid_hw) is None  # one grid: drawn as before


def _heatmap_collections(fig):
    from matplotlib.collections import PathCollection, QuadMesh

    scene = fig.axes[0]
    return [c for c in scene.collections if isinstance(c, QuadMesh)], \
        [c for c in scene.collections if isinstance(c, PathCollection)]


def test_explanation_plot_spreads_tiles_to_pixels(tiled, image, tmp_path):
    from creg.api import Model

    ex = Model("tiles", tiled).explain(image, **BOXES, sources=["target_box", "gradxact"])
    g = ex["gradxact"]
    assert g.grids is not None and len(g.grids) == 7 and g.relevance.shape == (1, 7 * TILE_CELLS**2)
    fig = ex.plot()
    meshes, markers = _heatmap_collections(fig)
    assert len(meshes) == 1 and not markers  # one pixel-space mesh, no per-cell markers
    tiles = [p for p in fig.axes[0].patches if p.get_linestyle() == ":"]
    assert len(tiles) == 6  # each tile outlined, the global image not
    assert ex.plot(tmp_path / "ex.png").is_file()
    assert ex["gradxact"].to_dict(maps=True)["grids"][-1] == {"name": "global", "h": TILE_CELLS, "w": TILE_CELLS}


def test_a_single_grid_map_is_drawn_as_before(image):
    from creg.api import load

    ex = load("none").explain(image, **BOXES, sources=["random_relevance"])
    assert ex["random_relevance"].grids is None
    meshes, _ = _heatmap_collections(ex.plot())
    assert len(meshes) == 1


def test_report_examples_figure_draws_grids(tiled, image, tmp_path):
    """The report's example figures take the recomputed maps' ``grids`` (creg.report.examples)."""
    from creg.api import Model
    from creg.report import figures as fg

    ex = Model("tiles", tiled).explain(image, **BOXES, sources=["gradxact"])
    s = ex["gradxact"]
    item = {"label": "best", "image": image, "sample": ex.sample.summary(), "record": s.record.model_dump(),
            "relevance": s.relevance, "cell_xy": s.cell_xy, "r_max": s.r_max, "grids": s.grids}
    drawn = []
    original = fg.draw_multigrid
    fg.draw_multigrid = lambda *a, **k: drawn.append(1) or original(*a, **k)
    try:
        assert fg.examples_figure(tmp_path / "examples.png", [item], "gradxact").is_file()
    finally:
        fg.draw_multigrid = original
    assert drawn == [1]


def test_creg_explain_draws_the_tiled_figure(image, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import creg
    import creg.plugins.manager
    from creg.cli.main import cli

    plugin = types.ModuleType("tiles_creg")

    @creg.hookimpl
    def register_adapters(register):
        register("tiles", GridTilesAdapter, description="tiles and a global image")

    plugin.register_adapters = register_adapters
    plugins = creg.plugins.manager.discover()
    plugins.add_module(plugin, dist="tiles-creg 0.0.1")
    monkeypatch.setattr(creg.plugins.manager, "_cached", plugins)
    path = tmp_path / "in.png"
    image.save(path)
    res = CliRunner().invoke(cli, ["explain", "--adapter", "tiles", "--model", "random:0", "--image", str(path),
                                   "--ref", "ball", "--ref-box", "40,130,100,190", "--tgt", "box",
                                   "--tgt-box", "230,40,290,100", "--source", "gradxact", "--out",
                                   str(tmp_path / "fig.png"), "--json", "--maps"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output.splitlines()[-1])
    assert len(data["sources"]["gradxact"]["grids"]) == 7 and (tmp_path / "fig.png").is_file()
