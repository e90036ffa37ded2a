"""The report of ``creg reproduce``: every sub-run's numbers beside the paper's (:mod:`creg.report.published`),
the paper's tables in its order, and every sub-run's warnings in one list.

Reads the sub-runs through :class:`creg.store.RunStore` only and reuses the analyses of
:mod:`creg.experiments.variants`; writes ``report.md`` and ``report.json`` at the top of the
reproduction directory (:func:`creg.store.write_grid_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from creg.core.sample import RELATIONS
from creg.report import published as paper
from creg.store import RunStore, write_grid_files
from creg.summary import breakdowns, paired_tests
from creg.summary.breakdowns import FLIPPED_RELATION
from creg.summary.groups import format_number
from creg.summary.warnings import run_warnings

BENCH_TITLES = {"vsr": "VSR", "coco_pairs": "COCO-Pairs", "synthetic": "synthetic"}


def paper_benchmark(bench: str) -> str:
    """The paper benchmark whose numbers stand beside a run on ``bench``: itself, or VSR (the paper's
    first) for a benchmark the paper did not use (synthetic standing in), shown for orientation."""
    return bench if bench in BENCH_TITLES and bench != "synthetic" else "vsr"


def _paper(value: float | None, digits: int) -> str:
    return "–" if value is None else format_number(value, digits)


def _published(bench: str, **fields) -> float | None:
    p = paper.one(benchmark=bench, **fields)
    return None if p is None else p.value


def _summary(store: RunStore) -> dict[str, Any]:
    s = store.summary() or {}
    if "warnings" not in s:  # runs written before the warnings list existed
        s = {**s, "warnings": run_warnings(store.config, s, store.records())}
    return s


def reproduction_report(plan, runs: dict[str, Path], *, elapsed_s: float | None = None) -> tuple[dict[str, Any], str]:
    """(report.json object, report.md text) of a finished :class:`creg.experiments.reproduce.Plan`; writes both."""
    stores = {name: RunStore.read(path) for name, path in runs.items() if RunStore.is_run_dir(path)}
    summaries = {name: _summary(st) for name, st in stores.items()}
    report: dict[str, Any] = {"out": str(plan.out), "benchmarks": plan.benchmarks, "notes": plan.notes,
                              "steps": plan.describe(), "elapsed_s": None if elapsed_s is None else round(elapsed_s, 1),
                              "runs": {k: str(v) for k, v in runs.items()}, "tables": {}, "warnings": []}
    for name, s in summaries.items():
        for w in s.get("warnings") or []:
            report["warnings"].append({**w, "run": name, "message": f"{name}: {w['message']}"})

    first = next((st for st in stores.values()), None)
    adapter = (first.config.get("run") or {}).get("adapter") if first else "?"
    lines = [f"# creg reproduce: {adapter}", "",
             "Our numbers beside the CREG paper's (Qwen2-VL-7B). Each sub-run is an ordinary run directory "
             "(`creg report DIR` gives its full report with figures). Paper DAE is compared with our "
             "sector-centre DAE (the paper's Eq. 6), except the geometry oracle's 0.0 (docs/paper-to-code.md).", ""]
    if elapsed_s is not None:
        lines += [f"Time: {elapsed_s:.0f} s for the whole protocol.", ""]
    if plan.notes:
        lines += ["**Notes**", ""] + [f"- {n}" for n in plan.notes] + [""]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- ⚠ {w['message']}" for w in report["warnings"]] + [""]
    lines += ["## Plan", ""] + [f"- {d}" for d in plan.describe()] + [""]

    for bench in plan.benchmarks:
        lines += _bench_sections(bench, stores, summaries, report, paper_benchmark(bench))
    first = paper_benchmark(plan.benchmarks[0])
    on = BENCH_TITLES.get(plan.benchmarks[0], plan.benchmarks[0])
    on += "" if first == plan.benchmarks[0] else f"; paper columns: {BENCH_TITLES[first]}, for orientation"
    lines += _grid_section("ablation", f"Table 5: ablation ({on})", paper.TABLE5, stores, summaries, report, first)
    lines += _grid_section("prompts", f"Table 6: prompt sweep, App. A.1 ({on})", paper.TABLE6, stores, summaries, report,
                           first, accuracy=True)
    flips = [s.of for s in plan.steps if s.kind == "flip" and s.of]
    lines += _flip_section(stores, report, first, flips[0] if flips else "ablation/default")
    text = "\n".join(lines) + "\n"
    write_grid_files(plan.out, "report", report, text)
    return report, text


def _bench_sections(bench: str, stores, summaries, report, compare: str) -> list[str]:
    title = BENCH_TITLES.get(bench, bench) + ("" if compare == bench else f" (paper columns: {BENCH_TITLES[compare]}, for orientation)")
    name = f"{bench}/table1"
    if name not in stores:
        return []
    store, summary = stores[name], summaries[name]
    records = store.records()
    rows = []
    lines = [f"## {title}: Table 1 (directional attribution)", "",
             f"VLM accuracy {format_number(summary.get('vlm_accuracy'), 3)}"
             + (" ⚠ not above chance (0.25) at 95%" if any(w["kind"] == "accuracy_at_chance" for w in summary.get("warnings") or []) else "")
             + f" (paper: {_paper(_published(compare, table='Table 3', metric='vlm_accuracy'), 3)}); n = {summary.get('n_samples')}.", "",
             "| Method | n | DAE↓ [95% CI] | DAE sector centre↓ | paper DAE | EA↑ [95% CI] | paper EA |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for src, s in summary["sources"].items():
        p_dae = paper.one(table="Table 1", benchmark=compare, source=src, metric="dae")
        p_ea = _published(compare, table="Table 1", source=src, metric="ea")
        row = {"source": src, "n": s["n"], "dae": s.get("dae"), "dae_ci": s.get("dae_ci"), "dae_sector": s.get("dae_sector"),
               "ea": s.get("ea"), "ea_ci": s.get("ea_ci"), "paper_dae": None if p_dae is None else p_dae.value,
               "paper_dae_reading": None if p_dae is None else p_dae.reading, "paper_ea": p_ea}
        rows.append(row)
        mark = "" if p_dae is None else (" (vs DAE)" if p_dae.reading == "dae" else "")
        lines.append(f"| {src} | {s['n']} | {format_number(s.get('dae'), 1, s.get('dae_ci'), 0)} | {format_number(s.get('dae_sector'), 1)} | "
                     f"{_paper(row['paper_dae'], 1)}{mark} | {format_number(s.get('ea'), 3, s.get('ea_ci'), 2)} | {_paper(p_ea, 3)} |")
    report["tables"][f"{bench}/table1"] = rows
    lines.append("")
    lines += _paired_section(bench, store, records, report)
    lines += _cos_section(bench, stores, summaries, report, compare)
    lines += _correctness_section(bench, summary, report, compare)
    lines += _per_class_section(bench, records, report, compare)
    return lines


#: The source the paired tests compare every other source with.
PAIRED_BASELINE = "creg"


def _paired_section(bench: str, store, records, report) -> list[str]:
    """CREG against every other source of Table 1: paired bootstrap of the mean difference on the
    samples both score, Holm-adjusted within each metric over these comparisons."""
    sources = list(breakdowns.by_source(records))
    if PAIRED_BASELINE not in sources or len(sources) < 2:
        return []
    seed = int((store.config.get("run") or {}).get("seed") or 0)
    tests = paired_tests.pairwise_tests(records, seed=seed, baseline=PAIRED_BASELINE)
    metrics = [m for m in dict.fromkeys(t["metric"] for t in tests) if m in ("dae", "ea")] or list(dict.fromkeys(t["metric"] for t in tests))
    title = BENCH_TITLES.get(bench, bench)
    lines = [f"## {title}: paired tests, CREG against every other source", "",
             f"Mean of (source − {PAIRED_BASELINE}) on the samples both score; paired bootstrap (10,000 resamples), "
             "p two-sided, Holm-adjusted within each metric over these comparisons. DAE: negative = the "
             "source points closer to B than CREG; EA: positive = more often within ±45°. "
             "**bold**: p_Holm < 0.05.", "",
             "| Source | " + " | ".join(f"Δ{m.upper()} [95% CI] | p_Holm" for m in metrics) + " |",
             "|---|" + "---:|---:|" * len(metrics)]
    by = {(t["a"], t["metric"]): t for t in tests}
    for src in sources:
        if src == PAIRED_BASELINE:
            continue
        cells = []
        for m in metrics:
            t = by.get((src, m))
            if t is None or not t.get("n"):
                cells += ["–", "–"]
                continue
            digits = 1 if m == "dae" else 3
            d = format_number(t["diff"], digits, tuple(t["ci"]), digits, sign=True)
            p = t.get("p_holm")
            ptxt = "–" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-04")
            cells += [f"**{d}**" if p is not None and p < 0.05 else d, ptxt]
        lines.append(f"| {src} | " + " | ".join(cells) + " |")
    report["tables"][f"{bench}/paired"] = tests
    return lines + [""]


def _cos_section(bench: str, stores, summaries, report, compare: str) -> list[str]:
    title = BENCH_TITLES.get(bench, bench)
    # table1 carries COS only in reproduction directories written before the grey-fill COS had its own run
    runs = [(n, summaries[n]) for n in (f"{bench}/table1", f"{bench}/cos_grey", f"{bench}/cos_blur", f"{bench}/cos_patch_drop")
            if n in stores]
    if not any("cos" in s for _, s in runs for s in s["sources"].values()):
        return []
    area = any("area_matched" in src["cos"] for _, s in runs for src in s["sources"].values() if "cos" in src)
    lines = [f"## {title}: causal occlusion (Table 4), every operator and control", "",
             "COS = ΔS_opp − ΔS_sector (> 0: occluding the sector hurts more than occluding its opposite). "
             "*peak*: the source's peak sector; *adjacent*: COS against the two neighbouring sectors"
             + ("; *area-matched*: against an occlusion of as many pixels elsewhere" if area else
                "; the area-matched control is not computed by this version of creg.explain.occlusion") + ". "
             "*true* (the sector holding θ_true) is the model's reading, the same for every source.", "",
             "| Operator | Method | n | ΔS_peak | ΔS_opp | COS peak [95% CI] | COS adjacent |"
             + (" COS area-matched |" if area else ""), "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if area else "")]
    rows = []
    for run_name, s in runs:
        for src, row in s["sources"].items():
            c = row.get("cos")
            if not c:
                continue
            p, a = c["peak"], c["adjacent"]
            am = (c.get("area_matched") or {}).get("cos", {}).get("mean") if area else None
            rows.append({"run": run_name, "op": c["op"], "source": src, "n": c["n"], "peak": p, "adjacent": a,
                         "area_matched": c.get("area_matched"), "true": c["true"]})
            lines.append(f"| {c['op']} | {src} | {c['n']} | {format_number(p['delta']['mean'], 3, sign=True)} | "
                         f"{format_number(p['delta_opp']['mean'], 3, sign=True)} | {format_number(p['cos']['mean'], 3, p['cos']['ci'], 3, sign=True)} | "
                         f"{format_number(a['cos']['mean'], 3, sign=True)} |" + (f" {format_number(am, 3, sign=True)} |" if area else ""))
    lines += ["", "| Operator | true direction: n | ΔS_true | ΔS_opp | COS | paper ΔS_true | paper ΔS_opp | paper COS |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    seen = set()
    for r in rows:
        if r["op"] in seen:
            continue
        seen.add(r["op"])
        t = r["true"]
        pp = [(_published(compare, table="Table 4", metric=m) if r["op"] == "grey" else None) for m in ("delta_true", "delta_opp", "cos")]
        lines.append(f"| {r['op']} | {r['n']} | {format_number(t['delta']['mean'], 3, sign=True)} | {format_number(t['delta_opp']['mean'], 3, sign=True)} | "
                     f"{format_number(t['cos']['mean'], 3, t['cos']['ci'], 3, sign=True)} | " + " | ".join(_paper(v, 3) for v in pp) + " |")
    lines += ["", "The paper used grey fill only; its Table 4 reads the sector CREG indicates / the true direction.", ""]
    report["tables"][f"{bench}/cos"] = rows
    return lines


def _correctness_section(bench: str, summary, report, compare: str) -> list[str]:
    srcs = summary["sources"]
    if "creg" not in srcs or "creg_gt" not in srcs or "by_correct" not in srcs["creg"]:
        return []
    title = BENCH_TITLES.get(bench, bench)
    lines = [f"## {title}: correct vs incorrect (Table 3)", "",
             "| Subset | n | GT DAE sector centre↓ | paper | GT EA↑ | paper | Pred DAE sector centre↓ | paper | Pred EA↑ | paper |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = {}
    for subset in ("all", "correct", "incorrect"):
        row = {src: (srcs[src] if subset == "all" else srcs[src]["by_correct"][subset]) for src in ("creg_gt", "creg")}
        pub = {(src, m): _published(compare, table="Table 3", source=src, metric=m, subset=subset)
               for src in ("creg_gt", "creg") for m in ("dae", "ea")}
        rows[subset] = {src: {"n": r["n"], "dae": r.get("dae"), "dae_sector": r.get("dae_sector"), "ea": r.get("ea"),
                              "paper_dae": pub[(src, "dae")], "paper_ea": pub[(src, "ea")]} for src, r in row.items()}
        g, p = row["creg_gt"], row["creg"]
        lines.append(f"| {subset} | {p['n']} | {format_number(g.get('dae_sector'), 1)} | {_paper(pub[('creg_gt', 'dae')], 1)} | "
                     f"{format_number(g.get('ea'), 3)} | {_paper(pub[('creg_gt', 'ea')], 3)} | {format_number(p.get('dae_sector'), 1)} | "
                     f"{_paper(pub[('creg', 'dae')], 1)} | {format_number(p.get('ea'), 3)} | {_paper(pub[('creg', 'ea')], 3)} |")
    report["tables"][f"{bench}/correctness"] = rows
    return lines + [""]


def _per_class_section(bench: str, records, report, compare: str) -> list[str]:
    pc = breakdowns.per_class(records)
    if not pc["accuracy"]:
        return []
    title = BENCH_TITLES.get(bench, bench)
    lines = [f"## {title}: per class (§6.2, Fig. 4)", "", "| | " + " | ".join(RELATIONS) + " |", "|---|" + "---:|" * len(RELATIONS)]
    lines.append("| VLM accuracy | " + " | ".join(f"{format_number(pc['accuracy'][r]['accuracy'], 3)} (n={pc['accuracy'][r]['n']})" for r in RELATIONS) + " |")
    pub = [_published(compare, table="§6.2", subset=r) for r in RELATIONS]
    if any(v is not None for v in pub):
        lines.append("| paper VLM accuracy | " + " | ".join(_paper(v, 3) for v in pub) + " |")
    for src in pc["sources"]:
        lines.append(f"| {src} DAE | " + " | ".join(format_number(pc["sources"][src][r].get("dae"), 1) for r in RELATIONS) + " |")
    report["tables"][f"{bench}/per_class"] = pc
    chance = f"Chance: accuracy {pc['chance']['accuracy']:.2f}" + (f", DAE {pc['chance']['dae']:.1f}" if "dae" in pc["chance"] else "")
    return lines + ["", chance + ". A source whose DAE is low for some classes and high for others leans one way "
                    "whatever the answer; the mean DAE of Table 1 hides such a lean.", ""]


def _grid_section(root: str, title: str, published_rows, stores, summaries, report, bench: str, *, accuracy: bool = False) -> list[str]:
    names = [n for n in stores if n.startswith(f"{root}/") and n.count("/") == 1]
    if not names:
        return []
    lines = [f"## {title}", "",
             "| Configuration | n |" + (" VLM ACC | paper |" if accuracy else "") + " DAE↓ | DAE sector centre↓ | paper DAE | EA↑ | paper EA |",
             "|---|---:|" + ("---:|---:|" if accuracy else "") + "---:|---:|---:|---:|---:|"]
    rows = {}
    for name in names:
        variant = name.split("/", 1)[1]
        s = summaries[name]
        src = s["sources"].get("creg", {})
        pub = {p.metric: p.value for p in published_rows if p.variant == variant and p.benchmark == bench}
        label = breakdowns.ABLATION_LABELS.get(variant, variant) if root == "ablation" else f"prompt {variant}"
        rows[variant] = {"label": label, "n": src.get("n"), "dae": src.get("dae"), "dae_sector": src.get("dae_sector"),
                         "ea": src.get("ea"), "vlm_accuracy": s.get("vlm_accuracy"), "paper": pub}
        acc = f" {format_number(s.get('vlm_accuracy'), 3)} | {_paper(pub.get('vlm_accuracy'), 3)} |" if accuracy else ""
        lines.append(f"| {label} | {src.get('n')} |{acc} {format_number(src.get('dae'), 1)} | {format_number(src.get('dae_sector'), 1)} | "
                     f"{_paper(pub.get('dae'), 1)} | {format_number(src.get('ea'), 3)} | {_paper(pub.get('ea'), 3)} |")
    report["tables"][root] = rows
    return lines + [""]


def _flip_section(stores, report, bench: str, name: str) -> list[str]:
    """§6.1 on run ``name`` and its ``flip/`` re-run (``ablation/default`` in reproductions of
    creg before the flip re-ran the COS run's sources)."""
    if name not in stores:
        return []
    flip = stores[name].sub("flip")
    if flip is None:
        return []
    records, flipped = stores[name].records(), flip.records()
    result = breakdowns.flip_equivariance(records, flipped)
    pub = _published(bench, table="§6.1", metric="flip_r")
    lines = [f"## Flip equivariance (§6.1; `{name}` and its flipped re-run)", "",
             "Pearson r between each sample's compass and the mirrored compass of its left-right flipped image "
             "(+1: the explanation turns with the image); peak agreement: the mirrored flipped peak is the original peak.", "",
             "| Method | n | r (mean per sample) | paper r | r (pooled) | peak agreement |", "|---|---:|---:|---:|---:|---:|"]
    for src, f in result.items():
        lines.append(f"| {src} | {f['n']} | {format_number(f['r_mean'], 3, sign=True)} | {_paper(pub if src == 'creg' else None, 3)} | "
                     f"{format_number(f['r_pooled'], 3, sign=True)} | {f['peak_agreement']:.3f} |")
    answers = answer_flip_equivariance(records, flipped)
    if answers["n"]:
        lines += ["", f"The model's answers: on {answers['equivariant']} of {answers['n']} pairs "
                      f"({answers['share']:.3f}) the answer on the flipped image is the mirrored answer on the original."]
    report["tables"]["flip"] = result
    report["tables"]["flip_answers"] = answers
    return lines + [""]


def answer_flip_equivariance(records, flipped) -> dict[str, Any]:
    """How many (sample, flipped sample) pairs get mirrored answers (left <-> right, above and below
    kept): ``{"n", "equivariant", "share"}``; samples without an answer are left out."""

    original = {r.sample_id: r.pred for r in records if r.pred is not None}
    mirrored = {r.sample_id: r.pred for r in flipped if r.pred is not None}
    ids = sorted(original.keys() & mirrored.keys())
    hits = sum(FLIPPED_RELATION[original[i]] == mirrored[i] for i in ids)
    return {"n": len(ids), "equivariant": hits, "share": hits / len(ids) if ids else None}
