"""A run: one benchmark, one model (or none), several relevance sources.

A run directory holds::

    config.json     the resolved configuration (what to re-run, and what a resume checks)
    samples.jsonl   one line per processed sample: ids, boxes, names, meta (image/annotation ids)
    records.jsonl   one line per sample and source (:class:`creg.records.SampleRecord`)
    skipped.jsonl   one line per sample that could not be processed, with the reason
    summary.json    metrics (:mod:`creg.reporting.summary`), written atomically
    table.md        the Table-1-style Markdown table

Nothing is lost: records are appended and flushed (fsync) after every batch; running the same
command again continues where it stopped, processing each sample exactly once; Ctrl-C or a
crash leaves a valid partial run whose summary says ``"complete": false``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import __version__
from .adapter import ForwardRequest, VLMAdapter
from .compass import project_to_compass
from .context import ExplainContext, merge_requests
from .metrics import direction_alignment_error, edge_hit
from .occlusion import CosQuery, causal_occlusion
from .plugins import Plugins, get_plugins
from .records import SampleRecord
from .registry import load_registry
from .run_config import NO_MODEL, RunConfig, RunError, build_benchmark, build_sources, resolve_adapter  # noqa: F401 (re-exported)
from .sample import RELATIONS, ImageUnreadable, InvalidSample, Sample
from .reporting.summary import markdown_table, summarize, write_atomic, write_json_atomic

@dataclass
class RunResult:
    out: Path
    summary: dict[str, Any]
    table: str
    processed: int = 0
    resumed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _read_done(records_path: Path) -> tuple[set[tuple[str, str]], list[SampleRecord]]:
    """Records already written; a torn last line (a crash mid-write) is cut off the file."""
    done: set[tuple[str, str]] = set()
    records: list[SampleRecord] = []
    if not records_path.exists():
        return done, records
    raw = records_path.read_bytes()
    good_len = 0
    for line in raw.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("torn line")
            rec = SampleRecord.model_validate_json(line)
        except ValueError:
            break
        good_len += len(line)
        if (rec.sample_id, rec.source) not in done:
            done.add((rec.sample_id, rec.source))
            records.append(rec)
    if good_len != len(raw):
        with open(records_path, "r+b") as f:
            f.truncate(good_len)
    return done, records


def _keep_samples(samples_path: Path, done_ids: set[str]) -> None:
    """Keep one line per finished sample in ``samples.jsonl``: a crash between writing a sample's
    line and its records (or mid-line) must not leave a duplicate or torn line after the resume."""
    if not samples_path.exists():
        return
    kept: dict[str, str] = {}
    for line in samples_path.read_text().splitlines():
        try:
            sid = json.loads(line)["id"]
        except (ValueError, KeyError, TypeError):
            continue
        if sid in done_ids:
            kept.setdefault(sid, line)
    write_atomic(samples_path, "".join(line + "\n" for line in kept.values()))


def _append_lines(path: Path, lines: Iterable[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if not text:
        return
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def record_for(sample: Sample, source: str, compass, logits: Sequence[float] | None, extra: dict | None = None) -> SampleRecord:
    """Score one compass against the sample's truth (Eq. 6-7)."""
    pred = correct = None
    if logits is not None:
        pred = RELATIONS[int(np.argmax(logits))]
        correct = pred == sample.relation
    defined = "zero_distance" not in compass.flags
    dae = float(direction_alignment_error(compass.peak_angle, sample.angle)) if defined else None
    dae_s = float(direction_alignment_error(compass.sector_angle, sample.angle)) if defined else None
    return SampleRecord(
        sample_id=sample.id, source=source, relation=sample.relation, pred=pred, correct=correct,
        logits=list(map(float, logits)) if logits is not None else None,
        true_angle=sample.angle, compass=[float(p) for p in compass.probs],
        peak_sector=compass.peak_sector, peak_angle=compass.peak_angle, sector_angle=compass.sector_angle,
        dae=dae, dae_sector=dae_s, ea=bool(edge_hit(dae)) if dae is not None else None,
        flags=list(compass.flags), extra=extra or {},
    )


class Runner:
    """Runs a :class:`RunConfig` into a run directory."""

    def __init__(self, config: RunConfig, out: Path, *, plugins: Plugins | None = None,
                 adapter: VLMAdapter | None = None, overwrite: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print):
        self.config = config
        self.out = Path(out)
        self.plugins = plugins or get_plugins()
        self.overwrite = overwrite
        self.progress = progress
        self.log = log
        presets = load_registry(config.registry)
        adapter_cls, self.adapter_config = resolve_adapter(config, self.plugins, presets)
        self.sources = build_sources(config, self.plugins, adapter_cls is not None or adapter is not None)
        if config.cos and adapter_cls is None and adapter is None:
            raise RunError("--cos occludes images and re-asks the model: choose a model with --adapter")
        self.benchmark = build_benchmark(config, self.plugins)
        self._adapter = adapter
        self._adapter_cls = adapter_cls

    # -- run directory -------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        cfg_path = self.out / "config.json"
        if cfg_path.exists() and not self.overwrite:
            stored = json.loads(cfg_path.read_text())
            old = RunConfig(**stored.get("run", {})).identity()
            new = self.config.identity()
            if old != new:
                diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
                raise RunError(
                    f"{self.out} holds a run with a different configuration ({'; '.join(diff)}); "
                    "use another --out, or --overwrite to start it again"
                )
        elif self.overwrite and self.out.exists():
            for name in ("records.jsonl", "samples.jsonl", "skipped.jsonl", "summary.json", "table.md", "config.json"):
                (self.out / name).unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg_path, {
            "creg_version": __version__,
            "run": self.config.model_dump(),
            "adapter": self.adapter_config.model_dump() if self.adapter_config else None,
            "benchmark": self.benchmark.describe(),
        })

    @property
    def adapter(self) -> VLMAdapter | None:
        if self._adapter is None and self._adapter_cls is not None:
            self.log(f"loading {self.config.adapter} ({self.adapter_config.model}) ...")
            self._adapter = self._adapter_cls.load(self.adapter_config)
        return self._adapter

    # -- the loop ------------------------------------------------------------------------
    def _explain_batch(self, batch: list[Sample]) -> list[SampleRecord]:
        request = merge_requests([s.request() for s in self.sources if s.needs_model]) if self.adapter else ForwardRequest()
        ctx = ExplainContext(batch, self.adapter, request, seed=self.config.seed)
        logits = ctx.output.class_logits.detach().float().cpu().numpy() if self.adapter is not None else None
        records, cos_queries = [], []
        for src in self.sources:
            maps = src.explain(ctx)
            for i, (sample, rmap) in enumerate(zip(batch, maps)):
                ref_box = getattr(rmap, "ref_box", None) or sample.ref_box
                compass = project_to_compass(
                    rmap.values, ref_box, sample.tgt_box, sample.image_size,
                    k=self.config.k, sigma_r=self.config.sigma_r, rho_r=self.config.rho_r,
                    cell_xy=rmap.cell_xy, rng=ctx.rng(i, f"tie/{src.name}"),
                )
                records.append(record_for(sample, src.name, compass, None if logits is None else logits[i],
                                          extra=getattr(rmap, "extra", None)))
                cos_queries.append(CosQuery(i, compass.peak_sector, ref_box.center, compass.r_max))
        if self.config.cos:
            cos = causal_occlusion(self.adapter, batch, cos_queries, k=self.config.k, rho_r=self.config.rho_r,
                                   op=self.config.cos_op, cell_xy=[ctx.layout(i).cell_xy for i in range(len(batch))])
            for rec, entry in zip(records, cos):
                rec.cos = entry
        return records

    def _process(self, batch: list[Sample], skipped: dict[str, int]) -> list[tuple[Sample, list[SampleRecord]]]:
        """Records per sample; a sample that fails (bad image) is skipped and logged, not fatal."""
        try:
            recs = self._explain_batch(batch)
            return [(s, [r for r in recs if r.sample_id == s.id]) for s in batch]
        except (FileNotFoundError, ImageUnreadable, InvalidSample) as e:
            if len(batch) > 1:  # find the culprit: one at a time
                out = []
                for s in batch:
                    out += self._process([s], skipped)
                return out
            reason = type(e).__name__
            skipped[reason] = skipped.get(reason, 0) + 1
            _append_lines(self.out / "skipped.jsonl", [json.dumps({"sample_id": batch[0].id, "reason": reason, "error": str(e)})])
            self.log(f"skipped {batch[0].id}: {e}")
            return []

    def _batches(self, samples: Iterator[Sample], done_ids: set[str], bar) -> Iterator[list[Sample]]:
        batch: list[Sample] = []
        for s in samples:
            if s.id in done_ids:
                if bar is not None:
                    bar.update(1)
                continue
            batch.append(s)
            if len(batch) == self.config.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def run(self) -> RunResult:
        self._prepare_dir()
        records_path = self.out / "records.jsonl"
        done, records = _read_done(records_path)
        names = [s.name for s in self.sources]
        per_sample: dict[str, int] = {}
        for sid, _ in done:
            per_sample[sid] = per_sample.get(sid, 0) + 1
        done_ids = {sid for sid, c in per_sample.items() if c >= len(names)}
        prev_skipped = self.out / "skipped.jsonl"
        skipped_ids = set()
        skipped: dict[str, int] = {}
        if prev_skipped.exists():
            for line in prev_skipped.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                skipped_ids.add(row["sample_id"])
                skipped[row["reason"]] = skipped.get(row["reason"], 0) + 1
        resumed = len(done_ids)
        if resumed:
            self.log(f"resuming {self.out}: {resumed} samples already done")
        # records of samples that were only partly written are redone, not duplicated
        partial = {sid for sid, c in per_sample.items() if c < len(names)}
        if partial:
            records = [r for r in records if r.sample_id not in partial]
            write_atomic(records_path, "".join(r.model_dump_json() + "\n" for r in records))
        _keep_samples(self.out / "samples.jsonl", done_ids)

        # benchmarks may yield fewer samples than asked (a class ran short, bad items skipped):
        # list them first so the progress bar's total and ETA are right
        all_samples = list(self.benchmark.samples())
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(all_samples), unit="sample", desc=f"{self.config.bench}", dynamic_ncols=True)
        processed = 0
        complete = False
        t0 = time.perf_counter()
        try:
            for batch in self._batches(iter(all_samples), done_ids | skipped_ids, bar):
                results = self._process(batch, skipped)
                new = [r for _, rs in results for r in rs]
                _append_lines(self.out / "samples.jsonl", [json.dumps(s.summary()) for s, _ in results])
                _append_lines(records_path, [r.model_dump_json() for r in new])
                records += new
                processed += len(results)
                if bar is not None:
                    bar.update(len(batch))
            complete = True
        finally:
            if bar is not None:
                bar.close()
            bench_skipped = dict(getattr(self.benchmark, "skipped", {}) or {})
            all_skipped = {**bench_skipped, **{k: v for k, v in skipped.items()}}
            summary = summarize(
                records, names, seed=self.config.seed, complete=complete, skipped=all_skipped,
                bench=self.config.bench, adapter=self.config.adapter,
                elapsed_s=round(time.perf_counter() - t0, 2),
            )
            title = f"{self.config.bench} · {self.config.adapter} · n={summary['n_samples']}"
            table = markdown_table(summary, title)
            write_json_atomic(self.out / "summary.json", summary)
            write_atomic(self.out / "table.md", table)
        return RunResult(self.out, summary, table, processed, resumed, all_skipped)
