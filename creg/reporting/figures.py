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

Colours: :func:`source_colours` gives each source a fixed colour from a 20-colour palette by its
position in the run's source list; every figure of a report uses the same mapping.

Angles follow the paper (0 deg = right, 90 deg = up); image y grows downwards.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

TRUE_COLOUR = "#d62728"  # the rose's true-direction arrow (Fig. 3: red)
SCENE_TRUE_COLOUR = "#2ca02c"  # the scene's true-direction arrow (Fig. 5: green)
PEAK_COLOUR = "#c2188b"
REF_COLOUR = "#ff7f0e"
TGT_COLOUR = "#1f77b4"
HEATMAP_CMAP = "inferno"
#: Opacity of the relevance colour over the image at the map's maximum (0: image only, 1: map only);
#: a cell's opacity grows with its relevance from HEATMAP_ALPHA / 4, so the image shows through
#: where there is no evidence.
HEATMAP_ALPHA = 0.75

#: 20 colours, pairwise distinct (CIELAB distance >= 27, as far apart as tab10's own closest pair;
#: tests/test_figures.py checks > 20) and visible on white (L* 25-80): matplotlib's tab10, then ten
#: colours chosen greedily to be as far as possible from all before them, ordered so that the
#: 11th and 12th sources (the usual controls) get hues that tab10 has not (plum, tan).
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#770055", "#eebb88", "#00dd00", "#4411aa", "#886600", "#00ddaa", "#ff22ff", "#224400", "#ff0077", "#0000ff",
)

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
        import matplotlib
    except ImportError as e:
        raise PlotsUnavailable("figures need matplotlib: pip install matplotlib") from e
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=True)
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def source_colours(names: Iterable[str]) -> dict[str, str]:
    """A fixed colour per source by its position in ``names`` (the run's source order); after 20
    sources the palette repeats."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(names))}


def sector_names(k: int) -> list[str]:
    """Names of the K sectors: compass points for K = 4, 8 and 16, centre angles otherwise."""
    if k == 16:
        return ["E", "ENE", "NE", "NNE", "N", "NNW", "NW", "WNW", "W", "WSW", "SW", "SSW", "S", "SSE", "SE", "ESE"]
    if k == 8:
        return ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]
    if k == 4:
        return ["E", "N", "W", "S"]
    return [f"{i * 360 / k:.0f}°" for i in range(k)]


# -- building blocks ------------------------------------------------------------------------------

def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def draw_compass(ax, probs: Sequence[float], true_angle: float | None, peak_angle: float | None = None,
                 title: str = "", colour: str = "#3182bd") -> None:
    """A compass rose on a polar ``ax`` (theta 0 = right, counter-clockwise = up), with a radial
    probability scale."""
    from matplotlib.ticker import MaxNLocator

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
    ax.set_xticklabels(sector_names(k), fontsize=7)
    ticks = [t for t in MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10]).tick_values(0, top) if 0 < t < top]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{t:.2g}" for t in ticks], fontsize=6, color="#555555")
    ax.set_rlabel_position(360.0 / k / 2 if k > 1 else 22.5)  # between the first two sectors
    ax.grid(alpha=0.3)
    if peak_angle is not None:
        ax.plot([math.radians(peak_angle)] * 2, [0, top * 0.95], color=PEAK_COLOUR, lw=1.5)
    if true_angle is not None:
        ax.annotate("", xy=(math.radians(true_angle), top * 0.95), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=TRUE_COLOUR, lw=2))
    if title:
        ax.set_title(title, fontsize=8, pad=12)


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
    """``(h, w, 2)`` pixel centres of a relevance grid: ``cell_xy`` or the uniform grid (creg.compass)."""
    if cell_xy is not None:
        return np.asarray(cell_xy, dtype=np.float64)
    h, w = relevance.shape
    width, height = image_size
    xs = (np.arange(w) + 0.5) * (width / w)
    ys = (np.arange(h) + 0.5) * (height / h)
    return np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1)


def draw_heatmap(ax, image, relevance, cell_xy=None, *, image_size: tuple[int, int] | None = None,
                 colorbar: bool = True, alpha: float = HEATMAP_ALPHA):
    """The relevance map blended over ``image`` on ``ax``; returns the mappable.

    ``relevance``: ``(h, w)``; ``cell_xy``: ``(h, w, 2)`` pixel centres (x, y) in the original
    image, or None for a grid that tiles the image uniformly. Each cell is drawn over its own pixel
    extent (edges halfway between neighbouring centres), so a model's crop or resize shows where it
    really looked. Values are divided by the map's maximum (colour bar: 0 .. 1).
    """
    r = np.nan_to_num(np.asarray(relevance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    if image is not None:
        ax.imshow(np.asarray(image), zorder=0)
        size = image.size
    else:
        size = image_size or (r.shape[1], r.shape[0])
    xy = cell_xy_of(r, cell_xy, size)
    top = float(r.max())
    norm = r / top if top > 0 else r
    xs, ys = xy[0, :, 0], xy[:, 0, 1]
    separable = np.allclose(xy[..., 0], xs[None, :]) and np.allclose(xy[..., 1], ys[:, None])
    opacity = alpha * (0.25 + 0.75 * norm) if alpha < 1 else np.ones_like(norm)
    if r.size == 1:  # a point source (oracle, random direction): all relevance at one pixel
        mesh = ax.scatter(xy[..., 0].ravel(), xy[..., 1].ravel(), c=norm.ravel(), cmap=HEATMAP_CMAP, vmin=0, vmax=1,
                          marker="*", s=260, edgecolors="black", linewidths=0.8, zorder=5)
    elif separable and np.all(np.diff(xs) > 0) and np.all(np.diff(ys) > 0):
        mesh = ax.pcolormesh(_edges(xs, 0, size[0]), _edges(ys, 0, size[1]), norm, cmap=HEATMAP_CMAP,
                             vmin=0, vmax=1, shading="flat", zorder=1)
        mesh.set_alpha(opacity)
    else:  # an irregular layout (several grids as one row of cells): one square marker per cell, sized so
        # that the cells would tile the image
        cell = math.sqrt(size[0] * size[1] / r.size) * 0.95 * (ax.get_window_extent().width / size[0])
        mesh = ax.scatter(xy[..., 0].ravel(), xy[..., 1].ravel(), c=norm.ravel(), cmap=HEATMAP_CMAP, vmin=0, vmax=1,
                          alpha=opacity.ravel(), marker="s", s=(cell * 72 / ax.figure.dpi) ** 2, linewidths=0, zorder=1)
    ax.set_xlim(0, size[0])
    ax.set_ylim(size[1], 0)
    if colorbar:
        cb = ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.02)
        cb.set_label("relevance / max", fontsize=7)
        cb.ax.tick_params(labelsize=6)
        cb.solids.set_alpha(1)
    return mesh


def draw_multigrid(ax, image, relevance, cell_xy, grids, *, image_size: tuple[int, int], colorbar: bool = True):
    """A multi-grid map as one heatmap: relevance spread to pixel space (:mod:`creg.reporting.multigrid`),
    each grid that covers part of the image outlined (dotted) and named."""
    from matplotlib.patches import Rectangle

    from .multigrid import outlines, spread_to_pixels

    mesh = draw_heatmap(ax, image, spread_to_pixels(relevance, cell_xy, grids, image_size), None,
                        image_size=image_size, colorbar=colorbar)
    for name, (x0, y0, x1, y1) in outlines(cell_xy, grids, image_size):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=0.8, ls=":",
                               alpha=0.9, zorder=2))
        ax.text(x0 + 2, y0 + 2, name, color="white", fontsize=5, va="top", ha="left", zorder=2, clip_on=True)
    return mesh


def draw_scene(ax, image, ref_box: Sequence[float], tgt_box: Sequence[float], *, ref_name: str = "A",
               tgt_name: str = "B", true_angle: float | None = None, peak_angle: float | None = None,
               title: str = "", legend: bool = False, relevance=None, cell_xy=None,
               image_size: tuple[int, int] | None = None, r_max: float | None = None,
               colorbar: bool = True, grids=None) -> None:
    """The image (with the relevance heatmap when ``relevance`` is given), boxes A (orange) and
    B (blue), true direction (green) and peak (magenta) arrows, and r_max (dashed) when given.
    ``grids``: the :class:`creg.reporting.multigrid.GridSpan` of a multi-grid map, drawn spread to
    pixel space with each tile outlined (:func:`draw_multigrid`)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, Rectangle

    size = image.size if image is not None else image_size
    true_angle, peak_angle, r_max = _finite_or_none(true_angle), _finite_or_none(peak_angle), _finite_or_none(r_max)
    if relevance is not None and grids and size is not None:
        draw_multigrid(ax, image, relevance, cell_xy, grids, image_size=size, colorbar=colorbar)
    elif relevance is not None:
        draw_heatmap(ax, image, relevance, cell_xy, image_size=size, colorbar=colorbar)
    elif image is not None:
        ax.imshow(np.asarray(image))
    for box, colour, name in ((ref_box, REF_COLOUR, f"A: {ref_name}"), (tgt_box, TGT_COLOUR, f"B: {tgt_name}")):
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=2, zorder=3))
        # the label grows away from the nearer image edges, so that it stays inside the image
        right = size is not None and (x0 + x1) / 2 > size[0] / 2
        below = size is not None and y0 < 0.12 * size[1]
        ax.text(x1 if right else x0, y1 + 2 if below else y0 - 2, name, color=colour, fontsize=7, zorder=4,
                ha="right" if right else "left", va="top" if below else "bottom", clip_on=True,
                bbox=dict(facecolor="white", alpha=0.75, pad=1, edgecolor="none"))
    a = ((ref_box[0] + ref_box[2]) / 2, (ref_box[1] + ref_box[3]) / 2)
    b = ((tgt_box[0] + tgt_box[2]) / 2, (tgt_box[1] + tgt_box[3]) / 2)
    d_ab = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1.0)
    if r_max:
        ax.add_patch(Circle(a, r_max, fill=False, edgecolor="white", lw=1, ls="--", alpha=0.8, zorder=2))
    if true_angle is not None:
        _arrow(ax, a, true_angle, _fit_length(a, true_angle, d_ab, size), SCENE_TRUE_COLOUR)
    if peak_angle is not None:  # the peak arrow stays inside the image (it may point off the edge)
        _arrow(ax, a, peak_angle, _fit_length(a, peak_angle, d_ab, size), PEAK_COLOUR)
    if size is not None:
        ax.set_xlim(0, size[0])
        ax.set_ylim(size[1], 0)
    else:
        ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(handles=[Line2D([], [], color=SCENE_TRUE_COLOUR, lw=2.2, label="true A→B"),
                           Line2D([], [], color=PEAK_COLOUR, lw=2.2, label="compass peak")],
                  loc="lower right", fontsize=6, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=8)


def _legend_handles(heatmap: bool = False):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=SCENE_TRUE_COLOUR, lw=2.2, label="scene: true A→B"),
               Line2D([], [], color=PEAK_COLOUR, lw=2.2, label="compass peak (scene and rose)"),
               Line2D([], [], color=TRUE_COLOUR, lw=2.2, label="rose: true direction")]
    if heatmap:
        handles.append(Line2D([], [], color="grey", lw=1, ls="--", label="r_max (radius of influence)"))
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

def explanation_figure(image, sample: dict[str, Any], rows: Sequence[dict[str, Any]], *, title: str = "",
                       colours: dict[str, str] | None = None):
    """One image explained by several sources: per source a row, heatmap scene | compass rose.

    ``sample``: :meth:`creg.sample.Sample.summary`; each row: ``source``, ``record`` (a
    :class:`~creg.records.SampleRecord` dict), and optionally ``relevance`` ``(h, w)``,
    ``cell_xy`` ``(h, w, 2)`` and ``r_max``. Returns the matplotlib figure.
    """
    plt = pyplot()
    colours = colours or source_colours(r["source"] for r in rows)
    n = len(rows)
    fig = plt.figure(figsize=(8.0, 3.6 * n + 0.7))
    for i, row in enumerate(rows):
        rec = row["record"]
        ax = fig.add_subplot(n, 2, 2 * i + 1)
        draw_scene(ax, image, sample["ref"]["box"], sample["tgt"]["box"], ref_name=sample["ref"]["name"],
                   tgt_name=sample["tgt"]["name"], true_angle=rec["true_angle"], peak_angle=rec["peak_angle"],
                   relevance=row.get("relevance"), cell_xy=row.get("cell_xy"), r_max=row.get("r_max"),
                   image_size=tuple(sample.get("image_size") or ()) or None, grids=row.get("grids"),
                   title=f"{row['source']}: relevance" if row.get("relevance") is not None else row["source"])
        pax = fig.add_subplot(n, 2, 2 * i + 2, projection="polar")
        names = sector_names(len(rec["compass"]))
        draw_compass(pax, rec["compass"], rec["true_angle"], rec["peak_angle"], colour=colours[row["source"]],
                     title=f"{row['source']}: P(θ_k), peak {names[rec['peak_sector']]}, {_dae_text(rec)}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.legend(handles=_legend_handles(any(r.get("r_max") for r in rows)), loc="lower center", ncol=2,
               fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.45 / (3.6 * n + 0.7), 1, 1))
    return fig


def explain_figure(path: Path, image, sample: dict[str, Any], record: dict[str, Any], title: str = "", *,
                   dpi: int = DEFAULT_DPI, **row: Any) -> Path:
    """One explained image, one source (kept for 0.1 callers): see :func:`explanation_figure`."""
    fig = explanation_figure(image, sample, [{"source": record.get("source", ""), "record": record, **row}], title=title)
    return save(fig, path, dpi=dpi)


# -- a run's figures ------------------------------------------------------------------------------------

def examples_figure(path: Path, items: Sequence[dict[str, Any]], title: str, *, colour: str = "#3182bd",
                    dpi: int = DEFAULT_DPI) -> Path:
    """One column per item (``label``, ``image`` or None, ``sample`` summary dict, ``record`` dict,
    optionally ``relevance``/``cell_xy``/``r_max``): the (heatmap) scene on top, the rose below."""
    plt = pyplot()
    n = len(items)
    fig = plt.figure(figsize=(3.5 * n, 7.0))
    heat = any(it.get("relevance") is not None for it in items)
    for j, it in enumerate(items):
        s, r = it["sample"], it["record"]
        head = f"{it['label']}: {r['relation']}, {_dae_text(r)}"
        vlm = _vlm_text(r)
        ax = fig.add_subplot(2, n, j + 1)
        draw_scene(ax, it.get("image"), s["ref"]["box"], s["tgt"]["box"], ref_name=s["ref"]["name"],
                   tgt_name=s["tgt"]["name"], true_angle=r["true_angle"], peak_angle=r["peak_angle"],
                   title=head + (f"\n{vlm}" if vlm else ""), relevance=it.get("relevance"), cell_xy=it.get("cell_xy"),
                   r_max=it.get("r_max"), image_size=tuple(s.get("image_size") or ()) or None, grids=it.get("grids"))
        pax = fig.add_subplot(2, n, n + j + 1, projection="polar")
        draw_compass(pax, r["compass"], r["true_angle"], r["peak_angle"], colour=colour)
    fig.suptitle(f"{title}  (roses: P(θ_k) per sector)", fontsize=10)
    fig.legend(handles=_legend_handles(heat), loc="lower center", ncol=4 if heat else 3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, path, dpi=dpi)


def per_class_figure(path: Path, per_class: dict[str, Any], *, colours: dict[str, str] | None = None,
                     dpi: int = DEFAULT_DPI) -> Path:
    """(a) VLM accuracy per class (if the run has a model); (b) DAE per class and source as one
    marker per source and class (dashed: a random peak's DAE), one row of markers per class so that
    any number of sources stays legible."""
    plt = pyplot()
    from ..sample import RELATIONS

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
            ax.text(xi, v + 0.02, f"{v:.2f}\n(n={acc[rel]['n']})", ha="center", fontsize=7)
        ax.set_xticks(x, RELATIONS)
        ax.set_ylim(0, 1.18)
        ax.set_ylabel("VLM accuracy")
        ax.set_title("(a) VLM accuracy (dashed: chance 0.25)", fontsize=9)
    ax = axes[0, -1]
    spread = 0.8
    for i, name in enumerate(names):
        vals = [sources[name][r]["dae"] if sources[name][r]["dae"] is not None else np.nan for r in RELATIONS]
        off = -spread / 2 + spread * (i + 0.5) / max(len(names), 1)
        ax.plot(x + off, vals, "o", color=colours[name], ms=7, label=name, mec="white", mew=0.6)
    for xi in x[:-1]:
        ax.axvline(xi + 0.5, color="#dddddd", lw=0.8)
    ax.axhline(per_class["chance"]["dae"], ls="--", color="grey")
    ax.set_xticks(x, RELATIONS)
    ax.set_xlim(-0.5, len(RELATIONS) - 0.5)
    ax.set_ylim(0, 180)
    ax.set_ylabel("DAE (deg, lower is better)")
    ax.set_title(f"(b) DAE per class (dashed: random peak, {per_class['chance']['dae']:.0f}°)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=1 if len(names) <= 14 else 2)
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
    point(ax_a, y[-1], t["cos"], color="#2ca02c", fmt="D")
    point(ax_b, y[-1] + 0.12, t["delta"], color="#2ca02c", fmt="D")
    point(ax_b, y[-1] - 0.12, t["delta_opp"], color="#a1d99b", fmt="D")
    for ax in (ax_a, ax_b):
        ax.axvline(0, color="black", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        for yy in y[:-1]:
            ax.axhline(yy - 0.5, color="#eeeeee", lw=0.6)
    ax_a.set_yticks(y, rows, fontsize=8)
    for label, name in zip(ax_a.get_yticklabels(), rows):
        label.set_color(colours.get(name, "#2ca02c"))
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
    import matplotlib.pyplot as plt

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
