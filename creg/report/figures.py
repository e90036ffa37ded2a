"""Figures of a run and of explained images (matplotlib, a main dependency).

* :func:`draw_heatmap` -- the relevance map blended over the image (cells drawn at their pixel
  extent in the original image, normalised to the map's maximum), with a colour bar.
* :func:`draw_compass` -- a compass rose: polar bars of P(theta_k) at the sector centres with a
  probability scale, the true direction A -> B as a red arrow, the evidence peak as a dark line
  (paper Fig. 3).
* :func:`draw_scene` -- the image (or its heatmap) with A's and B's boxes, the true direction from
  A's centre as a green arrow and the compass peak as a magenta arrow, both of length d_AB (Fig. 5),
  and the radius of influence r_max as a dashed circle when it is known.
* :func:`explanation_figure` -- one image, one row per source: heatmap scene | rose (``creg explain
  --out``, :meth:`creg.api.Explanation.plot`).
* :func:`examples_figure` -- best / median / worst sample of one source: heatmap scene over rose.
* :func:`per_class_figure` -- VLM accuracy per class and DAE per class and source (Fig. 4).
* :func:`cos_figure` -- a forest plot of COS (the paper's reading, the area-matched and the
  adjacent controls) and of Delta S of the occluded peak / opposite / area-matched / adjacent
  occlusions per source, with 95% bootstrap CIs (Eq. 8): one row per source, so it stays
  readable for any number of sources.
* :func:`report_figures` -- every figure of ``creg report``, in one format and resolution.

Colours: :func:`source_colours` gives each source a colour fixed by its *name* (the paper's sources
have theirs, any other name one from the rest of the palette by a hash of the name), so a source
has the same colour in every figure of every run. The true direction A -> B is :data:`TRUE_COLOUR`
(green) in every figure, the compass peak :data:`PEAK_COLOUR` (magenta); no source gets either.

Sizes: fonts are at least :data:`FONT_SMALL` points, readable in a notebook at the figures'
own size. Images keep their aspect ratio.

Angles follow the paper (0 deg = right, 90 deg = up); image y grows downwards.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from creg.core.compass import sector_names
from creg.core.sample import RELATIONS
from creg.report.multigrid import outlines, spread_to_pixels

#: The true direction A -> B, in the scene and in the rose (and the true sector in the COS figure).
TRUE_COLOUR = "#2ca02c"
PEAK_COLOUR = "#c2188b"
REF_COLOUR = "#ff7f0e"
TGT_COLOUR = "#1f77b4"
HEATMAP_CMAP = "inferno"
#: Opacity of the relevance colour over the image, the same for every value (0: image only, 1: map
#: only); low relevance is the colour map's black, so it darkens the image instead of fading out.
#: Under a heatmap the photo is shown in grey, so the map's colours are not confused with the photo's.
HEATMAP_ALPHA = 0.55
#: Font sizes (points).
FONT_SMALL = 8
FONT = 9
FONT_TITLE = 10

#: 20 colours, pairwise distinct (CIELAB distance >= 27, as far apart as tab10's own closest pair;
#: tests/test_figures.py checks > 20) and visible on white (L* 25-80): matplotlib's tab10, then ten
#: colours chosen greedily to be as far as possible from all before them.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#770055", "#eebb88", "#00dd00", "#4411aa", "#886600", "#00ddaa", "#ff22ff", "#224400", "#ff0077", "#0000ff",
)
#: The first-party sources' colours (indices into :data:`PALETTE`).
NAMED_COLOURS: dict[str, str] = {
    name: PALETTE[i] for name, i in (
        ("creg", 0), ("attention_rollout", 1), ("gradcam", 3), ("gradnorm", 4), ("integrated_gradients", 5),
        ("oracle", 7), ("gradxact", 8), ("creg_gt", 9), ("random_relevance", 10), ("random", 11),
        ("target_box", 14), ("random_ref", 15))
}
#: Palette colours that no source gets: the greens (the true direction) and the magentas (the peak).
_RESERVED = {"#2ca02c", "#00dd00", "#224400", "#e377c2", "#ff22ff"}
#: Colours left for other sources' names.
OTHER_COLOURS: tuple[str, ...] = tuple(c for c in PALETTE if c not in set(NAMED_COLOURS.values()) | _RESERVED)

#: Figure formats ``creg report`` / ``creg explain`` write.
FORMATS = ("png", "pdf", "svg")
DEFAULT_DPI = 200


class PlotsUnavailable(ImportError):
    """matplotlib is not installed."""


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (unless one was chosen), or a clear error.

    Labels are drawn as they are, never as mathtext (``text.parse_math`` off): names come from data,
    and a category called ``$...$`` must neither change the figure nor stop it (ParseFatalException)."""
    try:
        import matplotlib  # lazy: guarded
    except ImportError as e:
        raise PlotsUnavailable("figures need matplotlib: pip install matplotlib") from e
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=True)
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt  # lazy: matplotlib

    return plt


def source_colour(name: str) -> str:
    """The colour of source ``name``: its own for a first-party source, else one of
    :data:`OTHER_COLOURS` chosen by a hash of the name (the same in every run and process)."""
    if name in NAMED_COLOURS:
        return NAMED_COLOURS[name]
    digest = int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16)
    return OTHER_COLOURS[digest % len(OTHER_COLOURS)]


def source_colours(names: Iterable[str]) -> dict[str, str]:
    """{name: colour} by :func:`source_colour`. Two names of ``names`` that would share a colour (two
    third-party names with the same hash) are told apart: the later one takes the next colour no
    name of ``names`` has, while the palette lasts."""
    out: dict[str, str] = {}
    for name in dict.fromkeys(names):
        colour = source_colour(name)
        if colour in out.values():
            free = [c for c in OTHER_COLOURS + PALETTE if c not in out.values() and c not in _RESERVED]
            colour = free[0] if free else colour
        out[name] = colour
    return out


# -- building blocks ------------------------------------------------------------------------------

def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def draw_compass(ax, probs: Sequence[float], true_angle: float | None, peak_angle: float | None = None,
                 title: str = "", colour: str = "#3182bd") -> None:
    """A compass rose on a polar ``ax`` (theta 0 = right, counter-clockwise = up), with a radial
    probability scale; the true direction as a green arrow, the peak as a magenta line."""
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

    p = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(p).all():  # the report draws only finite values: a damaged record must not stop it
        p = np.where(np.isfinite(p), p, 0.0)
        title = f"{title} (non-finite values not drawn)" if title else "non-finite values not drawn"
    peak_angle, true_angle = _finite_or_none(peak_angle), _finite_or_none(true_angle)
    k = p.size
    centres = np.deg2rad(np.arange(k) * 360.0 / k)
    top = max(float(p.max()), 1e-9) * 1.15
    ax.bar(centres, p, width=2 * np.pi / k * 0.92, color=colour, alpha=0.45, edgecolor=colour, linewidth=1.0)
    ax.set_ylim(0, top)
    ax.set_xticks(centres)
    ax.set_xticklabels(sector_names(k), fontsize=FONT_SMALL)
    ax.tick_params(axis="x", pad=0)
    ticks = [t for t in MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10]).tick_values(0, top) if 0 < t < top]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{t:.2g}" for t in ticks], fontsize=FONT_SMALL - 1, color="#555555")
    ax.set_rlabel_position(360.0 / k / 2 if k > 1 else 22.5)  # between the first two sectors
    ax.grid(alpha=0.3)
    if peak_angle is not None:
        ax.plot([math.radians(peak_angle)] * 2, [0, top * 0.95], color=PEAK_COLOUR, lw=1.8)
    if true_angle is not None:
        ax.annotate("", xy=(math.radians(true_angle), top * 0.95), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=TRUE_COLOUR, lw=2))
    if title:
        ax.set_title(title, fontsize=FONT, pad=14)


def _fit_length(start: tuple[float, float], angle: float, length: float, size: tuple[int, int] | None) -> float:
    """``length`` shortened so that the arrow from ``start`` ends inside an image of ``size`` (w, h)."""
    if size is None:
        return length
    ux, uy = math.cos(math.radians(angle)), -math.sin(math.radians(angle))
    limits = [length]
    for u, p, hi in ((ux, start[0], size[0]), (uy, start[1], size[1])):
        if u > 1e-9:
            limits.append((hi - 1 - p) / u)
        elif u < -1e-9:
            limits.append((p - 0.0) / -u)
    return max(min(limits), 0.0)


def _arrow(ax, start: tuple[float, float], angle: float, length: float, colour: str) -> None:
    dx, dy = length * math.cos(math.radians(angle)), -length * math.sin(math.radians(angle))
    ax.annotate("", xy=(start[0] + dx, start[1] + dy), xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.2, mutation_scale=14))


def _edges(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Cell edges from sorted cell centres: midpoints inside, half a spacing outside, clipped to [lo, hi]."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([lo, hi])
    mid = (c[1:] + c[:-1]) / 2
    e = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.clip(e, lo, hi)


def cell_xy_of(relevance: np.ndarray, cell_xy: np.ndarray | None, image_size: tuple[int, int]) -> np.ndarray:
    """``(h, w, 2)`` pixel centres of a relevance grid: ``cell_xy`` or the uniform grid (creg.core.compass)."""
    if cell_xy is not None:
        return np.asarray(cell_xy, dtype=np.float64)
    h, w = relevance.shape
    width, height = image_size
    xs = (np.arange(w) + 0.5) * (width / w)
    ys = (np.arange(h) + 0.5) * (height / h)
    return np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1)


def _photo_in_grey(image) -> np.ndarray:
    """The image as a grey ``(h, w, 3)`` array, a little brighter where dark, for a heatmap to lie on."""
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    grey = 0.25 + 0.75 * grey
    return np.repeat(grey[..., None], 3, axis=-1)


def draw_heatmap(ax, image, relevance, cell_xy=None, *, image_size: tuple[int, int] | None = None,
                 colorbar: bool = True, alpha: float = HEATMAP_ALPHA):
    """The relevance map over ``image`` on ``ax``; returns the mappable.

    ``relevance``: ``(h, w)``; ``cell_xy``: ``(h, w, 2)`` pixel centres (x, y) in the original
    image, or None for a grid that tiles the image uniformly. Each cell is drawn over its own pixel
    extent (edges halfway between neighbouring centres), so a model's crop or resize shows where it
    really looked. Values are divided by the map's maximum and coloured with :data:`HEATMAP_CMAP`
    at one opacity ``alpha`` for every value (low relevance is dark, not faded); the photo beneath
    is shown in grey. A one-cell map (a point source: oracle, random direction) is a star at its
    pixel and gets no colour bar. ``colorbar``: a colour bar as tall as the image, beside it.
    """
    r = np.nan_to_num(np.asarray(relevance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    point = r.size == 1
    if image is not None:
        ax.imshow(np.asarray(image) if point else _photo_in_grey(image), zorder=0)
        size = image.size
    else:
        size = image_size or (r.shape[1], r.shape[0])
    xy = cell_xy_of(r, cell_xy, size)
    top = float(r.max())
    norm = r / top if top > 0 else r
    xs, ys = xy[0, :, 0], xy[:, 0, 1]
    separable = np.allclose(xy[..., 0], xs[None, :]) and np.allclose(xy[..., 1], ys[:, None])
    opacity = min(max(float(alpha), 0.0), 1.0)
    if point:  # a point source (oracle, random direction): all relevance at one pixel
        mesh = ax.scatter(xy[..., 0].ravel(), xy[..., 1].ravel(), c=[1.0], cmap=HEATMAP_CMAP, vmin=0, vmax=1,
                          marker="*", s=300, edgecolors="black", linewidths=0.9, zorder=5)
    elif separable and np.all(np.diff(xs) > 0) and np.all(np.diff(ys) > 0):
        mesh = ax.pcolormesh(_edges(xs, 0, size[0]), _edges(ys, 0, size[1]), norm, cmap=HEATMAP_CMAP,
                             vmin=0, vmax=1, shading="flat", zorder=1, alpha=opacity, linewidth=0)
    else:  # an irregular layout (several grids as one row of cells): one square marker per cell, sized so
        # that the cells would tile the image
        cell = math.sqrt(size[0] * size[1] / r.size) * 0.95 * (ax.get_window_extent().width / size[0])
        mesh = ax.scatter(xy[..., 0].ravel(), xy[..., 1].ravel(), c=norm.ravel(), cmap=HEATMAP_CMAP, vmin=0, vmax=1,
                          alpha=opacity, marker="s", s=(cell * 72 / ax.figure.dpi) ** 2, linewidths=0, zorder=1)
    ax.set_xlim(0, size[0])
    ax.set_ylim(size[1], 0)
    ax.set_aspect("equal")
    if colorbar and not point:
        cax = ax.inset_axes([1.03, 0.0, 0.04, 1.0])  # follows the image's box: as tall as the image
        cb = ax.figure.colorbar(mesh, cax=cax)
        cb.set_label("relevance / max", fontsize=FONT_SMALL)
        cb.ax.tick_params(labelsize=FONT_SMALL - 1)
        cb.solids.set_alpha(1)
    return mesh


def draw_multigrid(ax, image, relevance, cell_xy, grids, *, image_size: tuple[int, int], colorbar: bool = True):
    """A multi-grid map as one heatmap: relevance spread to pixel space (:mod:`creg.report.multigrid`),
    each grid that covers part of the image outlined (dotted) and named."""
    from matplotlib.patches import Rectangle  # lazy: matplotlib


    mesh = draw_heatmap(ax, image, spread_to_pixels(relevance, cell_xy, grids, image_size), None,
                        image_size=image_size, colorbar=colorbar)
    for name, (x0, y0, x1, y1) in outlines(cell_xy, grids, image_size):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=0.8, ls=":",
                               alpha=0.9, zorder=2))
        ax.text(x0 + 2, y0 + 2, name, color="white", fontsize=5, va="top", ha="left", zorder=2, clip_on=True)
    return mesh


def heatmap_colorbar(fig, rect: Sequence[float]) -> None:
    """One horizontal colour bar of the heatmaps' scale at ``rect`` (figure fraction: left, bottom,
    width, height), for figures with several heatmaps."""
    import matplotlib as mpl  # lazy: matplotlib

    cax = fig.add_axes(list(rect))
    cb = fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=HEATMAP_CMAP), cax=cax,
                      orientation="horizontal")
    cb.set_label("relevance / the map's maximum (dark: none)", fontsize=FONT_SMALL)
    cb.ax.tick_params(labelsize=FONT_SMALL - 1)


def _circle_visible(centre: tuple[float, float], radius: float, size: tuple[int, int] | None) -> bool:
    """Whether some of the circle's line lies inside the image (w, h)."""
    if size is None:
        return True
    w, h = size
    corners = [math.hypot(x - centre[0], y - centre[1]) for x in (0, w) for y in (0, h)]
    nearest = math.hypot(min(max(centre[0], 0), w) - centre[0], min(max(centre[1], 0), h) - centre[1])
    return nearest <= radius <= max(corners)


def _r_max_style() -> dict[str, Any]:
    """How r_max is drawn, in the scene and in the legend: a white dashed line outlined in black."""
    from matplotlib import patheffects  # lazy: matplotlib

    return dict(color="white", lw=1.4, ls=(0, (4, 3)),
                path_effects=[patheffects.Stroke(linewidth=3.0, foreground="black"), patheffects.Normal()])


def _place_labels(ax, labels: Sequence[tuple[str, Sequence[float], str]], obstacles: Sequence[Sequence[float]]) -> None:
    """Put each label (text, its box x0, y0, x1, y1, colour) beside its box where it overlaps least
    with the labels already placed, the other boxes and ``obstacles`` (x0, y0, x1, y1 in data
    coordinates: markers, arrow origins), and stays inside the axes."""
    from matplotlib.transforms import Bbox  # lazy: matplotlib

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    inv = ax.transData
    axes_box = ax.get_window_extent(renderer)

    def disp(box):
        (x0, y0), (x1, y1) = inv.transform([(box[0], box[1]), (box[2], box[3])])
        return Bbox.from_extents(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    def outside(a) -> float:
        inside = overlap(a, axes_box)
        return a.width * a.height - inside

    for old in getattr(ax, "_creg_label_texts", []):
        old.remove()
    ax._creg_labels = (list(labels), list(obstacles))
    ax._creg_label_texts = []
    fixed = [disp(o) for o in obstacles]
    placed: list = []
    boxes = [disp(b) for _, b, _ in labels]
    for i, (text, box, colour) in enumerate(labels):
        x0, y0, x1, y1 = box
        pad = 0.01 * (ax.get_xlim()[1] - ax.get_xlim()[0])
        candidates = [((x0, y0 - pad), "left", "bottom"), ((x1, y0 - pad), "right", "bottom"),
                      ((x0, y1 + pad), "left", "top"), ((x1, y1 + pad), "right", "top"),
                      ((x0 + pad, y0 + pad), "left", "top"), ((x1 - pad, y1 - pad), "right", "bottom")]
        t = ax.text(0, 0, text, color=colour, fontsize=FONT_SMALL, zorder=6, clip_on=True,
                    bbox=dict(facecolor="white", alpha=0.8, pad=1.2, edgecolor="none"))
        best, best_cost = None, math.inf
        for rank, (xy, ha, va) in enumerate(candidates):
            t.set_position(xy)
            t.set_ha(ha)
            t.set_va(va)
            ext = t.get_window_extent(renderer).expanded(1.15, 1.2)
            area = ext.width * ext.height or 1.0
            cost = 50 * outside(ext) / area + 10 * sum(overlap(ext, p) for p in placed) / area
            cost += 5 * sum(overlap(ext, o) for o in fixed) / area
            cost += 3 * sum(overlap(ext, b) for j, b in enumerate(boxes) if j != i) / area
            cost += 0.01 * rank  # ties: the first candidate (above the box, left-aligned)
            if cost < best_cost:
                best, best_cost = (xy, ha, va, ext), cost
        xy, ha, va, ext = best
        t.set_position(xy)
        t.set_ha(ha)
        t.set_va(va)
        placed.append(ext)
        ax._creg_label_texts.append(t)


def relayout_labels(fig) -> None:
    """Place the box labels of every scene of ``fig`` again, once the figure's layout is final (the
    overlaps are judged on the page)."""
    for ax in fig.axes:
        if getattr(ax, "_creg_labels", None):
            _place_labels(ax, *ax._creg_labels)


def draw_scene(ax, image, ref_box: Sequence[float], tgt_box: Sequence[float], *, ref_name: str = "A",
               tgt_name: str = "B", true_angle: float | None = None, peak_angle: float | None = None,
               title: str = "", legend: bool = False, relevance=None, cell_xy=None,
               image_size: tuple[int, int] | None = None, r_max: float | None = None,
               colorbar: bool = True, grids=None) -> bool:
    """The image (with the relevance heatmap when ``relevance`` is given), boxes A (orange) and
    B (blue) with their names placed where they hide least, the true direction (green) and peak
    (magenta) arrows, and r_max (white dashed, outlined) when given. Returns whether r_max is
    visible in the image (its legend entry is only wanted then). ``grids``: the
    :class:`creg.explain.grids.GridSpan` of a multi-grid map, drawn spread to pixel space
    with each tile outlined (:func:`draw_multigrid`)."""
    from matplotlib.lines import Line2D  # lazy: matplotlib
    from matplotlib.patches import Circle, Rectangle  # lazy: matplotlib

    size = image.size if image is not None else image_size
    true_angle, peak_angle, r_max = _finite_or_none(true_angle), _finite_or_none(peak_angle), _finite_or_none(r_max)
    obstacles = []
    if relevance is not None and grids and size is not None:
        draw_multigrid(ax, image, relevance, cell_xy, grids, image_size=size, colorbar=colorbar)
    elif relevance is not None:
        draw_heatmap(ax, image, relevance, cell_xy, image_size=size, colorbar=colorbar)
        r = np.asarray(relevance)
        if r.size == 1:  # the star marker
            xy = cell_xy_of(r, cell_xy, size or (1, 1)).reshape(-1)
            half = 0.04 * (size[0] if size else 1)
            obstacles.append((xy[0] - half, xy[1] - half, xy[0] + half, xy[1] + half))
    elif image is not None:
        ax.imshow(np.asarray(image))
    for box, colour in ((ref_box, REF_COLOUR), (tgt_box, TGT_COLOUR)):
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=2, zorder=3))
    a = ((ref_box[0] + ref_box[2]) / 2, (ref_box[1] + ref_box[3]) / 2)
    b = ((tgt_box[0] + tgt_box[2]) / 2, (tgt_box[1] + tgt_box[3]) / 2)
    d_ab = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1.0)
    shown = False
    if r_max:
        ax.add_patch(Circle(a, r_max, fill=False, zorder=2, **_r_max_style()))
        shown = _circle_visible(a, r_max, size)
    if true_angle is not None:
        _arrow(ax, a, true_angle, _fit_length(a, true_angle, d_ab, size), TRUE_COLOUR)
    if peak_angle is not None:  # the peak arrow stays inside the image (it may point off the edge)
        _arrow(ax, a, peak_angle, _fit_length(a, peak_angle, d_ab, size), PEAK_COLOUR)
    if size is not None:
        ax.set_xlim(0, size[0])
        ax.set_ylim(size[1], 0)
    else:
        ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=FONT)
    span = 0.02 * (size[0] if size else max(ref_box[2], tgt_box[2]))
    obstacles += [(p[0] - span, p[1] - span, p[0] + span, p[1] + span) for p in (a, b)]
    _place_labels(ax, [(f"A: {ref_name}", ref_box, REF_COLOUR), (f"B: {tgt_name}", tgt_box, TGT_COLOUR)], obstacles)
    if legend:
        ax.legend(handles=[Line2D([], [], color=TRUE_COLOUR, lw=2.2, label="true A→B"),
                           Line2D([], [], color=PEAK_COLOUR, lw=2.2, label="compass peak")],
                  loc="lower right", fontsize=FONT_SMALL, framealpha=0.8)
    return shown


def _legend_handles(r_max: bool = False):
    from matplotlib.lines import Line2D  # lazy: matplotlib

    handles = [Line2D([], [], color=TRUE_COLOUR, lw=2.2, label="true direction A→B (scene and rose)"),
               Line2D([], [], color=PEAK_COLOUR, lw=2.2, label="compass peak (scene and rose)")]
    if r_max:
        handles.append(Line2D([], [], label="r_max (radius of influence)", **_r_max_style()))
    return handles


def _dae_text(record: dict[str, Any]) -> str:
    dae = record.get("dae")
    return f"DAE {dae:.0f}°" if dae is not None else "DAE undefined"


def _vlm_text(record: dict[str, Any]) -> str:
    pred = record.get("pred")
    if not pred:
        return ""
    return f"VLM: {pred} {'✓' if record.get('correct') else '✗'}"


# -- one explained image ------------------------------------------------------------------------------

def _image_aspect(image, sample: dict[str, Any]) -> float:
    """Height / width of the sample's image (1 when unknown)."""
    size = image.size if image is not None else tuple(sample.get("image_size") or ())
    return size[1] / size[0] if len(size) == 2 and size[0] else 1.0


def _is_map(relevance) -> bool:
    """A heatmap to colour (not absent, not a one-cell point source)."""
    return relevance is not None and np.asarray(relevance).size > 1


def explanation_figure(image, sample: dict[str, Any], rows: Sequence[dict[str, Any]], *, title: str = "",
                       colours: dict[str, str] | None = None):
    """One image explained by several sources: per source a row, heatmap scene | compass rose.

    ``sample``: :meth:`creg.core.sample.Sample.summary`; each row: ``source``, ``record`` (a
    :class:`~creg.core.records.SampleRecord` dict), and optionally ``relevance`` ``(h, w)``,
    ``cell_xy`` ``(h, w, 2)`` and ``r_max``. The scene keeps the image's aspect ratio; one colour
    bar below serves every heatmap. Returns the matplotlib figure.
    """
    plt = pyplot()
    colours = colours or source_colours(r["source"] for r in rows)
    n = len(rows)
    scene_w = 4.6
    row_h = max(scene_w * min(_image_aspect(image, sample), 1.6), 3.2) + 0.6
    foot = 1.0
    fig = plt.figure(figsize=(9.0, row_h * n + foot + (0.8 if title else 0.2)))
    grid = fig.add_gridspec(n, 2, width_ratios=[scene_w, 3.6], left=0.02, right=0.98, top=1 - (0.95 if title else 0.3) / fig.get_figheight(),
                            bottom=foot / fig.get_figheight(), wspace=0.25, hspace=0.35)
    shown = False
    for i, row in enumerate(rows):
        rec = row["record"]
        ax = fig.add_subplot(grid[i, 0])
        shown |= draw_scene(ax, image, sample["ref"]["box"], sample["tgt"]["box"], ref_name=sample["ref"]["name"],
                            tgt_name=sample["tgt"]["name"], true_angle=rec["true_angle"], peak_angle=rec["peak_angle"],
                            relevance=row.get("relevance"), cell_xy=row.get("cell_xy"), r_max=row.get("r_max"),
                            image_size=tuple(sample.get("image_size") or ()) or None, colorbar=False, grids=row.get("grids"),
                            title=f"{row['source']}: relevance" if row.get("relevance") is not None else row["source"])
        pax = fig.add_subplot(grid[i, 1], projection="polar")
        names = sector_names(len(rec["compass"]))
        draw_compass(pax, rec["compass"], rec["true_angle"], rec["peak_angle"], colour=colours[row["source"]],
                     title=f"{row['source']}: P(θ_k), peak {names[rec['peak_sector']]}, {_dae_text(rec)}")
    if title:
        fig.suptitle(title, fontsize=FONT_TITLE, y=1 - 0.1 / fig.get_figheight(), va="top")
    h = fig.get_figheight()
    if any(_is_map(r.get("relevance")) for r in rows):
        heatmap_colorbar(fig, (0.08, 0.62 / h, 0.36, 0.12 / h))
    fig.legend(handles=_legend_handles(shown), loc="lower right", bbox_to_anchor=(0.98, 0.05 / h), ncol=1,
               fontsize=FONT_SMALL, frameon=False)
    relayout_labels(fig)
    return fig


# -- a run's figures ------------------------------------------------------------------------------------

def examples_figure(path: Path, items: Sequence[dict[str, Any]], title: str, *, colour: str = "#3182bd",
                    dpi: int = DEFAULT_DPI) -> Path:
    """One column per item (``label``, ``image`` or None, ``sample`` summary dict, ``record`` dict,
    optionally ``relevance``/``cell_xy``/``r_max``): the (heatmap) scene on top, the rose below.
    Scenes keep their images' aspect ratio; one colour bar below serves every heatmap."""
    plt = pyplot()
    n = len(items)
    col_w = 3.8
    aspect = max((_image_aspect(it.get("image"), it["sample"]) for it in items), default=1.0)
    scene_h = col_w * min(aspect, 1.6)
    foot = 1.3
    height = scene_h + 0.8 + 3.4 + foot + 0.4
    fig = plt.figure(figsize=(col_w * n + 0.4, height))
    grid = fig.add_gridspec(2, n, height_ratios=[scene_h + 0.8, 3.4], left=0.02, right=0.98, top=1 - 0.45 / height,
                            bottom=foot / height, wspace=0.15, hspace=0.25)
    shown = False
    for j, it in enumerate(items):
        s, r = it["sample"], it["record"]
        head = f"{it['label']}: {r['relation']}, {_dae_text(r)}"
        vlm = _vlm_text(r)
        ax = fig.add_subplot(grid[0, j])
        shown |= draw_scene(ax, it.get("image"), s["ref"]["box"], s["tgt"]["box"], ref_name=s["ref"]["name"],
                            tgt_name=s["tgt"]["name"], true_angle=r["true_angle"], peak_angle=r["peak_angle"],
                            title=head + (f"\n{vlm}" if vlm else ""), relevance=it.get("relevance"),
                            cell_xy=it.get("cell_xy"), r_max=it.get("r_max"), colorbar=False,
                            image_size=tuple(s.get("image_size") or ()) or None, grids=it.get("grids"))
        pax = fig.add_subplot(grid[1, j], projection="polar")
        draw_compass(pax, r["compass"], r["true_angle"], r["peak_angle"], colour=colour)
    fig.suptitle(f"{title}  (roses: P(θ_k) per sector)", fontsize=FONT_TITLE, y=1 - 0.08 / height, va="top")
    if any(_is_map(it.get("relevance")) for it in items):
        heatmap_colorbar(fig, (0.05, 0.55 / height, min(0.4, 2.6 / fig.get_figwidth()), 0.12 / height))
    fig.legend(handles=_legend_handles(shown), loc="lower right", bbox_to_anchor=(0.98, 0.1 / height), ncol=1,
               fontsize=FONT_SMALL, frameon=False)
    relayout_labels(fig)
    return save(fig, path, dpi=dpi)


def per_class_figure(path: Path, per_class: dict[str, Any], *, colours: dict[str, str] | None = None,
                     dpi: int = DEFAULT_DPI) -> Path:
    """(a) VLM accuracy per class (if the run has a model); (b) DAE per class and source as one
    marker per source and class (dashed: a random peak's DAE), one row of markers per class so that
    any number of sources stays legible."""
    plt = pyplot()

    acc = per_class.get("accuracy")
    sources = per_class["sources"]
    names = list(sources)
    colours = colours or source_colours(names)
    panels = 2 if acc else 1
    width_b = 5.2 + 0.12 * len(names)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * (panels - 1) + width_b, 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": ([4.2] if acc else []) + [width_b]})
    x = np.arange(len(RELATIONS))
    if acc:
        ax = axes[0, 0]
        vals = [acc[r]["accuracy"] if acc[r]["accuracy"] is not None else 0.0 for r in RELATIONS]
        ax.bar(x, vals, color="#6baed6")
        ax.axhline(per_class["chance"]["accuracy"], ls="--", color="grey")
        for xi, v, rel in zip(x, vals, RELATIONS):
            ax.text(xi, v + 0.02, f"{v:.2f}\n(n={acc[rel]['n']})", ha="center", fontsize=FONT_SMALL)
        ax.set_xticks(x, RELATIONS)
        ax.set_ylim(0, 1.18)
        ax.set_ylabel("VLM accuracy")
        ax.set_title("(a) VLM accuracy (dashed: chance 0.25)", fontsize=9)
    ax = axes[0, -1]
    spread = 0.8
    for i, name in enumerate(names):
        vals = np.array([sources[name][r]["dae"] if sources[name][r]["dae"] is not None else np.nan for r in RELATIONS])
        off = -spread / 2 + spread * (i + 0.5) / max(len(names), 1)
        cis = [sources[name][r].get("dae_ci") for r in RELATIONS]
        if any(ci is not None for ci in cis):  # 95% bootstrap CIs per class
            lo = np.array([v - ci[0] if ci is not None and v == v else 0.0 for v, ci in zip(vals, cis)])
            hi = np.array([ci[1] - v if ci is not None and v == v else 0.0 for v, ci in zip(vals, cis)])
            ax.errorbar(x + off, vals, yerr=[lo, hi], fmt="none", ecolor=colours[name], elinewidth=1.0, capsize=1.5,
                        alpha=0.8)
        ax.plot(x + off, vals, "o", color=colours[name], ms=7, label=name, mec="white", mew=0.6)
    for xi in x[:-1]:
        ax.axvline(xi + 0.5, color="#dddddd", lw=0.8)
    ax.axhline(per_class["chance"]["dae"], ls="--", color="grey")
    ax.set_xticks(x, RELATIONS)
    ax.set_xlim(-0.5, len(RELATIONS) - 0.5)
    ax.set_ylim(0, 180)
    ax.set_ylabel("DAE (deg, lower is better)")
    ax.set_title(f"(b) DAE per class, 95% CIs (dashed: random peak, {per_class['chance']['dae']:.0f}°)", fontsize=9)
    ax.legend(fontsize=FONT_SMALL, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=1 if len(names) <= 14 else 2)
    fig.tight_layout()
    return save(fig, path, dpi=dpi)


def cos_figure(path: Path, summary: dict[str, Any], *, colours: dict[str, str] | None = None,
               dpi: int = DEFAULT_DPI) -> Path:
    """Causal occlusion (Eq. 8) as a forest plot, one row per source (+ the model-level true-direction
    row): (a) COS of the peak sector read the paper's way (against its opposite), against the
    area-matched control (as many pixels hidden in another sector) and against the adjacent
    sectors, with 95% bootstrap CIs; (b) mean Delta S of the occluded peak, its opposite, the
    area-matched control and the adjacent sectors. Runs scored before the area-matched control
    existed have no triangle."""
    plt = pyplot()
    names = [n for n, s in summary["sources"].items() if "cos" in s]
    colours = colours or source_colours(summary["sources"])
    rows = names + ["true direction"]
    height = 1.4 + 0.32 * len(rows)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(9.5, height), sharey=True)
    y = np.arange(len(rows))[::-1].astype(float)

    def point(ax, yy, stat, **kw):
        m, (lo, hi) = stat["mean"], stat["ci"]
        ax.errorbar([m], [yy], xerr=[[m - lo], [hi - m]], fmt=kw.pop("fmt", "o"), capsize=2, ms=5, **kw)

    first = summary["sources"][names[0]]["cos"]
    for yy, name in zip(y, names):
        c = summary["sources"][name]["cos"]
        point(ax_a, yy + 0.2, c["peak"]["cos"], color=colours[name])
        point(ax_a, yy - 0.2, c["adjacent"]["cos"], color=colours[name], fmt="s", mfc="white")
        point(ax_b, yy + 0.24, c["peak"]["delta"], color=PEAK_COLOUR)
        point(ax_b, yy + 0.08, c["peak"]["delta_opp"], color="#f4a6d7")
        point(ax_b, yy - 0.24, c["adjacent"]["delta"], color="#969696", fmt="s")
        if c.get("area_matched"):
            point(ax_a, yy, c["area_matched"]["cos"], color=colours[name], fmt="^")
            point(ax_b, yy - 0.08, c["area_matched"]["delta"], color="#6a51a3", fmt="^")
    t = first["true"]
    point(ax_a, y[-1], t["cos"], color=TRUE_COLOUR, fmt="D")
    point(ax_b, y[-1] + 0.12, t["delta"], color=TRUE_COLOUR, fmt="D")
    point(ax_b, y[-1] - 0.12, t["delta_opp"], color="#a1d99b", fmt="D")
    for ax in (ax_a, ax_b):
        ax.axvline(0, color="black", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        for yy in y[:-1]:
            ax.axhline(yy - 0.5, color="#eeeeee", lw=0.6)
    ax_a.set_yticks(y, rows, fontsize=8)
    for label, name in zip(ax_a.get_yticklabels(), rows):
        label.set_color(colours.get(name, TRUE_COLOUR))
    ax_a.set_xlabel("COS = ΔS_compared − ΔS_peak (> 0: the peak sector matters more)", fontsize=8)
    ax_a.set_title("(a) COS, peak compared with:\n● opposite (paper)   ▲ area-matched   □ adjacent", fontsize=8)
    ax_b.set_xlabel("ΔS = log p_occ(gt) − log p_0(gt)", fontsize=8)
    ax_b.set_title("(b) ΔS of hiding: the peak (magenta), its opposite (pink),\nthe area-matched control (purple ▲), the adjacent sectors (grey)", fontsize=8)
    fig.suptitle(f"Causal occlusion ({first['op']}), 95% bootstrap CIs; green: the true direction's sector", fontsize=9)
    fig.tight_layout()
    return save(fig, path, dpi=dpi)


def report_figures(out_dir: Path, *, summary: dict[str, Any], per_class: dict[str, Any],
                   examples: dict[str, list[dict[str, Any]]], fmt: str = "png", dpi: int = DEFAULT_DPI) -> dict[str, Path]:
    """Every figure of a report in ``out_dir``, as ``fmt``; returns {figure name: path}.

    ``examples``: source -> items of :func:`examples_figure` (best / median / worst sample).
    """
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    colours = source_colours(summary["sources"])
    made: dict[str, Path] = {"per_class": per_class_figure(out_dir / f"per_class.{fmt}", per_class, colours=colours, dpi=dpi)}
    if any("cos" in s for s in summary["sources"].values()):
        made["cos"] = cos_figure(out_dir / f"cos.{fmt}", summary, colours=colours, dpi=dpi)
    for name, items in examples.items():
        if items:
            made[f"examples_{name}"] = examples_figure(
                out_dir / f"examples_{name}.{fmt}", items, f"{name}: best / median / worst sample by DAE",
                colour=colours.get(name, PALETTE[0]), dpi=dpi)
    return made


def save(fig, path: Path, *, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: png, pdf or svg) and close it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r} ({path}): choose one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format=fmt, bbox_inches="tight",
                metadata={"Software": None} if fmt == "png" else ({"Date": None} if fmt == "svg" else None))
    plt.close(fig)
    return path


_save = save  # 0.1 name
