"""What a reader of a run must not miss, as one list: computed once from what the run store holds
(``config.json``, the records, the summary) and rendered by ``table.md`` (and so the terminal),
``report.md`` and ``creg reproduce`` alike.

Each warning is a plain dict ``{"kind", "message", "source"?, ...details}``; ``summary.json`` carries
the list under ``"warnings"``. Kinds:

* ``shortfall`` -- the benchmark returned fewer samples than asked (asked, got, per class);
* ``benchmark`` -- a warning the benchmark itself wrote into its description (a missing annotation
  file, a class that ran out of candidates: the per-class detail);
* ``failed`` -- samples that failed and are not in the numbers (reason: count);
* ``no_samples`` -- the run holds no sample at all (the runner then stops with an error);
* ``skipped`` -- the benchmark skipped samples (missing or unreadable images, bad rows) and no
  shortfall warning already says so: reason and count;
* ``accuracy_at_chance`` -- the 95% CI of the VLM accuracy includes chance (1 / number of answers),
  or the accuracy is at or below it: its attributions may explain guesses;
* ``out_of_domain`` -- the model's preset declares the benchmarks it was trained for
  (``domain`` in registry.toml) and this benchmark is not one of them;
* ``not_better_than_random`` -- a source whose DAE is not significantly lower than
  ``random_relevance``'s on the same samples (creg.summary.versus_random; not for the chance
  controls ``random`` and ``random_relevance`` themselves);
* ``no_figure`` -- a source gets no example figure (no sample with a defined DAE);
* ``flagged`` -- a source's records with degenerate relevance (no mass within r_max, non-finite
  values, A and B at the same centre), per flag;
* ``roundoff`` -- a source's records flagged ``roundoff_layer_<l>``: Grad x Act at layer l cancels
  to round-off (:mod:`creg.sources.roundoff`), once per source and layer;
* ``partial`` -- the run did not finish;
* ``blank_prior`` / ``blank_dae`` / ``blank_empty`` -- the blank-image control (``--control blank``): a
  source's peaks on blanks are not uniform, a class's DAE on scenes is no better than on blanks, or most
  of its blank maps are empty (creg.summary.prior).
"""

from __future__ import annotations

from typing import Any, Sequence

from creg.core.records import SampleRecord
from creg.core.roundoff import flag_layer
from creg.core.sample import RELATIONS
from creg.summary.examples import select_examples
from creg.summary.prior import control_warnings
from creg.summary.versus_random import CHANCE_CONTROLS

#: Flags that make a record's compass meaningless (uniform P, DAE undefined or drawn at random).
WARNED_FLAGS = {
    "no_mass": "no relevance mass within r_max (uniform compass)",
    "nonfinite_relevance": "non-finite relevance values (set to 0)",
    "zero_distance": "A and B share their centre (DAE undefined)",
    "no_signal": "every relevance value was NaN or inf: no signal (DAE undefined)",
}

#: VLM accuracy of guessing among the answer options.
CHANCE_ACCURACY = 1.0 / len(RELATIONS)


def run_warnings(config: dict[str, Any] | None, summary: dict[str, Any],
                 records: Sequence[SampleRecord] = ()) -> list[dict[str, Any]]:
    """The warnings of one run. ``config``: the ``config.json`` document (``run`` and ``benchmark``);
    ``summary``: the ``summary.json`` object (``n_samples``, ``complete``, ``skipped``,
    ``vlm_accuracy``, per-source ``flags``); ``records``: the joined records (for figure coverage)."""
    config = config or {}
    run = config.get("run") or {}
    bench = config.get("benchmark") or {}
    name = bench.get("name") or run.get("bench") or summary.get("bench") or "benchmark"
    out: list[dict[str, Any]] = []
    complete = summary.get("complete", True)
    if not complete:
        out.append({"kind": "partial", "message": "partial run: re-run the same command to finish it"})

    asked = run.get("n") if run.get("n") is not None else bench.get("n")
    got = int(summary.get("n_samples") or 0)
    skipped = {k: int(v) for k, v in (summary.get("skipped") or {}).items()}
    if complete and got == 0:
        out.append({"kind": "no_samples", "message": f"{name}: no sample was explained: the numbers below mean nothing"})
    if complete and asked is not None and got < int(asked):
        per_class = bench.get("per_class") or {}
        short = bench.get("shortfall") or {}
        detail = ""
        if per_class:
            detail = " (" + ", ".join(
                f"{r} {per_class.get(r, 0)}" + (f" of {per_class.get(r, 0) + short[r]}" if short.get(r) else "")
                for r in RELATIONS if r in per_class) + ")"
        why = ("; skipped: " + ", ".join(f"{k} {v}" for k, v in skipped.items())) if skipped else ""
        out.append({"kind": "shortfall", "asked": int(asked), "got": got, "per_class": dict(per_class),
                    "shortfall_per_class": dict(short),
                    "message": f"{name}: asked for {int(asked)} samples, got {got}{detail}{why}"})
    if skipped and not any(w["kind"] == "shortfall" for w in out):
        total = sum(skipped.values())
        out.append({"kind": "skipped", "skipped": dict(skipped),
                    "message": f"{name}: {total} sample{'s' if total != 1 else ''} skipped and not in the numbers ("
                               + ", ".join(f"{k} {v}" for k, v in skipped.items())
                               + "); config.json (benchmark.problems) and skipped.jsonl name the first ones"})
    domain = config.get("domain") or {}
    if domain.get("benchmarks") and name not in domain["benchmarks"]:
        out.append({"kind": "out_of_domain", "preset": domain.get("preset"), "domain": list(domain["benchmarks"]),
                    "message": f"{domain.get('preset')} was trained for {', '.join(domain['benchmarks'])} only "
                               f"(its domain in registry.toml); on {name} it runs far outside its training domain: "
                               "these numbers say little about a VLM's spatial reasoning"})
    for text in bench.get("warnings") or []:
        out.append({"kind": "benchmark", "message": f"{name}: {text}"})

    acc = summary.get("vlm_accuracy")
    ci = summary.get("vlm_accuracy_ci")
    if acc is not None and (acc <= CHANCE_ACCURACY + 1e-12 or (ci is not None and ci[0] <= CHANCE_ACCURACY + 1e-12)):
        where = ("is at or below chance" if acc <= CHANCE_ACCURACY + 1e-12 else
                 f"has a 95% CI [{ci[0]:.2f}, {ci[1]:.2f}] that includes chance")
        out.append({"kind": "accuracy_at_chance", "accuracy": acc, "ci": ci, "chance": CHANCE_ACCURACY,
                    "message": f"VLM accuracy {acc:.3f} {where} ({CHANCE_ACCURACY:.2f} = 1/{len(RELATIONS)} answers): "
                               "the attributions may explain guesses"})

    if records:

        groups: dict[str, list[SampleRecord]] = {}
        for r in records:
            groups.setdefault(r.source, []).append(r)
        for source, recs in groups.items():
            if not select_examples(recs):
                out.append({"kind": "no_figure", "source": source,
                            "message": f"{source}: no example figure (no sample with a defined DAE)"})


    for source, s in (summary.get("sources") or {}).items():
        vs = s.get("vs_random") or {}
        if vs.get("beats") is False and source not in CHANCE_CONTROLS:
            out.append({"kind": "not_better_than_random", "source": source, "baseline": vs["baseline"],
                        "diff": vs["diff"], "ci": vs["ci"], "p_holm": vs["p_holm"],
                        "message": f"{source} does not beat {vs['baseline']} on {vs['metric'].upper()} (difference "
                                   f"{vs['diff']:+.1f} [{vs['ci'][0]:+.1f}, {vs['ci'][1]:+.1f}], Holm p {vs['p_holm']:.2g}, "
                                   f"n={vs['n']}): its maps show no more direction than random relevance here"})

    for source, s in (summary.get("sources") or {}).items():
        flags = s.get("flags") or {}
        n = s.get("n") or 0
        for flag, why in WARNED_FLAGS.items():
            if flags.get(flag):
                out.append({"kind": "flagged", "source": source, "flag": flag, "count": int(flags[flag]), "n": n,
                            "message": f"{source}: {flags[flag]} of {n} records flagged {flag}: {why}"})
        for flag, count in flags.items():
            layer = flag_layer(flag)
            if layer is not None and count:
                out.append({"kind": "roundoff", "source": source, "flag": flag, "layer": layer, "count": int(count),
                            "n": n, "message": f"{source}: round-off at layer {layer} in {count} of {n} records "
                            f"(Grad x Act cancels to the size of float round-off or of the norm's eps: this layer "
                            f"measures no evidence; see docs/paper-to-code.md)"})

    out += control_warnings((summary.get("controls") or {}).get("blank"))
    return out


def warnings_markdown(warnings: Sequence[dict[str, Any]], *, heading: str | None = "**Warnings**") -> str:
    """A Markdown list (``heading``, then one ``- `` line each); empty when there are none."""
    if not warnings:
        return ""
    lines = [heading, ""] if heading else []
    lines += [f"- ⚠ {w['message']}" for w in warnings]
    return "\n".join(lines) + "\n"
