"""Several runs as figures and one HTML page (``creg report RUN1 RUN2 ...``, after :mod:`creg.report.compare`).

* :func:`model_name` -- what a run's model is called in tables: the hub id or the preset, never a
  local path (a local checkpoint is named by its folder).
* :func:`forest_figure` -- DAE and EA with their 95% bootstrap CIs, one row per source, one marker
  per run (its shape names the run; the colour is the source's, as in every figure).
* :func:`comparison_html` -- the comparison as one self-contained page: the runs, the forest plot,
  one table per metric, the paired tests. Every text from the runs (labels, names, prompts) is
  escaped and never becomes markup or a link; the figure is a data URI; a Content-Security-Policy
  forbids every fetch.
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from pathlib import Path
from typing import Any

from creg.store import write_grid_artifact
from creg.summary.groups import format_number, format_p, metrics_or_installed

#: A hub id: ``owner/name`` (letters, digits, ``._-``), not a path on this machine.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Marker per run (the n-th run gets the n-th shape).
RUN_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "h")
FOREST_METRICS = ("dae", "ea")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def model_name(config: dict[str, Any]) -> str:
    """A run's model as a reader knows it (``config.json``): the ``--model`` hub id when one was given,
    else the resolved hub id, else the preset or adapter name (``qwen2vl-toy``), with a local
    checkpoint's folder name in brackets; ``none`` for a run without a model."""
    run, adapter = config.get("run") or {}, config.get("adapter") or {}
    given = run.get("model")
    for candidate in (given, adapter.get("model")):
        if isinstance(candidate, str) and _HUB_ID.match(candidate) and not Path(candidate).exists():
            return candidate
    preset = run.get("adapter") or "none"
    if isinstance(given, str) and given:  # a local checkpoint: its folder's name, never the path
        return f"{preset} ({Path(given).name or given})"
    return preset


def forest_figure(path: Path, comparison: dict[str, Any], metrics=None, *, dpi: int = 150) -> Path:
    """DAE and EA per source and run with 95% CIs (one panel per metric); returns ``path``."""
    from creg.report import figures as fg  # lazy: torch

    plt = fg.pyplot()
    metrics = metrics_or_installed(metrics)
    wanted = [metrics[m] for m in FOREST_METRICS if m in metrics]
    labels = [r["label"] for r in comparison["runs"]]
    sources = list(comparison["sources"])
    colours = fg.source_colours(sources)
    n_runs = len(labels)
    height = 1.4 + 0.28 * len(sources) * max(n_runs, 2) / 2
    fig, axes = plt.subplots(1, len(wanted), figsize=(4.6 * len(wanted) + 1.6, height), sharey=True, squeeze=False)
    step = 0.7 / max(n_runs, 1)
    for ax, m in zip(axes[0], wanted):
        for i, s in enumerate(sources):
            y0 = len(sources) - 1 - i
            for j, lab in enumerate(labels):
                g = comparison["sources"][s].get(lab)
                if not g or g.get(m.name) is None or g.get(m.name) != g.get(m.name):
                    continue
                v, ci = g[m.name], g.get(f"{m.name}_ci")
                y = y0 + 0.35 - step * (j + 0.5)
                err = [[v - ci[0]], [ci[1] - v]] if ci else None
                ax.errorbar([v], [y], xerr=err, fmt=RUN_MARKERS[j % len(RUN_MARKERS)], color=colours[s], ms=6,
                            capsize=2, lw=1.2, mfc=colours[s] if j == 0 else "white", mew=1.2)
        for y0 in range(len(sources) - 1):
            ax.axhline(y0 + 0.5, color="#eeeeee", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        better = "lower" if not m.higher_is_better else "higher"
        ax.set_xlabel(f"{m.label.replace('{arrow}', '') or m.name.upper()} ({better} is better), 95% bootstrap CI",
                      fontsize=fg.FONT)
        ax.tick_params(labelsize=fg.FONT_SMALL)
        if m.name == "dae":
            ax.set_xlim(-4, 184)
        elif m.name == "ea":
            ax.set_xlim(-0.03, 1.03)
    ax0 = axes[0, 0]
    ax0.set_yticks(range(len(sources))[::-1], sources, fontsize=fg.FONT)
    for tick, s in zip(ax0.get_yticklabels(), sources):
        tick.set_color(colours[s])
    ax0.set_ylim(-0.6, len(sources) - 0.4)
    from matplotlib.lines import Line2D  # lazy: matplotlib

    handles = [Line2D([], [], ls="", marker=RUN_MARKERS[j % len(RUN_MARKERS)], color="#444444",
                      mfc="#444444" if j == 0 else "white", label=lab + (" (reference)" if j == 0 else ""))
               for j, lab in enumerate(labels)]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.99, 0.95), fontsize=fg.FONT_SMALL, frameon=False,
               title="run (marker)", title_fontsize=fg.FONT_SMALL)
    fig.suptitle("DAE and EA per source and run (colour: source; marker: run)", fontsize=fg.FONT_TITLE)
    fig.tight_layout()
    return fg.save(fig, path, dpi=dpi)


FOREST_CAPTION = ("How to read it: one row per source (its colour is the same in every creg figure), one marker per run "
                  "(the filled one is the reference run). The dot is the mean over the run's samples, the bar its 95% "
                  "bootstrap CI. DAE: the angle between the compass peak and the true direction (0° perfect, 90° what a "
                  "random peak scores); EA: the share of samples whose peak is within one sector of the truth. Bars "
                  "that do not overlap differ clearly; the paired tests below say how surely.")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; border-bottom: 1px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .caption { font-size: .9em; color: #444; }
nav ul { columns: 2; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(head: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td{" class=num" if i >= numeric_from else ""}>{_e(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out).replace("class=num", 'class="num"')


def comparison_html(comparison: dict[str, Any], forest_png: Path | None, metrics=None) -> str:
    """The self-contained comparison page (see the module docstring)."""

    metrics = metrics_or_installed(metrics)
    runs = comparison["runs"]
    labels = [r["label"] for r in runs]
    ref = comparison["reference"]
    sections: list[tuple[str, str, str]] = []  # (anchor, heading, body)
    rows = []
    for r in runs:
        shared = "–" if r["label"] == ref else comparison["shared_samples"].get(r["label"], 0)
        rows.append([r["label"], r.get("model_name") or r["adapter"], r["adapter"], r["prompt"] or "–", r["bench"],
                     r["seed"], r["k"], r["n_samples"], shared, format_number(r["vlm_accuracy"], 3)])
    sections.append(("runs", "Runs", f"<p>Reference run: <strong>{_e(ref)}</strong>; paired tests are run − reference on "
                     "the samples both scored.</p>" + _table(["Run", "model", "adapter / preset", "prompt", "bench", "seed",
                                                              "K", "samples", "shared with reference", "VLM ACC↑"], rows, 5)))
    if forest_png is not None and Path(forest_png).is_file():
        data = base64.b64encode(Path(forest_png).read_bytes()).decode("ascii")
        sections.append(("forest", "DAE and EA per source and run",
                         f'<figure><img alt="forest plot of DAE and EA per source and run" src="data:image/png;base64,{data}">'
                         f"<figcaption>{_e(FOREST_CAPTION)}</figcaption></figure>"))
    for m in metrics:
        cells = {s: {lab: v.get(m.name) for lab, v in per_run.items()} for s, per_run in comparison["sources"].items()}
        if not any(v is not None and v == v for row in cells.values() for v in row.values()):
            continue
        body_rows = []
        for s, per_run in comparison["sources"].items():
            row: list[Any] = [s]
            for lab in labels:
                g = per_run.get(lab)
                row.append("·" if g is None else format_number(g.get(m.name), m.digits, g.get(f"{m.name}_ci") if m.table_ci else None,
                                                       m.ci_digits, sign=m.signed))
            body_rows.append(row)
        sections.append((f"metric-{m.name}", m.heading, _table(["Source", *labels], body_rows)))
    tests = [t for t in comparison["tests"] if t["n"] > 0]
    if tests:
        rows = []
        for t in tests:
            m = metrics[t["metric"]] if t["metric"] in metrics else None
            d = m.digits if m is not None else 3
            label = m.heading if m is not None else ("VLM ACC↑" if t["metric"] == "accuracy" else t["metric"].upper())
            rows.append([t["run"], t["source"] or "(VLM)", label, t["n"], format_number(t["diff"], d, t["ci"], d, sign=True),
                         format_p(t["p"], t["n_boot"]), format_p(t.get("p_holm", float("nan")), t["n_boot"])])
        sections.append(("tests", "Paired differences between runs",
                         "<p class=\"caption\">Difference = run − reference on the samples both scored (paired bootstrap); "
                         "p two-sided, floor 1/(B+1), Holm-adjusted within each metric.</p>" +
                         _table(["Run", "source", "metric", "n", "diff [95% CI]", "p", "p (Holm)"], rows, 3)))
    toc = "<nav><ul>" + "".join(f'<li><a href="#{a}">{_e(h)}</a></li>' for a, h, _ in sections) + "</ul></nav>"
    body = "\n".join(f'<h2 id="{a}">{_e(h)}</h2>\n{b}' for a, h, b in sections)
    title = f"creg comparison of {len(runs)} runs"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n<title>{_e(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{STYLE}</style>\n</head>\n'
            f"<body>\n<h1>{_e(title)}</h1>\n{toc}\n{body}\n</body>\n</html>\n")


def write_comparison_page(root: Path, comparison: dict[str, Any], metrics=None, *, dpi: int = 150,
                          log=lambda m: None) -> list[str]:
    """Write ``comparison_forest.png`` and ``comparison.html`` into ``root`` (next to comparison.md);
    returns the names written. Without matplotlib the page is written without its figure."""

    from creg.report.figures import PlotsUnavailable  # lazy: torch

    written = []
    with tempfile.TemporaryDirectory(prefix="creg-compare-") as tmp:
        png = Path(tmp) / "comparison_forest.png"
        try:
            forest_figure(png, comparison, metrics, dpi=dpi)
            write_grid_artifact(root, png.name, png.read_bytes())
            written.append(png.name)
        except PlotsUnavailable as e:
            log(f"creg: {e}; comparison.html is written without its figure")
            png = None
        write_grid_artifact(root, "comparison.html", comparison_html(comparison, png, metrics))
    return written + ["comparison.html"]
