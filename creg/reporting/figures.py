"""Figures of a run and of one explained image (matplotlib: ``pip install 'creg[plots]'``).

* :func:`draw_compass` -- a compass rose: polar bars of P(theta_k) at the sector centres, the
  true direction A -> B as a red arrow, the evidence peak as a dark line (paper Fig. 3).
* :func:`draw_scene` -- the image with A's and B's boxes, the true direction from A's centre as a
  green arrow and the compass peak as a magenta arrow, both of length d_AB (Fig. 5).
* :func:`examples_figure` -- scenes above roses for selected samples of one source.
* :func:`per_class_figure` -- VLM accuracy and DAE per relation class, dashed chance lines (Fig. 4).
* :func:`cos_figure` -- mean Delta S of the occluded peak / opposite / adjacent sectors and of the
  true / opposite sectors per source, with 95% bootstrap CIs (Eq. 8).

Angles follow the paper (0 deg = right, 90 deg = up); image y grows downwards.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TRUE_COLOUR = "#d62728"  # the rose's true-direction arrow (Fig. 3: red)
SCENE_TRUE_COLOUR = "#2ca02c"  # the scene's true-direction arrow (Fig. 5: green)
PEAK_COLOUR = "#c2188b"
REF_COLOUR = "#ff7f0e"
TGT_COLOUR = "#1f77b4"


class PlotsUnavailable(ImportError):
    """matplotlib is not installed."""


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or a clear error."""
    try:
        import matplotlib
    except ImportError as e:
        raise PlotsUnavailable("figures need matplotlib: pip install 'creg[plots]'") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def sector_names(k: int) -> list[str]:
    """Names of the K sectors: compass points for K = 4 and 8, centre angles otherwise."""
    if k == 8:
        return ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]
    if k == 4:
        return ["E", "N", "W", "S"]
    return [f"{i * 360 / k:.0f}°" for i in range(k)]


def draw_compass(ax, probs: Sequence[float], true_angle: float | None, peak_angle: float | None = None,
                 title: str = "") -> None:
    """A compass rose on a polar ``ax`` (theta 0 = right, counter-clockwise = up)."""
    p = np.asarray(probs, dtype=np.float64)
    k = p.size
    centres = np.deg2rad(np.arange(k) * 360.0 / k)
    top = max(float(p.max()), 1e-9) * 1.15
    ax.bar(centres, p, width=2 * np.pi / k * 0.92, color="#9ecae1", edgecolor="#3182bd", linewidth=0.8)
    ax.set_ylim(0, top)
    ax.set_xticks(centres)
    ax.set_xticklabels(sector_names(k), fontsize=7)
    ax.set_yticklabels([])
    ax.grid(alpha=0.3)
    if peak_angle is not None:
        ax.plot([math.radians(peak_angle)] * 2, [0, top * 0.95], color=PEAK_COLOUR, lw=1.5)
    if true_angle is not None:
        ax.annotate("", xy=(math.radians(true_angle), top * 0.95), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=TRUE_COLOUR, lw=2))
    if title:
        ax.set_title(title, fontsize=8, pad=10)


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


def _arrow(ax, start: tuple[float, float], angle: float, length: float, colour: str, label: str) -> None:
    dx, dy = length * math.cos(math.radians(angle)), -length * math.sin(math.radians(angle))
    ax.annotate("", xy=(start[0] + dx, start[1] + dy), xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.2, mutation_scale=14))
    ax.plot([], [], color=colour, lw=2.2, label=label)


def draw_scene(ax, image, ref_box: Sequence[float], tgt_box: Sequence[float], *, ref_name: str = "A",
               tgt_name: str = "B", true_angle: float | None = None, peak_angle: float | None = None,
               title: str = "", legend: bool = True) -> None:
    """The image with boxes A (orange) and B (blue), true direction (green) and peak (magenta) arrows."""
    from matplotlib.patches import Rectangle

    if image is not None:
        ax.imshow(np.asarray(image))
    for box, colour, name in ((ref_box, REF_COLOUR, f"A: {ref_name}"), (tgt_box, TGT_COLOUR, f"B: {tgt_name}")):
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=2))
        ax.text(x0, y0 - 2, name, color=colour, fontsize=7, va="bottom",
                bbox=dict(facecolor="white", alpha=0.7, pad=1, edgecolor="none"))
    a = ((ref_box[0] + ref_box[2]) / 2, (ref_box[1] + ref_box[3]) / 2)
    b = ((tgt_box[0] + tgt_box[2]) / 2, (tgt_box[1] + tgt_box[3]) / 2)
    d_ab = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1.0)
    size = image.size if image is not None else None
    if true_angle is not None:
        _arrow(ax, a, true_angle, _fit_length(a, true_angle, d_ab, size), SCENE_TRUE_COLOUR, "true A→B")
    if peak_angle is not None:  # the peak arrow stays inside the image (it may point off the edge)
        _arrow(ax, a, peak_angle, _fit_length(a, peak_angle, d_ab, size), PEAK_COLOUR, "compass peak")
    if image is not None:
        w, h = image.size
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
    else:
        ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(loc="lower right", fontsize=6, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=8)


def examples_figure(path: Path, items: Sequence[dict[str, Any]], title: str) -> Path:
    """One column per item (``label``, ``image`` or None, ``sample`` summary dict, ``record`` dict):
    the scene on top, the compass rose below."""
    plt = pyplot()
    n = len(items)
    fig = plt.figure(figsize=(3.2 * n, 6.6))
    for j, it in enumerate(items):
        s, r = it["sample"], it["record"]
        dae = r.get("dae")
        head = f"{it['label']}: {s['id']}\n{r['relation']}, DAE {dae:.0f}°" if dae is not None else f"{it['label']}: {s['id']}"
        if r.get("pred"):
            head += f", VLM says {r['pred']}"
        ax = fig.add_subplot(2, n, j + 1)
        draw_scene(ax, it["image"], s["ref"]["box"], s["tgt"]["box"], ref_name=s["ref"]["name"], tgt_name=s["tgt"]["name"],
                   true_angle=r["true_angle"], peak_angle=r["peak_angle"], title=head, legend=False)
        pax = fig.add_subplot(2, n, n + j + 1, projection="polar")
        draw_compass(pax, r["compass"], r["true_angle"], r["peak_angle"])
    fig.suptitle(title, fontsize=10)
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path)


def _legend_handles():
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=SCENE_TRUE_COLOUR, lw=2.2, label="scene: true A→B"),
            Line2D([], [], color=PEAK_COLOUR, lw=2.2, label="compass peak (scene and rose)"),
            Line2D([], [], color=TRUE_COLOUR, lw=2.2, label="rose: true direction")]


def per_class_figure(path: Path, per_class: dict[str, Any]) -> Path:
    """(a) VLM accuracy per class (if the run has a model), (b) DAE per class and source; dashed
    lines: chance (accuracy 0.25, DAE of a random peak)."""
    plt = pyplot()
    from ..sample import RELATIONS

    acc = per_class.get("accuracy")
    sources = per_class["sources"]
    panels = 2 if acc else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 4.0), squeeze=False)
    x = np.arange(len(RELATIONS))
    if acc:
        ax = axes[0, 0]
        vals = [acc[r]["accuracy"] if acc[r]["accuracy"] is not None else 0.0 for r in RELATIONS]
        ax.bar(x, vals, color="#6baed6")
        ax.axhline(per_class["chance"]["accuracy"], ls="--", color="grey", label="chance (0.25)")
        for xi, v, rel in zip(x, vals, RELATIONS):
            ax.text(xi, v + 0.02, f"{v:.2f}\n(n={acc[rel]['n']})", ha="center", fontsize=7)
        ax.set_xticks(x, RELATIONS)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("VLM accuracy")
        ax.set_title("(a) VLM accuracy per class (dashed: chance 0.25)", fontsize=9)
    ax = axes[0, -1]
    names = list(sources)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        vals = [sources[name][r]["dae"] if sources[name][r]["dae"] is not None else np.nan for r in RELATIONS]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=name)
    ax.axhline(per_class["chance"]["dae"], ls="--", color="grey")
    ax.set_xticks(x, RELATIONS)
    ax.set_ylim(0, 180)
    ax.set_ylabel("DAE (deg, lower is better)")
    ax.set_title(f"(b) DAE per class (dashed: random peak, {per_class['chance']['dae']:.0f}°)", fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(names), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def cos_figure(path: Path, summary: dict[str, Any]) -> Path:
    """Mean Delta S (Eq. 8) per source for the occluded sectors, with 95% bootstrap CIs."""
    plt = pyplot()
    names = [n for n, s in summary["sources"].items() if "cos" in s]
    bars = [("peak", "delta", "peak sector", "#c2188b"), ("peak", "delta_opp", "opposite of peak", "#f4a6d7"),
            ("adjacent", "delta", "adjacent to peak", "#bdbdbd")]
    fig, ax = plt.subplots(figsize=(3.4 + 1.5 * (len(names) + 1), 3.6))
    x = np.arange(len(names) + 1)
    width = 0.8 / len(bars)
    for i, (reading, key, label, colour) in enumerate(bars):
        stats = [summary["sources"][n]["cos"][reading][key] for n in names]
        means = np.array([s["mean"] for s in stats], dtype=float)
        err = np.array([[m - s["ci"][0], s["ci"][1] - m] for m, s in zip(means, stats)]).T
        ax.bar(x[:-1] - 0.4 + width * (i + 0.5), means, width, yerr=err, capsize=2, color=colour, label=label)
    true = summary["sources"][names[0]]["cos"]["true"]
    for i, (key, colour, label) in enumerate((("delta", "#2ca02c", "true sector"), ("delta_opp", "#a1d99b", "opposite of true"))):
        s = true[key]
        ax.bar(x[-1] - 0.4 + width * (i + 0.5), s["mean"], width, yerr=[[s["mean"] - s["ci"][0]], [s["ci"][1] - s["mean"]]],
               capsize=2, color=colour, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"{n}\nCOS {summary['sources'][n]['cos']['peak']['cos']['mean']:+.3f}" for n in names]
                  + [f"true direction\nCOS {true['cos']['mean']:+.3f}"], fontsize=7)
    ax.set_ylabel("ΔS = log p_occ(gt) − log p_0(gt)")
    op = summary["sources"][names[0]]["cos"]["op"]
    ax.set_title(f"Causal occlusion ({op}): more negative = occlusion hurts more", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def explain_figure(path: Path, image, sample: dict[str, Any], record: dict[str, Any], title: str = "") -> Path:
    """One explained image: the scene and its compass rose side by side."""
    plt = pyplot()
    fig = plt.figure(figsize=(7.6, 3.8))
    ax = fig.add_subplot(1, 2, 1)
    draw_scene(ax, image, sample["ref"]["box"], sample["tgt"]["box"], ref_name=sample["ref"]["name"],
               tgt_name=sample["tgt"]["name"], true_angle=record["true_angle"], peak_angle=record["peak_angle"], legend=False)
    pax = fig.add_subplot(1, 2, 2, projection="polar")
    draw_compass(pax, record["compass"], record["true_angle"], record["peak_angle"])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
