"""Figures: formats and resolution, the palette, heatmaps where the relevance is, readable COS figures,
every source's examples, report.md embedding its figures."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from PIL import Image

from creg.report import figures as fg

torch.set_num_threads(1)


def _lab(hex_colour: str) -> np.ndarray:
    """sRGB hex -> CIELAB (D65)."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_has_twenty_distinct_colours():
    assert len(set(fg.PALETTE)) == 20
    worst = min(np.linalg.norm(_lab(a) - _lab(b)) for a, b in itertools.combinations(fg.PALETTE, 2))
    assert worst > 20, worst
    # visible on white: no colour lighter than L* 85
    assert max(_lab(c)[0] for c in fg.PALETTE) < 85


def test_source_colours_are_fixed_by_name():
    """A source has the same colour whatever else the run holds and wherever it sits in the list."""
    a = fg.source_colours(["oracle", "creg", "my_source"])
    b = fg.source_colours(["my_source", "random", "creg"])
    assert a["creg"] == b["creg"] == fg.NAMED_COLOURS["creg"] and a["my_source"] == b["my_source"]
    every = fg.source_colours(list(fg.NAMED_COLOURS))
    assert len(set(every.values())) == len(fg.NAMED_COLOURS)
    # the true direction's green and the peak's magenta belong to no source
    assert not {fg.TRUE_COLOUR, fg.PEAK_COLOUR} & set(fg.source_colours(list(fg.NAMED_COLOURS) + ["x", "y", "z"]).values())


def test_names_that_hash_alike_are_told_apart():
    names = [f"s{i}" for i in range(8)]
    c = fg.source_colours(names)
    assert len(set(c.values())) == 8


def _summary(n_sources: int) -> dict:
    def stat(m):
        return {"mean": m, "ci": [m - 0.1, m + 0.1]}

    cos = {"op": "grey", "n": 10, "peak": {"delta": stat(-0.3), "delta_opp": stat(-0.05), "cos": stat(0.25)},
           "adjacent": {"delta": stat(-0.1), "cos": stat(0.05)},
           "true": {"delta": stat(-0.4), "delta_opp": stat(0.0), "cos": stat(0.4)}}
    return {"sources": {f"source_{i}": {"n": 10, "dae": 30.0, "cos": cos} for i in range(n_sources)}}


def _per_class(names) -> dict:
    rel = ("left", "right", "above", "below")
    return {"accuracy": {r: {"accuracy": 0.9, "n": 5} for r in rel},
            "sources": {n: {r: {"dae": 10.0 * (i + 1), "ea": 0.5} for r in rel} for i, n in enumerate(names)},
            "chance": {"accuracy": 0.25, "dae": 67.5, "ea": 0.25}, "k": 8}


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_report_figures_in_each_format(tmp_path, fmt, magic):
    made = fg.report_figures(tmp_path, summary=_summary(3), per_class=_per_class(["source_0", "source_1", "source_2"]),
                             examples={}, fmt=fmt, dpi=72)
    assert set(made) == {"per_class", "cos"}
    for path in made.values():
        assert path.suffix == f".{fmt}" and path.read_bytes().startswith(magic)
    with pytest.raises(ValueError, match="choose one of png, pdf, svg"):
        fg.report_figures(tmp_path, summary=_summary(1), per_class=_per_class(["source_0"]), examples={}, fmt="jpg")


def test_dpi_sets_the_resolution(tmp_path):
    small = fg.per_class_figure(tmp_path / "a.png", _per_class(["x", "y"]), dpi=50)
    big = fg.per_class_figure(tmp_path / "b.png", _per_class(["x", "y"]), dpi=150)
    ws, wb = Image.open(small).size[0], Image.open(big).size[0]
    assert wb / ws == pytest.approx(3.0, rel=0.05)


def test_cos_figure_stays_readable_with_many_sources(tmp_path):
    """One row per source: the figure grows in height, never into a wide strip (0.1: 2354x396 px at 12 sources)."""
    sizes = {n: Image.open(fg.cos_figure(tmp_path / f"cos{n}.png", _summary(n), dpi=50)).size for n in (2, 20)}
    for w, h in sizes.values():
        assert w < 800 and 0.2 < h / w < 2.0
    assert sizes[20][0] == pytest.approx(sizes[2][0], rel=0.15) and sizes[20][1] > 2 * sizes[2][1]


def test_cos_figure_draws_the_area_matched_reading_when_the_run_has_it(tmp_path):
    """The area-matched control (triangles) is drawn beside the paper's reading: a summary that
    has it gives a different picture from one without it (runs scored before the control)."""
    import copy

    plain = _summary(2)
    matched = copy.deepcopy(plain)
    for s in matched["sources"].values():
        s["cos"]["area_matched"] = {"delta": {"mean": -0.2, "ci": [-0.3, -0.1]}, "cos": {"mean": 0.1, "ci": [0.0, 0.2]},
                                    "area": {"mean": 0.1, "ci": [0.09, 0.11]}}
    a = np.asarray(Image.open(fg.cos_figure(tmp_path / "plain.png", plain, dpi=60)).convert("RGB"), dtype=int)
    b = np.asarray(Image.open(fg.cos_figure(tmp_path / "matched.png", matched, dpi=60)).convert("RGB"), dtype=int)
    assert a.shape == b.shape and np.abs(a - b).sum(axis=-1).astype(bool).sum() > 50


def test_heatmap_is_drawn_where_the_relevance_is():
    """A map hot in one cell of a 4x4 grid over a black image: that cell's pixels are bright, the opposite corner's dark."""
    plt = fg.pyplot()
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    rel = np.zeros((4, 4))
    rel[0, 3] = 1.0  # top-right cell: x in [150, 200), y in [0, 25)
    fig, ax = plt.subplots(figsize=(4, 2), dpi=100)
    fg.draw_heatmap(ax, img, rel, colorbar=False, alpha=1.0)
    ax.set_axis_off()
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)

    def pixel(x, y):
        px, py = ax.transData.transform((x, y))
        return buf[int(round(buf.shape[0] - py)), int(round(px))]

    assert pixel(175, 12).sum() > 500  # inferno's top colour: bright yellow
    assert pixel(25, 87).sum() < 60  # zero relevance: inferno's black
    plt.close(fig)


def test_heatmap_follows_the_cell_centres():
    """Non-uniform cell centres (a model that cropped the image): the hot cell lands at its own pixels."""
    plt = fg.pyplot()
    img = Image.new("RGB", (200, 200), (0, 0, 0))
    rel = np.zeros((2, 2))
    rel[1, 1] = 1.0
    xs, ys = np.array([20.0, 60.0]), np.array([20.0, 60.0])  # the grid covers only the top-left 80x80
    cell_xy = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1)
    fig, ax = plt.subplots(figsize=(2, 2), dpi=100)
    fg.draw_heatmap(ax, img, rel, cell_xy, colorbar=False, alpha=1.0)
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    px, py = ax.transData.transform((60, 60))
    assert buf[int(round(buf.shape[0] - py)), int(round(px))].sum() > 500
    px, py = ax.transData.transform((150, 150))
    outside = buf[int(round(buf.shape[0] - py)), int(round(px))]
    assert outside.sum() < 200 and np.ptp(outside) == 0  # outside the grid: the (black) image, shown in grey
    plt.close(fig)


def test_a_multi_grid_union_row_is_drawn_cell_by_cell():
    """Several grids as one (1, n) row of cells (multi-grid adapters): each cell at its own pixel centre."""
    plt = fg.pyplot()
    img = Image.new("RGB", (200, 200), (0, 0, 0))
    cell_xy = np.array([[[50.0, 50.0], [150.0, 50.0], [50.0, 150.0], [150.0, 150.0]]])
    rel = np.array([[0.0, 0.0, 0.0, 1.0]])
    fig, ax = plt.subplots(figsize=(2, 2), dpi=100)
    fg.draw_heatmap(ax, img, rel, cell_xy, colorbar=False, alpha=1.0)
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)

    def pixel(x, y):
        px, py = ax.transData.transform((x, y))
        return buf[int(round(buf.shape[0] - py)), int(round(px))]

    assert pixel(150, 150).sum() > 500 and pixel(120, 120).sum() > 500  # the hot cell covers its quadrant
    assert pixel(50, 50).sum() < 30 and pixel(150, 50).sum() < 30
    plt.close(fig)


def test_a_point_map_is_a_marker_at_its_pixel():
    """oracle / random put all relevance at one point: a star there, not a colour over the whole image."""
    plt = fg.pyplot()
    img = Image.new("RGB", (200, 200), (0, 0, 0))
    fig, ax = plt.subplots(figsize=(2, 2), dpi=100)
    fg.draw_heatmap(ax, img, np.ones((1, 1)), np.array([[[150.0, 50.0]]]), colorbar=False)
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)

    def pixel(x, y):
        px, py = ax.transData.transform((x, y))
        return buf[int(round(buf.shape[0] - py)), int(round(px))]

    assert pixel(150, 50).sum() > 500 and pixel(50, 150).sum() < 30
    plt.close(fig)


def test_rose_has_a_probability_scale():
    plt = fg.pyplot()
    fig = plt.figure()
    ax = fig.add_subplot(projection="polar")
    fg.draw_compass(ax, [0.5, 0.2, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03], 0.0, 10.0)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels and all(re.fullmatch(r"0\.\d+", t) for t in labels)
    assert max(float(t) for t in labels) <= 0.5 * 1.15
    plt.close(fig)


@pytest.mark.slow
def test_report_gives_every_source_its_examples_with_heatmaps(tmp_path):
    from creg.report.report import build_report
    from creg.execution.runner import Runner, RunConfig

    run = tmp_path / "run"
    sources = ["oracle", "random", "random_relevance", "target_box"]
    Runner(RunConfig(sources=sources, n=5), run, progress=False, log=lambda _: None).run()
    rep = build_report(run, log=lambda _: None, dpi=60)
    assert {f"examples_{s}" for s in sources} <= set(rep["figures"])
    assert rep["examples_left_out"] == {} and not any("heatmaps" in n for n in rep["figure_notes"])
    md = (run / "report.md").read_text()
    for name, rel in rep["figures"].items():
        assert f"![{name}]({rel})" in md and (run / rel).is_file()
    assert (run / "report.html").is_file() and rep["html"] == "report.html"


def test_a_source_without_defined_dae_is_named_as_left_out(tmp_path):
    from creg.core.records import SampleRecord
    from creg.report.examples import build_examples

    rec = SampleRecord(sample_id="s", source="x", relation="left", true_angle=0.0, compass=[0.25] * 4, peak_sector=0,
                       peak_angle=0.0, sector_angle=0.0, dae=None, dae_sector=None, ea=None, flags=["zero_distance"])
    examples, left_out, _ = build_examples({"run": {}}, {"x": [rec]}, {}, heatmaps=False, log=lambda _: None)
    assert examples == {} and "no sample with a defined DAE" in left_out["x"]


def test_report_says_why_examples_have_no_heatmap(tmp_path):
    """A run that stored no maps (--no-save-maps), made with a model the configuration does not name
    (a fake passed in): the examples are drawn without heatmaps and report.md says why."""
    from fake_vlm import FakeVLMAdapter

    from creg.execution.runner import Runner, RunConfig
    from creg.experiments.heatmaps import recompute_maps
    from creg.report.report import build_report

    run = tmp_path / "run"
    Runner(RunConfig(sources=["creg"], n=2, bench_options={"width": 112, "height": 112}, save_maps=False), run,
           adapter=FakeVLMAdapter(patch_px=14, seed=5), progress=False, log=lambda _: None).run()
    rep = build_report(run, log=lambda _: None, dpi=40, html=False, recompute=recompute_maps)
    assert "examples_creg" in rep["figures"]
    notes = " ".join(rep["figure_notes"])
    assert "heatmaps:" in notes and "needs a model" in notes
    assert "note: heatmaps:" in (run / "report.md").read_text()
