"""``creg report RUN_DIR``: everything a run's records support, as report.md, report.json and figures.

Sections appear only when the run holds what they need: the setup (model, prompt, K, sigma, seed,
versions, dates: always), the main table (always), causal occlusion (``--cos``), per-class
accuracy and DAE with CIs, correct vs incorrect for gt/pred-targeted CREG (``creg`` and ``creg_gt``
with a model), pairwise significance (two or more sources: each source against the reference --
``creg`` when the run has it, else ``--baseline`` or the first source -- with every pair in an
appendix) and flip equivariance (after ``creg analyze flip RUN_DIR``). Every figure has a caption
that says how to read it.

Images for the figures: file-based benchmarks record the image path in ``samples.jsonl``; in-memory
ones (``synthetic``) are re-created from ``config.json`` -- benchmarks are deterministic, so the
same configuration yields the same sample for the same id.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from creg.core.logs import info as log_info
from creg.core.prompts import PROMPTS
from creg.core.records import SampleRecord
from creg.core.safe_text import markdown_text
from creg.core.sample import RELATIONS
from creg.report import figures as fg
from creg.report.cross_run import model_name
from creg.report.examples import Recompute, build_examples
from creg.report.html import render_html
from creg.store import RunDirError, RunStore, safe_name
from creg.summary import breakdowns, paired_tests
from creg.summary.aggregate import markdown_table, summarize
from creg.summary.groups import format_number, format_p, metrics_or_installed
from creg.summary.prior import stored_controls
from creg.summary.warnings import run_warnings

#: The directory is not a run directory (or holds no records): :class:`creg.store.RunDirError`.
ReportError = RunDirError


def load_run(run_dir: Path | RunStore, log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[SampleRecord], dict[str, dict[str, Any]]]:
    """(config.json, records, samples.jsonl rows by id) of a run directory, read through the run store;
    bad lines are reported through ``log`` with their line numbers and cost only themselves."""
    store = run_dir if isinstance(run_dir, RunStore) else RunStore.read(run_dir)
    records = store.records()
    for p in store.problems:
        (log or (lambda m: None))(f"{store.path.name}: {p}")
    if not records:
        raise ReportError(f"{run_dir} holds no records yet")
    samples = {sid: f.model_dump() for sid, f in store.samples().items()}
    return store.config, records, samples


def build_report(run_dir: Path, *, figures: bool = True, log: Callable[[str], None] = log_info, fmt: str = "png",
                 dpi: int | None = None, html: bool = True, heatmaps: bool = True,
                 baseline: str | None = None, recompute: Recompute | None = None) -> dict[str, Any]:
    """Compute the report of ``run_dir``, write report.json, report.md, figures/ (as ``fmt`` at ``dpi``)
    and, with ``html``, one self-contained report.html; return the report. ``baseline``: a source of
    the run; the pairwise tests then compare each other source with it only (ReportError if absent).

    Everything is rendered in a scratch folder and handed to the run store, the only writer of the
    run directory."""
    run_dir = Path(run_dir)
    store = RunStore.read(run_dir)
    config, records, samples = load_run(store, log)
    run = config["run"]
    metrics = metrics_or_installed(None)
    sources = list(dict.fromkeys(r.source for r in records))
    stored = store.summary() or {}
    summary = summarize(records, sources, seed=run.get("seed", 0), complete=stored.get("complete", False),
                        skipped=stored.get("skipped", {}), bench=run["bench"], adapter=run["adapter"], metrics=metrics)

    summary.update(stored_controls(store.path, records, seed=run.get("seed", 0)))
    summary["warnings"] = run_warnings(config, summary, records)
    chosen = baseline if baseline is not None else default_baseline(sources)
    pairwise = _pairwise(records, sources, seed=run.get("seed", 0), metrics=metrics, baseline=chosen)
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "config": run,
        "setup": run_setup(store, sources),
        "summary": summary,
        "per_class": breakdowns.per_class(records, metrics, seed=run.get("seed", 0)),
        "correctness": breakdowns.correctness_split(records, metrics=metrics),
        "pairwise": pairwise,
        "pairwise_all": (_pairwise(records, sources, seed=run.get("seed", 0), metrics=metrics, baseline=None)
                         if chosen is not None and len(sources) > 2 else None),
        "baseline": chosen,
        "flip": None,
        "figures": {},
        "examples_left_out": {},
        "figure_notes": [],
        "problems": list(store.problems),
    }
    flip = store.sub("flip")
    if flip is not None:
        report["flip"] = breakdowns.flip_equivariance(records, flip.records())

    with tempfile.TemporaryDirectory(prefix="creg-report-") as tmp:
        scratch = Path(tmp)
        if figures:
            report["figures"] = _figures(store, scratch, config, records, samples, summary, report, log, fmt=fmt,
                                         dpi=dpi, heatmaps=heatmaps, png_copies=html and fmt == "pdf",
                                         recompute=recompute)
        store.write_json_artifact("report.json", report)
        markdown = report_markdown(report, metrics)
        store.write_artifact("report.md", markdown)
        if html:
            store.write_artifact("report.html", render_html(report, markdown, scratch))
            report["html"] = "report.html"
    return report


def default_baseline(sources: list[str]) -> str | None:
    """The reference of the pairwise tests when none is asked for: ``creg`` (the method under study)
    when the run has it, else the run's first source; None for fewer than two sources."""
    if len(sources) < 2:
        return None
    return "creg" if "creg" in sources else sources[0]


def run_setup(store: RunStore, sources: list[str]) -> dict[str, Any]:
    """What a paper's setup paragraph needs: model, prompt, benchmark, K, sigma_r, rho_r, seed, the
    sources, the software versions, when the run finished and when this report was written."""


    cfg = store.config
    run, adapter, env = cfg.get("run", {}), cfg.get("adapter") or {}, cfg.get("environment") or {}
    return {
        "model": model_name(cfg), "adapter": run.get("adapter"), "dtype": adapter.get("dtype"),
        "device": adapter.get("device"), "prompt": _prompt_text(adapter.get("prompt") or run.get("prompt")),
        "bench": run.get("bench"), "bench_options": run.get("bench_options") or {}, "n": run.get("n"),
        "seed": run.get("seed"), "k": run.get("k"), "sigma_r": run.get("sigma_r"), "rho_r": run.get("rho_r"),
        "sources": sources, "source_options": run.get("source_options") or {},
        "cos": run.get("cos"), "cos_op": run.get("cos_op") if run.get("cos") else None,
        "versions": {k: env.get(k) for k in ("creg", "torch", "transformers", "python") if env.get(k)},
        "run_finished": store.finished_at(),
        "report_written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _prompt_text(prompt: str | None) -> str | None:
    """A prompt template's name with its text (``A: "..."``), or the literal template."""

    if prompt in PROMPTS:
        return f"{prompt}: " + " ".join(PROMPTS[prompt].split())
    return prompt


def _pairwise(records, sources, *, seed, metrics, baseline):
    if baseline is not None and baseline not in sources:
        raise ReportError(f"--baseline {baseline}: the run has no such source (its sources: {', '.join(sources)})")
    if len(sources) < 2:
        return []
    return paired_tests.pairwise_tests(records, seed=seed, metrics=metrics, baseline=baseline)


def _figures(store: RunStore, scratch: Path, config, records, samples, summary, report, log, *, fmt="png", dpi=None,
             heatmaps=True, png_copies=False, recompute: Recompute | None = None) -> dict[str, str]:
    """Render every figure into ``scratch/figures`` (file names from source names made safe), then
    hand each file to the run store; returns {figure name: path relative to the run directory}."""

    examples, left_out, notes = build_examples(config, breakdowns.by_source(records), samples, heatmaps=heatmaps, log=log,
                                                store=store, recompute=recompute)
    report["examples_left_out"], report["figure_notes"] = left_out, notes
    for note in notes:
        log(f"note: {note}")
    examples = {safe_name(name): items for name, items in examples.items()}
    out_dir = scratch / "figures"
    made = fg.report_figures(out_dir, summary=summary, per_class=report["per_class"], examples=examples,
                             fmt=fmt, dpi=dpi or fg.DEFAULT_DPI)
    if png_copies:  # report.html embeds these: browsers do not show a PDF in an <img>
        fg.report_figures(out_dir, summary=summary, per_class=report["per_class"], examples=examples,
                          fmt="png", dpi=dpi or fg.DEFAULT_DPI)
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            store.put_file(str(path.relative_to(scratch)), path)
    return {name: str(path.relative_to(scratch)) for name, path in made.items()}


# -- Markdown -----------------------------------------------------------------------------------

def report_markdown(report: dict[str, Any], metrics=None) -> str:
    metrics = metrics_or_installed(metrics)
    run, summary = report["config"], report["summary"]
    title = markdown_text(f"{run['bench']} · {run['adapter']}{' (' + str(run['model']) + ')' if run.get('model') else ''} · "
                          f"n={summary['n_samples']}")
    lines = [f"# creg report: {markdown_text(report['run_dir'])}", ""]
    if not summary.get("complete", True):
        lines += ["> **Partial run**: re-run the same `creg run` command to finish it, then `creg report` again.", ""]
    if report.get("setup"):
        lines += setup_markdown(report["setup"])
    lines += ["## Directional attribution (Table 1, Eq. 6-7)", "", markdown_table(summary, title, metrics).rstrip(), ""]
    if report.get("problems"):
        lines += ["> **Unreadable lines were skipped** (each cost only itself):", ""]
        lines += [f"> - {markdown_text(p)}" for p in report["problems"][:20]] + [""]

    cos_rows = [(n, s["cos"]) for n, s in summary["sources"].items() if "cos" in s]
    if cos_rows:
        op = cos_rows[0][1]["op"]
        lines += [f"## Causal occlusion (Table 4, Eq. 8; operator `{op}`)", "",
                  "ΔS = log p_occluded(gt) − log p_0(gt); COS = ΔS_opp − ΔS_sector (> 0: the occluded sector matters more than its opposite). "
                  "*peak*: the source's peak sector; *true*: the sector holding θ_true (same for every source); "
                  "*area-matched*: control, COS_area = ΔS_ctrl − ΔS_peak with ctrl = as many pixels hidden in another sector "
                  "(the opposite wedge can be much smaller when the image clips it); "
                  "*adjacent*: control, COS_adj = mean ΔS of the two neighbours − ΔS_peak.", "",
                  "| Method | n | ΔS_peak | ΔS_opp(peak) | COS peak [95% CI] | ΔS_ctrl | COS_area [95% CI] | ΔS_adjacent | COS_adj [95% CI] |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, c in cos_rows:
            p, a, m = c["peak"], c["adjacent"], c.get("area_matched")
            matched = (f"{format_number(m['delta']['mean'], 3, sign=True)} | {format_number(m['cos']['mean'], 3, m['cos']['ci'], 3, sign=True)}"
                       if m else "– | –")
            lines.append(f"| {name} | {c['n']} | {format_number(p['delta']['mean'], 3, sign=True)} | {format_number(p['delta_opp']['mean'], 3, sign=True)} | "
                         f"{format_number(p['cos']['mean'], 3, p['cos']['ci'], 3, sign=True)} | {matched} | {format_number(a['delta']['mean'], 3, sign=True)} | "
                         f"{format_number(a['cos']['mean'], 3, a['cos']['ci'], 3, sign=True)} |")
        t = cos_rows[0][1]["true"]
        lines += ["", f"True-direction reading (model-level): ΔS_true {format_number(t['delta']['mean'], 3, t['delta']['ci'], 3, sign=True)}, "
                      f"ΔS_opp {format_number(t['delta_opp']['mean'], 3, t['delta_opp']['ci'], 3, sign=True)}, "
                      f"COS {format_number(t['cos']['mean'], 3, t['cos']['ci'], 3, sign=True)}", ""]

    pc = report["per_class"]

    cols = [m for m in metrics if m.breakdown]
    names = " / ".join(m.label.replace("{arrow}", "") or m.name.upper() for m in cols)

    def cells(row: dict[str, Any], ci: bool = False) -> str:
        return " / ".join(format_number(row.get(m.name), min(m.digits, 2) if m.digits > 1 else m.digits,
                               row.get(f"{m.name}_ci") if ci else None, m.ci_digits) for m in cols)

    lines += ["## Per class (Fig. 4)", "", "Each cell: the mean over that class's samples with its 95% bootstrap CI "
              "(few samples per class give wide intervals).", ""]
    head = "| Method | " + " | ".join(f"{r} {names}" for r in RELATIONS) + " |"
    lines += [head, "|---|" + "---:|" * len(RELATIONS)]
    if pc["accuracy"]:
        lines.append("| *VLM accuracy* | " + " | ".join(
            f"{format_number(pc['accuracy'][r]['accuracy'], 3)} (n={pc['accuracy'][r]['n']})" for r in RELATIONS) + " |")
    for name, per in pc["sources"].items():
        lines.append(f"| {name} | " + " | ".join(cells(per[r], ci=True) for r in RELATIONS) + " |")
    ch = pc["chance"]
    chance = ", ".join(f"{m.label.replace('{arrow}', '') or m.name} {format_number(ch[m.name], m.digits)}" for m in cols if m.name in ch)
    lines += ["", f"Chance: accuracy {ch['accuracy']:.2f}" + (f", {chance}" if chance else "") +
              f" (uniformly random peak, K={pc['k']}).", ""]

    cs = report["correctness"]
    if cs:
        lines += [f"## Correct vs incorrect (Table 3; VLM accuracy {cs['vlm_accuracy']:.3f})", "",
                  f"| Subset | GT-targeted ({cs['gt_source']}) {names} | Pred-targeted ({cs['pred_source']}) {names} |", "|---|---:|---:|"]
        for subset, row in cs["rows"].items():
            lines.append(f"| {subset} (n={row['pred']['n']}) | {cells(row['gt'])} | {cells(row['pred'])} |")
        lines.append("")

    if report["pairwise"]:
        base = report.get("baseline")
        lines += [f"## Pairwise differences: {base} against each other source (paired bootstrap, same samples)" if base else
                  "## Pairwise differences (paired bootstrap, same samples)", "",
                  ("Difference = each source − the baseline " + f"**{base}**" if base else
                   "Difference = first − second source") +
                  "; p two-sided (floor 1/(B+1) for B bootstrap resamples), Holm-adjusted within each metric." +
                  (" Every pair of sources: the appendix." if report.get("pairwise_all") else ""), ""]
        lines += _pairwise_table(report["pairwise"], metrics)

    if report["flip"]:
        lines += ["## Flip equivariance (§6.1)", "",
                  "Pearson r between each compass and the mirrored compass of the horizontally flipped sample "
                  "(sector k ↔ (K/2 − k) mod K); 1 = perfectly equivariant, the paper reports r = −0.065 for Qwen2-VL-7B.", "",
                  "| Method | n | r (mean per sample) | r (pooled) | peak agreement | constant compasses |", "|---|---:|---:|---:|---:|---:|"]
        for name, f in report["flip"].items():
            lines.append(f"| {name} | {f['n']} | {format_number(f['r_mean'], 3, sign=True)} | {format_number(f['r_pooled'], 3, sign=True)} | "
                         f"{f['peak_agreement']:.3f} | {f['n_constant']} |")
        lines.append("")

    if report["figures"]:
        lines += ["## Figures", ""]
        for name, rel in report["figures"].items():
            lines += [f"### {figure_caption(name)}", "", f"![{name}]({rel})", "", f"*How to read it:* {how_to_read(name)}", ""]
        for name, why in report.get("examples_left_out", {}).items():
            lines.append(f"- no example figure for **{name}**: {why}")
        for note in report.get("figure_notes", []):
            lines.append(f"- note: {note}")
        lines.append("")
    if report.get("pairwise_all"):
        lines += ["## Appendix: every pair of sources (paired bootstrap, same samples)", "",
                  "Difference = first − second source; p two-sided (floor 1/(B+1)), Holm-adjusted within each metric "
                  "over all these pairs.", ""]
        lines += _pairwise_table(report["pairwise_all"], metrics)
    return "\n".join(lines) + "\n"


def _pairwise_table(tests: list[dict[str, Any]], metrics) -> list[str]:
    lines = ["| A | B | metric | n | diff [95% CI] | p | p (Holm) |", "|---|---|---|---:|---:|---:|---:|"]
    for t in tests:
        if t["n"] == 0:
            continue
        m = metrics[t["metric"]] if t["metric"] in metrics else None
        d = m.digits if m is not None else 3
        label = (m.label.replace("{arrow}", "") if m is not None and m.label else t["metric"].upper())
        lines.append(f"| {t['a']} | {t['b']} | {label} | {t['n']} | {format_number(t['diff'], d, t['ci'], d, sign=True)} | "
                     f"{format_p(t['p'], t['n_boot'])} | {format_p(t.get('p_holm', float('nan')), t['n_boot'])} |")
    return lines + [""]


def setup_markdown(setup: dict[str, Any]) -> list[str]:
    """The Setup section: one table row per fact a methods paragraph cites."""
    def opts(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items()) if d else "–"

    rows = [("Model", setup.get("model")), ("Adapter / preset", setup.get("adapter")),
            ("dtype, device", f"{setup.get('dtype') or '–'}, {setup.get('device') or '–'}"),
            ("Prompt", setup.get("prompt") or "–"),
            ("Benchmark", f"{setup.get('bench')} ({opts(setup.get('bench_options') or {})}), n = {setup.get('n') if setup.get('n') is not None else 'all'}"),
            ("Compass", f"K = {setup.get('k')}, σ_r = {setup.get('sigma_r')}, ρ_r = {setup.get('rho_r')} (r_max = ρ_r · d_AB, σ = σ_r · r_max)"),
            ("Seed", setup.get("seed")), ("Sources", ", ".join(setup.get("sources") or [])),
            ("Source options", opts({f"{s}.{k}": v for s, o in (setup.get("source_options") or {}).items() for k, v in o.items()})),
            ("Occlusion operator (--cos)", setup.get("cos_op") or "not run"),
            ("Versions", ", ".join(f"{k} {v}" for k, v in (setup.get("versions") or {}).items()) or "–"),
            ("Run finished (UTC)", setup.get("run_finished") or "–"), ("Report written (UTC)", setup.get("report_written") or "–")]
    out = ["## Setup", "", "| Setting | Value |", "|---|---|"]
    out += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    return out + [""]


def how_to_read(name: str) -> str:
    """A figure's reading guide, printed under it (report.md and report.html)."""
    if name == "per_class":
        return ("(a) the share of each class's samples the model answered right; the dashed line is chance (0.25). "
                "(b) each source's mean DAE per class: one marker per source in its colour, bars are 95% bootstrap "
                "CIs, the dashed line is what a uniformly random peak scores; lower is better.")
    if name == "cos":
        return ("One row per source. (a) COS: how much more hiding the source's peak sector lowers the model's "
                "log-probability of the right answer than hiding the compared sector (the opposite one, an "
                "area-matched one, the adjacent ones); above 0 means the peak sector matters to the model. "
                "(b) the raw drops ΔS behind it. Bars are 95% bootstrap CIs; the green row is the true direction's sector.")
    if name.startswith("examples_"):
        return ("Top: the image with the source's relevance (bright: high, dark: none; the photo in grey beneath), box A "
                "orange, box B blue, the true direction A→B green, the compass peak magenta, r_max as a dashed "
                "circle. Bottom: the compass rose, the share of evidence P(θ_k) per sector in the source's colour, "
                "with the same green and magenta directions. DAE is the angle between peak and truth.")
    return "see the figure's title and legend."


def figure_caption(name: str) -> str:
    """A figure's heading in report.md / report.html."""
    if name == "per_class":
        return "Per class: VLM accuracy and DAE (Fig. 4)"
    if name == "cos":
        return "Causal occlusion (Eq. 8)"
    if name.startswith("examples_"):
        return f"Examples: {name[len('examples_'):]} (best / median / worst by DAE)"
    return name


def variants_markdown(title: str, rows: dict[str, Any], *, accuracy: bool = False) -> str:
    """Table 5 / Table 6 style Markdown from :func:`creg.summary.breakdowns.variants_table` rows."""
    head = "| Configuration | n |" + (" VLM ACC |" if accuracy else "") + " DAE↓ | EA↑ |"
    lines = [f"### {title}", "", head, "|---|---:|" + ("---:|" if accuracy else "") + "---:|---:|"]
    for row in rows.values():
        acc = f" {format_number(row['vlm_accuracy'], 3)} |" if accuracy else ""
        lines.append(f"| {row['label']} | {row['n']} |{acc} {format_number(row['dae'], 1)} | {format_number(row['ea'], 3)} |")
    return "\n".join(lines) + "\n"
