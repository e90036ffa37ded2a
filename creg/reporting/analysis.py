"""The paper's analyses, computed from a run's records (paper §5.3, §5.5, §6.1, §6.2, App. A.1).

Everything here takes :class:`creg.records.SampleRecord` lists (``records.jsonl``) and returns
plain JSON-able dicts; :mod:`creg.reporting.report` renders them. Functions that need the model again
(flip equivariance, the ablation grid, the prompt sweep) run :class:`creg.runner.Runner` into
sub-directories, so they are resumable like any run.

* :func:`per_class` -- VLM accuracy and DAE/EA per relation class, with the random baselines (Fig. 4).
* :func:`correctness_split` -- DAE/EA on all / correct / incorrect samples for gt- and
  prediction-targeted CREG (Table 3; sources ``creg_gt`` and ``creg``).
* :func:`flip_equivariance` -- Pearson r between a sample's compass and the mirrored compass of the
  horizontally flipped sample (§6.1); :func:`mirror_compass` maps sector k to (K/2 - k) mod K.
* :func:`pairwise_tests` -- paired bootstrap of DAE and EA differences between every two sources
  on the same samples, with Holm-adjusted p-values (§6.5 "Statistical coverage").
* :func:`ablation_configs` / :func:`prompt_configs` / :func:`run_variants` / :func:`variants_table`
  -- Table 5 (K = 4, single layer -2, no contrastive) and Table 6 (prompts A/B/C).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..logs import info as log_info
from ..benchmark import DerivedBenchmark
from ..metrics import paired_bootstrap_many, paired_bootstrap_pvalue
from ..records import SampleRecord
from ..sample import RELATIONS, Box, Sample, make_sample
from .summary import _mean, _registry, answers as _answers, metric_group

#: What a horizontal flip does to the relation classes.
FLIPPED_RELATION = {"left": "right", "right": "left", "above": "above", "below": "below"}


# -- loading ------------------------------------------------------------------------------------

def load_records(path: Path) -> list[SampleRecord]:
    """The records of a run directory (or of the run directory holding ``path``), read through
    :class:`creg.store.RunStore`: a bad line is skipped (and reported there), never the lines after it."""
    from ..store import RunStore

    path = Path(path)
    return RunStore.read(path if path.is_dir() else path.parent).records()


def by_source(records: Iterable[SampleRecord]) -> dict[str, list[SampleRecord]]:
    """Records grouped by source, in first-seen order."""
    out: dict[str, list[SampleRecord]] = {}
    for r in records:
        out.setdefault(r.source, []).append(r)
    return out


def _dae_ea(recs: Sequence[SampleRecord], metrics=None) -> dict[str, Any]:
    """``{"n", METRIC: aggregate}`` for every breakdown metric (DAE, EA, ...)."""
    return metric_group(recs, metrics, ci=False, breakdown=True)


# -- Fig. 4: per class --------------------------------------------------------------------------

def per_class(records: Sequence[SampleRecord], metrics=None, *, seed: int = 0) -> dict[str, Any]:
    """VLM accuracy per class (one answer per sample) and the breakdown metrics (DAE, EA, ...) per
    class and source with their 95% bootstrap CIs (``dae_ci``, ...), with the chance levels:
    accuracy 1/4, and each metric's value for a uniformly random peak for the run's K (§4)."""
    metrics = _registry(metrics)
    k = len(records[0].compass) if records else 8
    answers = _answers(records)
    accuracy = None
    if answers:
        accuracy = {}
        for rel in RELATIONS:
            hits = np.array([r.correct for r in answers.values() if r.relation == rel], dtype=np.float64)
            accuracy[rel] = {"n": int(hits.size), "accuracy": _mean(hits)}
    sources = {
        name: {rel: metric_group([r for r in recs if r.relation == rel], metrics, seed, ci=True, breakdown=True)
               for rel in RELATIONS}
        for name, recs in by_source(records).items()
    }
    chance = {"accuracy": 0.25, **{m.name: float(m.chance(k)) for m in metrics if m.breakdown and m.chance is not None}}
    return {"k": k, "accuracy": accuracy, "sources": sources, "chance": chance}


# -- Table 3: correct vs incorrect x gt/pred targeting -------------------------------------------

def correctness_split(records: Sequence[SampleRecord], *, gt_source: str = "creg_gt",
                      pred_source: str = "creg", metrics=None) -> dict[str, Any] | None:
    """DAE/EA of gt- and prediction-targeted attribution on all, correct and incorrect samples
    (Table 3). None unless the run has a model and both sources."""
    groups = by_source(records)
    if gt_source not in groups or pred_source not in groups or not _answers(records):
        return None
    rows: dict[str, Any] = {}
    for subset, keep in (("all", lambda r: True), ("correct", lambda r: r.correct is True),
                         ("incorrect", lambda r: r.correct is False)):
        rows[subset] = {mode: _dae_ea([r for r in groups[src] if keep(r)], metrics)
                        for mode, src in (("gt", gt_source), ("pred", pred_source))}
    acc = np.array([r.correct for r in _answers(records).values()], dtype=np.float64)
    return {"gt_source": gt_source, "pred_source": pred_source, "vlm_accuracy": float(acc.mean()), "rows": rows}


# -- §6.1: flip equivariance ---------------------------------------------------------------------

def mirror_sectors(k: int) -> np.ndarray:
    """``(K,)`` index map of a horizontal flip: sector k (centre c_k) goes to the sector centred at
    180 - c_k, i.e. (K/2 - k) mod K. Defined for even K only (odd K has no mirrored centres)."""
    if k % 2:
        raise ValueError(f"a horizontal flip maps sector centres onto sector centres only for even K, got K={k}")
    return (k // 2 - np.arange(k)) % k


def mirror_compass(probs) -> np.ndarray:
    """``(..., K)``: the compass of a flipped image re-indexed into the original frame,
    ``out[..., k] = probs[..., (K/2 - k) mod K]`` (the map is its own inverse)."""
    p = np.asarray(probs, dtype=np.float64)
    return p[..., mirror_sectors(p.shape[-1])]


def pearson_rows(a, b) -> np.ndarray:
    """Pearson r of each row pair of two ``(n, K)`` arrays; NaN where a row is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-15, (a * b).sum(-1) / np.where(den > 1e-15, den, 1.0), np.nan)


def flip_equivariance(records: Sequence[SampleRecord], flipped: Sequence[SampleRecord]) -> dict[str, Any]:
    """Per source: Pearson r between P (original) and the mirrored P of the flipped image (§6.1).

    ``r_mean``: mean of the per-sample r (K values each; samples with a constant compass are left
    out and counted in ``n_constant``); ``r_pooled``: one r over all (sample, sector) pairs;
    ``peak_agreement``: share of samples whose mirrored flipped peak is the original peak.
    """
    flipped_by = {(r.sample_id, r.source): r for r in flipped}
    out: dict[str, Any] = {}
    for name, recs in by_source(records).items():
        pairs = [(r, flipped_by[(r.sample_id, name)]) for r in recs if (r.sample_id, name) in flipped_by]
        if not pairs:
            continue
        p = np.array([a.compass for a, _ in pairs])
        q = mirror_compass(np.array([b.compass for _, b in pairs]))
        r = pearson_rows(p, q)
        ok = ~np.isnan(r)
        pooled = pearson_rows(p.reshape(1, -1), q.reshape(1, -1))[0]
        mirrored_peak = mirror_sectors(p.shape[1])[[b.peak_sector for _, b in pairs]]
        out[name] = {
            "n": len(pairs),
            "r_mean": float(r[ok].mean()) if ok.any() else None,
            "r_pooled": None if np.isnan(pooled) else float(pooled),
            "n_constant": int((~ok).sum()),
            "peak_agreement": float(np.mean(mirrored_peak == np.array([a.peak_sector for a, _ in pairs]))),
        }
    return out


def flip_sample(sample: Sample) -> Sample:
    """The sample mirrored left-right: image, both boxes (x -> W - x) and the relation."""
    from PIL import ImageOps

    w, _ = sample.image_size

    def mirror(b: Box) -> Box:
        return Box(x0=w - b.x1, y0=b.y0, x1=w - b.x0, y1=b.y1)

    return make_sample(
        id=sample.id, image=ImageOps.mirror(sample.load_image()), image_size=sample.image_size,
        ref_name=sample.ref_name, ref_box=mirror(sample.ref_box), tgt_name=sample.tgt_name,
        tgt_box=mirror(sample.tgt_box), relation=FLIPPED_RELATION[sample.relation],
        meta={**sample.meta, "flipped": True},
    )


class FlippedBenchmark(DerivedBenchmark):
    """Another benchmark's samples, each mirrored left-right (same ids, for pairing)."""

    name = "flipped"
    marker = "flipped"
    description = "horizontally flipped samples of another benchmark (flip equivariance, §6.1)"

    def derive(self, sample: Sample) -> Sample:
        return flip_sample(sample)


def run_flipped(run_dir: Path, *, progress: bool = True, log: Callable[[str], None] = log_info, adapter=None):
    """Re-run a run's configuration on flipped images into ``RUN_DIR/flip`` (resumable; no COS).
    ``adapter``: an already loaded model of the same configuration (none: loaded here)."""
    from ..runner import Runner, RunConfig

    from ..store import RunStore

    store = RunStore.read(run_dir)
    from ..analyses.auto_layers import resolved_source_options

    config = RunConfig(**store.config["run"]).model_copy(
        update={"cos": False, "controls": [], "source_options": resolved_source_options(store.config)})
    runner = Runner(config, store.sub_path("flip"), adapter=adapter, progress=progress, log=log)
    runner.benchmark = FlippedBenchmark(runner.benchmark)
    return runner.run()


# -- pairwise significance -----------------------------------------------------------------------

def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def metric_values(records: Sequence[SampleRecord], metrics) -> dict[tuple[str, str], dict[str, float]]:
    """``{(source, metric): {sample_id: value}}`` of every paired metric, NaN (undefined) values left out."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for name, recs in by_source(records).items():
        for m in metrics:
            v = m.values(recs)
            values[(name, m.name)] = {r.sample_id: float(x) for r, x in zip(recs, v) if not np.isnan(x)}
    return values


def paired_test(va: dict[str, float], vb: dict[str, float], *, n_boot: int, seed: int) -> dict[str, Any]:
    """:func:`creg.metrics.paired_bootstrap_pvalue` of ``va - vb`` on the sample ids both define."""
    ids = sorted(va.keys() & vb.keys())
    x = np.array([va[i] for i in ids], dtype=np.float64)
    y = np.array([vb[i] for i in ids], dtype=np.float64)
    return {"n_boot": n_boot, **paired_bootstrap_pvalue(x, y, n_boot=n_boot, seed=seed)}


def adjust_holm(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``p_holm`` to every test with samples, adjusting within each metric over all its tests."""
    for name in dict.fromkeys(t["metric"] for t in tests):
        rows = [t for t in tests if t["metric"] == name and t["n"] > 0]
        for t, p in zip(rows, holm([t["p"] for t in rows])):
            t["p_holm"] = float(p)
    return tests


def pairwise_tests(records: Sequence[SampleRecord], *, n_boot: int = 10000, seed: int = 0, metrics=None,
                   baseline: str | None = None) -> list[dict[str, Any]]:
    """Paired bootstrap (:func:`creg.metrics.paired_bootstrap_pvalue`) of the mean difference of
    every paired metric (DAE, EA, ...; first source minus second) for every two sources, on the
    samples where both sources' values are defined; ``p_holm`` adjusts within each metric over all pairs.

    With ``baseline`` (a source of the run) only each other source against it is tested (source
    minus baseline): fewer tests, so a smaller Holm correction. ValueError if the run lacks it."""
    metrics = [m for m in _registry(metrics) if m.paired]
    groups = list(by_source(records))
    if baseline is not None and baseline not in groups:
        raise ValueError(f"baseline source {baseline!r} is not in this run (its sources: {', '.join(groups)})")
    pairs = [(s, baseline) for s in groups if s != baseline] if baseline is not None else itertools.combinations(groups, 2)
    values = metric_values(records, metrics)
    tests: list[dict[str, Any]] = []
    by_ids: dict[tuple[str, ...], list[tuple[int, np.ndarray]]] = {}  # tests on the same samples share resamples
    for a, b in pairs:
        for m in metrics:
            va, vb = values[(a, m.name)], values[(b, m.name)]
            if not va and not vb:
                continue
            ids = tuple(sorted(va.keys() & vb.keys()))
            by_ids.setdefault(ids, []).append((len(tests), np.array([va[i] - vb[i] for i in ids], dtype=np.float64)))
            tests.append({"a": a, "b": b, "metric": m.name, "n_boot": n_boot})
    for ids, group in by_ids.items():
        diffs = np.stack([d for _, d in group]) if ids else np.empty((len(group), 0))
        for (i, _), res in zip(group, paired_bootstrap_many(diffs, n_boot=n_boot, seed=seed)):
            tests[i].update(res)
    return adjust_holm(tests)


# -- Table 5 and Table 6: grids of runs -----------------------------------------------------------

def ablation_configs(base) -> dict[str, Any]:
    """Table 5's rows from a base :class:`~creg.runner.RunConfig` (its creg options are the default):
    ``default``, ``k4`` (K = 4), ``single_layer`` (layers [-2]), ``no_contrastive``."""
    creg_opts = dict(base.source_options.get("creg", {}))

    def variant(**update):
        return base.model_copy(update={"sources": ["creg"], "cos": False, **update})

    return {
        "default": variant(source_options={"creg": creg_opts}),
        "k4": variant(source_options={"creg": creg_opts}, k=4),
        "single_layer": variant(source_options={"creg": {**creg_opts, "layers": [-2]}}),
        "no_contrastive": variant(source_options={"creg": {**creg_opts, "contrastive": False}}),
    }


ABLATION_LABELS = {"default": "CREG (default)", "k4": "K = 4 sectors", "single_layer": "Single layer (l = -2)",
                   "no_contrastive": "No contrastive"}


def prompt_configs(base, prompts: Sequence[str] = ("A", "B", "C")) -> dict[str, Any]:
    """Table 6's rows: the base configuration (source ``creg``) with each prompt template."""
    return {p: base.model_copy(update={"sources": ["creg"], "cos": False, "prompt": p}) for p in prompts}


def run_variants(configs: dict[str, Any], out_root: Path, *, progress: bool = True,
                 log: Callable[[str], None] = log_info, adapter=None) -> dict[str, dict[str, Any]]:
    """Run each configuration into ``out_root/NAME`` (resumable) and return their summaries.
    One model load is shared when every configuration names the same model; ``adapter``: a model
    already loaded for that configuration (used only when every configuration names the same one)."""
    from ..runner import Runner

    summaries: dict[str, dict[str, Any]] = {}
    first = next(iter(configs.values()), None)
    if first is not None and any((c.adapter, c.model, c.dtype, c.device, c.prompt) != (first.adapter, first.model, first.dtype, first.device, first.prompt)
                                 for c in configs.values()):
        adapter = None
    for name, config in configs.items():
        runner = Runner(config, Path(out_root) / name, adapter=adapter, progress=progress, log=log)
        summaries[name] = runner.run().summary
        same_model = all((c.adapter, c.model, c.dtype, c.device, c.prompt) == (config.adapter, config.model, config.dtype, config.device, config.prompt)
                         for c in configs.values())
        adapter = runner.adapter if same_model else None
    return summaries


def variants_table(summaries: dict[str, dict[str, Any]], *, source: str = "creg",
                   labels: dict[str, str] | None = None, accuracy: bool = False) -> dict[str, Any]:
    """Rows ``{name: {"label", "n", "dae", "ea", "vlm_accuracy"}}`` of ``source`` in each summary."""
    rows = {}
    for name, s in summaries.items():
        src = s["sources"].get(source, {})
        rows[name] = {"label": (labels or {}).get(name, name), "n": src.get("n"), "dae": src.get("dae"),
                      "ea": src.get("ea"), "vlm_accuracy": s.get("vlm_accuracy") if accuracy else None}
    return rows
