"""``creg gallery RUN_DIR``: every sample of a run, every source side by side, as one HTML page.

Each sample is a row: for every source of the run, the image with that source's heatmap, boxes and
arrows beside its compass rose, so sources are compared on the same image. The page filters by
class (relation), by the model's answer (correct / incorrect), by source (which columns show) and
by DAE (a sample shows when any shown source's DAE is in range), and sorts by the worst DAE: the
"worst cases" button is one click. A short list of the worst (sample, source) pairs links to them.

The heatmaps come from the maps the run stored (``creg run --save-maps``, the default); the model is
never loaded. Without stored maps a cell shows the scene (boxes, arrows) and the rose, and the page
says why. Images are re-created the way ``creg report`` does (the recorded file, else the
benchmark). The page is self-contained: images are PNG data URIs, the script and the style are
inline, a Content-Security-Policy forbids every fetch, and every text from the run directory
(names, ids, sources) is escaped and never becomes markup or a link.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Callable

from creg.core.logs import info as log_info
from creg.report.examples import run_samples
from creg.store import RunStore

#: Samples a gallery shows by default: enough to browse, small enough to open (each sample and
#: source is one embedded image).
DEFAULT_MAX_SAMPLES = 60
#: Worst (sample, source) pairs linked at the top of the page.
N_WORST_LINKS = 12
GALLERY = "gallery.html"

#: Every fetch is forbidden: images are data URIs, style and script inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; }
header { position: sticky; top: 0; background: #fafafa; border-bottom: 1px solid #ddd; padding: .5em 1em; z-index: 2; }
header h1 { font-size: 1.2em; margin: .2em 0; }
.controls { display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center; font-size: .9em; }
.controls fieldset { border: 1px solid #ddd; padding: .1em .5em; margin: 0; }
.controls input[type=number] { width: 4.5em; }
main { padding: 0 1em 2em; }
.note { background: #fff8e1; border-left: 4px solid #e0a000; padding: .3em .8em; margin: .6em 0; }
.sample { border-bottom: 1px solid #eee; padding: .6em 0; }
.sample h2 { font-size: 1em; margin: .2em 0 .4em; font-weight: 600; }
.sample h2 .bad { color: #b00020; } .sample h2 .good { color: #2a7d2a; }
.cells { display: flex; flex-wrap: wrap; gap: .6em; }
figure.cell { margin: 0; border: 1px solid #e4e4e4; border-radius: 4px; padding: .2em; background: #fff; }
figure.cell img { display: block; max-width: 100%; height: auto; }
figure.cell figcaption { font-size: .85em; padding: .1em .3em; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .3em; vertical-align: middle; }
#worst li { font-size: .9em; }
.hidden { display: none !important; }
"""

SCRIPT = """
(function () {
  const $ = (id) => document.getElementById(id);
  const samples = [...document.querySelectorAll("section.sample")];
  const order = samples.slice();
  const boxes = [...document.querySelectorAll("input.src")];
  function shownSources() { return new Set(boxes.filter(b => b.checked).map(b => b.value)); }
  function daeOf(s, shown) {
    const v = [...s.querySelectorAll("figure.cell")].filter(c => shown.has(c.dataset.source) && c.dataset.dae !== "")
      .map(c => parseFloat(c.dataset.dae));
    return v;
  }
  function apply() {
    const cls = $("f-class").value, cor = $("f-correct").value, shown = shownSources();
    const lo = $("f-dae-min").value === "" ? -Infinity : parseFloat($("f-dae-min").value);
    const hi = $("f-dae-max").value === "" ? Infinity : parseFloat($("f-dae-max").value);
    const dae_filter = lo !== -Infinity || hi !== Infinity;
    let n = 0;
    for (const s of samples) {
      for (const c of s.querySelectorAll("figure.cell")) c.classList.toggle("hidden", !shown.has(c.dataset.source));
      const v = daeOf(s, shown);
      const ok = (cls === "" || s.dataset.relation === cls) && (cor === "" || s.dataset.correct === cor) &&
                 (!dae_filter || v.some(d => d >= lo && d <= hi));
      s.classList.toggle("hidden", !ok);
      if (ok) n += 1;
    }
    $("count").textContent = n + " of " + samples.length + " samples";
    const sorted = $("f-sort").value === "worst" ? order.slice().sort((a, b) => {
      const va = daeOf(a, shown), vb = daeOf(b, shown);
      return (vb.length ? Math.max(...vb) : -1) - (va.length ? Math.max(...va) : -1);
    }) : order;
    const main = $("samples");
    for (const s of sorted) main.appendChild(s);
  }
  for (const id of ["f-class", "f-correct", "f-dae-min", "f-dae-max", "f-sort"]) {
    $(id).addEventListener("input", apply); $(id).addEventListener("change", apply);
  }
  for (const b of boxes) b.addEventListener("change", apply);
  $("worst-cases").addEventListener("click", () => {
    $("f-sort").value = "worst"; apply(); window.scrollTo(0, 0);
  });
  $("reset").addEventListener("click", () => {
    $("f-class").value = ""; $("f-correct").value = ""; $("f-dae-min").value = ""; $("f-dae-max").value = "";
    $("f-sort").value = "order"; for (const b of boxes) b.checked = true; apply();
  });
  apply();
})();
"""


def _e(text: Any) -> str:
    """Text from the run directory, escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def pick_samples(records, order: list[str], max_samples: int | None) -> list[str]:
    """The sample ids a gallery shows, in the run's order: all of them up to ``max_samples``; beyond
    that, first every source's worst samples by DAE and the wrong answers (the cases a reader looks
    for), then the rest in the run's order."""
    if max_samples is None or len(order) <= max_samples:
        return list(order)
    by_source: dict[str, list] = {}
    for r in records:
        if r.dae is not None:
            by_source.setdefault(r.source, []).append(r)
    wanted: list[str] = []
    per_source = max(1, max_samples // (3 * max(len(by_source), 1)))
    for recs in by_source.values():
        wanted += [r.sample_id for r in sorted(recs, key=lambda r: (-r.dae, r.sample_id))[:per_source]]
    wrong = {r.sample_id for r in records if r.correct is False}
    wanted += [sid for sid in order if sid in wrong]
    wanted += order
    chosen = list(dict.fromkeys(wanted))[:max_samples]
    rank = {sid: i for i, sid in enumerate(order)}
    return sorted(chosen, key=lambda sid: rank.get(sid, len(rank)))


def cell_png(image, sample: dict[str, Any], record: dict[str, Any], stored, colour: str, *, dpi: int) -> bytes:
    """One sample and source: the scene (heatmap when ``stored`` has it) beside the rose, as PNG bytes."""
    from creg.report import figures as fg  # lazy: torch

    plt = fg.pyplot()
    aspect = fg._image_aspect(image, sample)
    scene_w = 2.6
    scene_h = max(min(scene_w * aspect, 3.4), 1.6)
    fig = plt.figure(figsize=(scene_w + 2.1, max(scene_h, 2.1) + 0.15))
    grid = fig.add_gridspec(1, 2, width_ratios=[scene_w, 2.1], left=0.01, right=0.97, top=0.93, bottom=0.02, wspace=0.12)
    ax = fig.add_subplot(grid[0, 0])
    fg.draw_scene(ax, image, sample["ref"]["box"], sample["tgt"]["box"], ref_name=sample["ref"]["name"],
                  tgt_name=sample["tgt"]["name"], true_angle=record["true_angle"], peak_angle=record["peak_angle"],
                  relevance=None if stored is None else stored.values, cell_xy=None if stored is None else stored.cell_xy,
                  r_max=None if stored is None else stored.r_max, colorbar=False,
                  image_size=tuple(sample.get("image_size") or ()) or None)
    pax = fig.add_subplot(grid[0, 1], projection="polar")
    fg.draw_compass(pax, record["compass"], record["true_angle"], record["peak_angle"], colour=colour)
    pax.tick_params(axis="x", labelsize=fg.FONT_SMALL - 1)
    fg.relayout_labels(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.04)
    plt.close(fig)
    return buf.getvalue()


def _legend_png(dpi: int) -> bytes:
    """The key shared by every cell: true direction, peak, r_max, the heatmap's colour scale."""
    from creg.report import figures as fg  # lazy: torch

    plt = fg.pyplot()
    fig = plt.figure(figsize=(9.0, 1.0))
    fig.legend(handles=fg._legend_handles(True), loc="center left", ncol=3, fontsize=fg.FONT, frameon=False,
               bbox_to_anchor=(0.0, 0.78))
    fg.heatmap_colorbar(fig, (0.02, 0.25, 0.4, 0.12))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi * 1.25, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return buf.getvalue()


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _fmt_dae(d: float | None) -> str:
    return "" if d is None or not math.isfinite(d) else f"{d:.1f}"


def build_gallery(run_dir: Path, *, max_samples: int | None = DEFAULT_MAX_SAMPLES, dpi: int = 80,
                  log: Callable[[str], None] = log_info) -> dict[str, Any]:
    """Write ``RUN_DIR/gallery.html`` (through the run store); returns {"path", "samples", "sources",
    "with_maps", "notes"}."""
    from creg.report.figures import source_colours  # lazy: torch
    from creg.report.report import load_run  # lazy: torch

    run_dir = Path(run_dir)
    store = RunStore.read(run_dir)
    config, records, samples = load_run(store, log)
    sources = list(dict.fromkeys(r.source for r in records))
    colours = source_colours(sources)
    order = list(samples)
    ids = pick_samples(records, order, max_samples)
    by_sample: dict[str, dict[str, Any]] = {}
    for r in records:
        by_sample.setdefault(r.sample_id, {})[r.source] = r
    objs = run_samples(config, samples, set(ids))
    notes: list[str] = []
    if len(ids) < len(order):
        notes.append(f"showing {len(ids)} of {len(order)} samples: every source's worst cases and the wrong answers "
                     f"first, then the run's order (creg gallery --max-samples N shows more)")
    with_maps = 0
    sections, worst = [], []
    for idx, sid in enumerate(ids):
        fact = samples[sid]
        image = None
        if sid in objs:
            try:
                image = objs[sid].load_image()
            except Exception:  # noqa: BLE001 - the cell still shows boxes, arrows and rose
                image = None
        maps = store.maps(sid) or {}
        with_maps += bool(maps)
        recs = by_sample.get(sid, {})
        cells = []
        for name in sources:
            rec = recs.get(name)
            if rec is None:
                continue
            png = cell_png(image, fact, rec.model_dump(), maps.get(name), colours[name], dpi=dpi)
            dae = _fmt_dae(rec.dae)
            if rec.dae is not None:
                worst.append((rec.dae, idx, sid, name))
            cells.append(f'<figure class="cell" data-source="{_e(name)}" data-dae="{dae}">{_img(png, f"{sid} {name}")}'
                         f'<figcaption><span class="swatch" style="background:{colours[name]}"></span>{_e(name)} · '
                         f'DAE {dae + "°" if dae else "undefined"} · peak {rec.peak_angle:.0f}°</figcaption></figure>')
        correct = "" if fact.get("correct") is None else ("true" if fact["correct"] else "false")
        answer = ""
        if fact.get("pred"):
            answer = (f' · VLM: {_e(fact["pred"])} <span class="{"good" if fact["correct"] else "bad"}">'
                      f'{"correct" if fact["correct"] else "wrong"}</span>')
        head = (f'{_e(sid)}: {_e(fact["tgt"]["name"])} is {_e(fact["relation"])} of {_e(fact["ref"]["name"])} '
                f'(true {fact.get("true_angle", 0.0):.0f}°){answer}' + ("" if image is not None else " · image not available")
                + ("" if maps else " · no stored maps"))
        sections.append(f'<section class="sample" id="s-{idx}" data-relation="{_e(fact["relation"])}" '
                        f'data-correct="{correct}"><h2>{head}</h2><div class="cells">{"".join(cells)}</div></section>')
    if ids and not with_maps:
        notes.append("this run stored no relevance maps (made with --no-save-maps, or before creg stored them): cells "
                     "show boxes, arrows and roses; re-run with --save-maps for heatmaps")
    worst.sort(key=lambda t: (-t[0], t[1], t[3]))
    worst_items = "".join(f'<li><a href="#s-{idx}">{_e(sid)}</a> · {_e(name)} · DAE {dae:.0f}°</li>'
                          for dae, idx, sid, name in worst[:N_WORST_LINKS])
    relations = sorted({samples[s]["relation"] for s in ids})
    has_answers = any(samples[s].get("correct") is not None for s in ids)
    run = config["run"]
    title = f"creg gallery: {run.get('bench', '?')} · {run.get('adapter', '?')} · {len(ids)} samples"
    controls = [
        '<label>class <select id="f-class"><option value="">all</option>' +
        "".join(f'<option value="{_e(r)}">{_e(r)}</option>' for r in relations) + "</select></label>",
        '<label>answer <select id="f-correct"><option value="">all</option>' +
        ('<option value="true">correct</option><option value="false">wrong</option>' if has_answers else "") +
        "</select></label>",
        '<fieldset><legend>sources</legend>' + "".join(
            f'<label><input type="checkbox" class="src" value="{_e(n)}" checked>'
            f'<span class="swatch" style="background:{colours[n]}"></span>{_e(n)}</label> ' for n in sources) + "</fieldset>",
        '<label>DAE from <input type="number" id="f-dae-min" min="0" max="180" step="1"> to '
        '<input type="number" id="f-dae-max" min="0" max="180" step="1"> °</label>',
        '<label>order <select id="f-sort"><option value="order">the run\'s</option>'
        '<option value="worst">worst DAE first</option></select></label>',
        '<button id="worst-cases" type="button">Worst cases</button> <button id="reset" type="button">Reset</button>',
        '<span id="count"></span>',
    ]
    how = ("Each row is one sample; each cell one source: the image with that source's relevance (bright: high, dark: "
           "none), box A orange, box B blue, the true direction A→B green, the source's compass peak magenta, and "
           "beside it the compass rose P(θ_k) in the source's colour. DAE is the angle between peak and truth "
           "(0° best, 90° chance). The DAE filter keeps a sample when any shown source is in range; "
           "'Worst cases' orders samples by their worst shown DAE.")
    body = [f"<header><h1>{_e(title)}</h1><div class=\"controls\">{''.join(controls)}</div></header>", "<main>",
            f"<p>{_e(how)}</p>", _img(_legend_png(dpi), "key: true direction, compass peak, r_max, relevance scale")]
    body += [f'<p class="note">{_e(n)}</p>' for n in notes]
    if worst_items:
        body.append(f'<details id="worst" open><summary>Worst (sample, source) pairs by DAE</summary><ol>{worst_items}</ol></details>')
    body.append(f'<div id="samples">{"".join(sections)}</div></main>')
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n<title>{_e(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{STYLE}</style>\n</head>\n'
            f'<body>\n{"".join(body)}\n<script>{SCRIPT}</script>\n</body>\n</html>\n')
    path = store.write_artifact(GALLERY, page)
    return {"path": path, "samples": len(ids), "sources": sources, "with_maps": with_maps, "notes": notes}
