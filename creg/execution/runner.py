"""A run: one benchmark, one model (or none), several relevance sources, into a run directory.

The run directory and its files belong to :mod:`creg.store` (schema, lock, resume checks);
scoring belongs to :mod:`creg.explain`. This module is the loop: batches of samples through
:func:`creg.explain.pipeline.explain_batch`, each finished sample written at once. Where the loop runs
(this process, or the ranks of a ``torchrun`` launch) is an executor's choice
(:mod:`creg.execution.backends`), made through the Runner's public steps.

Nothing is lost: records are appended and flushed (fsync) after every batch; running the same
command again continues where it stopped, processing each sample exactly once; Ctrl-C, SIGTERM
or a crash leaves a valid partial run whose summary says ``"complete": false``.

A sample that fails (an unreadable image, a plugin raising or returning bad output) is recorded
in ``skipped.jsonl`` with its reason, the plugin and a short traceback, and the run goes on; a
re-run retries it. ``max_failures`` stops a run that fails everywhere.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from creg.config.presets import load_registry, model_domain
from creg.config.resolve import (
    build_benchmark,
    build_sources,
    plugin_provenance,
    resolve_adapter,
)
from creg.config.run_config import NO_MODEL, RunConfig  # noqa: F401 (re-exported)
from creg.core.errors import RunError
from creg.core.logs import info as log_info
from creg.core.logs import warning
from creg.core.prompts import resolve_template
from creg.core.sample import Sample
from creg.execution.auto_layers import CACHE, brief, resolve_auto_layers
from creg.execution.backends.local import LocalExecutor
from creg.execution.batching import (
    MAX_AUTO_BATCH,
    batches,
    length_key,
    resolve_batch_size,
)
from creg.execution.signals import Terminated  # noqa: F401 (re-exported)
from creg.explain.pipeline import (
    PluginError,
    SampleError,
    ScoringSettings,
    explain_batch,
    short_traceback,
)
from creg.plugins.adapter import AdapterConfig, LayerOutOfRange, VLMAdapter
from creg.plugins.compatibility import check_sources
from creg.plugins.manager import Plugins, get_plugins
from creg.plugins.metric import MetricsMissing, metric_registry
from creg.plugins.relevance import SourceRequest
from creg.store import Failure, RunWriter, describe_run
from creg.summary.aggregate import markdown_table, summarize
from creg.summary.prior import stored_controls
from creg.summary.warnings import run_warnings

#: Default of ``--max-failures``: stop when more than half of the samples tried have failed
#: (judged once :data:`MIN_TRIED` samples were tried).
DEFAULT_MAX_FAILURES = 0.5
MIN_TRIED = 10


class TooManyFailures(RunError):
    """More samples failed than ``max_failures`` allows."""


class NoSamples(RunError):
    """The run finished without explaining one sample: there is nothing to summarise."""


@dataclass
class RunResult:
    out: Path
    summary: dict[str, Any]
    table: str
    processed: int = 0
    resumed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    #: seconds: ``load`` (the model), ``batch_probe`` (``--batch-size auto``), ``explain`` (the loop)
    timing: dict[str, float] = field(default_factory=dict)


def parse_max_failures(value: str | float | int | None) -> float | int:
    """``--max-failures``: a count (``20``) or a fraction of the samples tried (``0.1``, ``10%``)."""
    if value is None:
        return DEFAULT_MAX_FAILURES
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v: float | int = value
    else:
        text = str(value).strip()
        try:
            v = float(text[:-1]) / 100 if text.endswith("%") else (int(text) if text.isdigit() else float(text))
        except ValueError:
            raise RunError(f"--max-failures {value!r}: expected a count (e.g. 20) or a fraction (e.g. 0.1 or 10%)") from None
    if not math.isfinite(v) or v < 0 or (isinstance(v, float) and not v < 1 and v != int(v)):
        raise RunError(f"--max-failures {value!r}: expected a count >= 0 or a fraction in [0, 1)")
    return int(v) if isinstance(v, float) and v >= 1 else v


class Runner:
    """Runs a :class:`RunConfig` into a run directory."""

    def __init__(self, config: RunConfig, out: Path, *, plugins: Plugins | None = None,
                 adapter: VLMAdapter | None = None, overwrite: bool = False,
                 progress: bool = True, log: Callable[[str], None] = log_info,
                 max_failures: float | int | str | None = None, skip_unsupported: bool = False):
        self.config = config
        self.out = Path(out)
        self.plugins = plugins or get_plugins()
        self.overwrite = overwrite
        self.timing: dict[str, float] = {}
        self.progress = progress
        self.log = log
        self.max_failures = parse_max_failures(max_failures)
        presets = load_registry(config.registry)
        adapter_cls, self.adapter_config = resolve_adapter(config, self.plugins, presets)
        self.sources = build_sources(config, self.plugins, adapter_cls is not None or adapter is not None)
        self._drop_unsupported(adapter_cls or (type(adapter) if adapter is not None else None), skip_unsupported)
        if config.cos and adapter_cls is None and adapter is None:
            raise RunError("--cos occludes images and re-asks the model: choose a model with --adapter")
        if adapter_cls is not None:

            try:
                resolve_template(self.adapter_config.prompt)
            except ValueError as e:
                raise RunError(f"--prompt: {e}") from None
        if config.n == 0:
            raise NoSamples("--limit 0: a run needs at least one sample (leave --limit out for the benchmark's default)")
        self.benchmark = build_benchmark(config, self.plugins)
        self._adapter = adapter
        self._adapter_cls = adapter_cls

        self.settings = ScoringSettings.from_config(config)

        try:
            self._metrics()  # before the run directory is touched
        except MetricsMissing as e:
            raise RunError(str(e)) from None

    def _drop_unsupported(self, adapter_cls: type | None, skip: bool) -> None:
        """Refuse (RunError) a source needing what the adapter does not provide (creg.plugins.capabilities), or with
        ``skip`` drop it, warn, and record only the kept sources in the config (so config.json says what ran)."""

        kept = check_sources(self.config.adapter, adapter_cls, self.sources, skip_unsupported=skip, warn=warning)
        if len(kept) < len(self.sources):
            names = [s.name for s in kept]
            self.config = self.config.model_copy(update={
                "sources": names, "source_options": {k: v for k, v in self.config.source_options.items() if k in names}})
        self.sources = kept

    def describe(self) -> dict[str, Any]:
        """The ``config.json`` document: the configuration as given and as resolved (creg.store.identity)."""
        cls = self._adapter_cls if self._adapter_cls is not None else (type(self._adapter) if self._adapter is not None else None)
        cfg = self.adapter_config
        if cls is not None and cfg is None:  # an adapter object passed in (tests, notebooks)

            cfg = getattr(self._adapter, "config", None) or AdapterConfig(model=type(self._adapter).__name__)
        doc = describe_run(self.config, cls, cfg, self.benchmark.describe())
        # which distribution provided each plugin, and the name clashes seen (informational, not resumed on)
        presets = load_registry(self.config.registry)
        doc["plugins"] = plugin_provenance(self.config, self.plugins, presets).model_dump()

        domain = model_domain(self.config.adapter, self.config.model, presets) if self._adapter_cls is not None else None
        if domain is not None:  # informational (not resumed on): creg.summary.warnings's out_of_domain
            doc["domain"] = domain
        return doc

    @property
    def adapter(self) -> VLMAdapter | None:
        if self._adapter is None and self._adapter_cls is not None:
            self.log(f"loading {self.config.adapter} ({self.adapter_config.model}) ...")
            t0 = time.perf_counter()
            try:
                self._adapter = self._adapter_cls.load(self.adapter_config)
                self.timing["load"] = round(time.perf_counter() - t0, 2)
            except (RunError, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - the run directory is untouched; say what failed
                raise RunError(f"adapter {self.config.adapter!r} could not load {self.adapter_config.model!r}: "
                               f"{type(e).__name__}: {e}") from e
        return self._adapter

    # -- the loop ------------------------------------------------------------------------
    def _process(self, batch: list[Sample], store: RunWriter, failures: dict[str, int]) -> int:
        """Score ``batch`` and write it; a failing batch is retried one sample at a time, so only
        the culprit is recorded as failed. Returns the number of samples finished."""

        try:
            result = explain_batch(batch, self.sources, self.adapter, self.settings, seed=self.config.seed,
                                   adapter_name=self.config.adapter, keep_maps=self.config.save_maps)
        except Exception as e:  # noqa: BLE001 - one sample's failure must not end the run
            depth = e if isinstance(e, LayerOutOfRange) else e.__cause__
            if isinstance(depth, LayerOutOfRange):  # the run asks for layers the model lacks: no sample can run
                raise RunError(str(depth)) from e
            if len(batch) > 1:
                return sum(self._process([s], store, failures) for s in batch)
            plugin = e.plugin if isinstance(e, PluginError) else None
            result = None
            errors = [SampleError(batch[0].id, plugin, e, short_traceback(e))]
        else:
            errors = result.errors
        if result is not None and result.scored:
            store.write_maps(result.maps)  # before the samples' lines: a finished sample has its maps
            store.write_samples(result.scored)
        for err in errors:
            failure = Failure(sample_id=err.sample_id, reason=err.reason, plugin=err.plugin, error=str(err.error),
                              traceback=err.traceback)
            store.write_failure(failure)
            failures[failure.reason] = failures.get(failure.reason, 0) + 1
            self._last_failure = failure
            self.log(f"skipped {err.sample_id}: {err.error}")
        return len(result.scored) if result is not None else 0

    def _batches(self, samples: Iterator[Sample], done_ids: set[str], bar) -> Iterator[list[Sample]]:
        """Batches of similar sequence length (creg.execution.batching), without the finished samples."""


        return batches(samples, self.batch_size, skip=done_ids, key=partial(length_key, adapter=self._adapter),
                       on_skip=(lambda _s: bar.update(1)) if bar is not None else None)

    @property
    def batch_size(self) -> int:
        """The batch size in use: ``--batch-size``, with ``auto`` resolved (:func:`resolve_batch_size`)."""
        if getattr(self, "_batch_size", None) is None:

            adapter = self.adapter
            t0 = time.perf_counter()
            self._batch_size = resolve_batch_size(
                self.config.batch_size, device=getattr(adapter, "device", None) if adapter is not None else None,
                try_batch=self._probe_batch if adapter is not None else None)
            if self.config.batch_size != self._batch_size:
                self.timing["batch_probe"] = round(time.perf_counter() - t0, 2)
            if self.config.batch_size != self._batch_size:
                self.log(f"--batch-size {self.config.batch_size}: {self._batch_size}")
        return self._batch_size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        """Use ``size`` without resolving ``--batch-size`` here (the data-parallel ranks take rank 0's)."""
        self._batch_size = size

    def _probe_batch(self, n: int) -> None:
        """One explain pass over ``n`` copies of the longest of the first samples (``--batch-size auto``)."""


        if not hasattr(self, "_probe_sample"):
            first = list(islice(self.benchmark.samples(), MAX_AUTO_BATCH))
            self._probe_sample = max(first, key=lambda s: length_key(s, self._adapter)) if first else None
        if self._probe_sample is not None:
            explain_batch([self._probe_sample] * n, self.sources, self.adapter, self.settings, seed=self.config.seed,
                          adapter_name=self.config.adapter)

    def check_model(self) -> None:
        """Load the model and check what depends on it, before config.json is written: every layer
        the sources read exists (``creg.layers=[-999]`` is a one-line RunError, not a run whose
        every sample fails)."""

        adapter = self.adapter
        if adapter is None or not callable(getattr(adapter, "check_layers", None)):
            return
        layers: set[int] = set()
        for source in self.sources:
            try:
                req = SourceRequest.of(source.request())
            except Exception:  # noqa: BLE001 - a source whose request needs a batch is checked when it runs
                continue
            layers |= set(req.layers)
            for g in req.gradients:
                layers |= set(g.layers)
        try:
            adapter.check_layers(sorted(layers))
        except LayerOutOfRange as e:
            raise RunError(str(e)) from None

    def execution(self) -> dict[str, Any]:
        """How this process runs (not part of what a resume must match): the resolved batch size,
        and the seconds the model load and the batch-size probe took."""
        size = self.batch_size
        return {"batch_size": size, "seconds": dict(self.timing)}

    def _check_failures(self, tried: int, failed: int) -> None:
        limit = self.max_failures
        too_many = failed > limit if isinstance(limit, int) else (tried >= MIN_TRIED and failed > limit * tried)
        if too_many:
            last = self._last_failure
            where = f" in {last.plugin}" if last.plugin else ""
            allowed = f"{limit}" if isinstance(limit, int) else f"{limit:.0%} of the samples tried"
            raise TooManyFailures(
                f"stopped: {failed} of {tried} samples failed (--max-failures {allowed}); last: {last.reason}{where}: "
                f"{last.error.splitlines()[0][:200] if last.error else ''}; every failure is in {self.out / 'skipped.jsonl'}")

    # -- the steps an executor (creg.execution.backends) drives --------------------------------
    def run(self) -> RunResult:
        """This run in this process: :class:`creg.execution.backends.local.LocalExecutor`."""
        return LocalExecutor().run(self)

    def writer(self, path: Path | None = None, *, doc: dict[str, Any] | None = None,
               overwrite: bool | None = None) -> RunWriter:
        """The run store writing this run into ``path`` (default: its run directory; a data-parallel rank's
        part elsewhere) with ``doc`` as ``config.json`` (default: :meth:`describe`)."""
        return RunWriter(self.out if path is None else path, self.describe() if doc is None else doc,
                         sources=[s.name for s in self.sources],
                         overwrite=self.overwrite if overwrite is None else overwrite, log=self.log)

    def prepare(self, store: RunWriter) -> None:
        """Everything before the first sample, in ``store`` (opened, not started): load (and so validate) the
        model, resolve ``layers=auto``, check the layers the sources read, record how this process runs,
        then start the store (``config.json`` written, a resume repaired)."""
        self.adapter  # noqa: B018 - load (and so validate) the model before the directory changes

        self.layers_auto = resolve_auto_layers(self)  # --source-opt creg.layers=auto (None: not asked)
        if self.layers_auto is not None:
            store.doc["layers_auto"] = brief(self.layers_auto)
        self.check_model()  # every layer the sources read exists, before config.json is written
        store.doc["execution"] = self.execution()
        store.start()
        if self.layers_auto is not None:
            store.write_json_artifact(CACHE, self.layers_auto)

    def pending_samples(self, done_ids: Iterable[str]) -> list[Sample]:
        """The benchmark's samples, in order, without those in ``done_ids``."""
        done = set(done_ids)
        return [s for s in self.benchmark.samples() if s.id not in done]

    def process(self, store: RunWriter, samples: Iterable[Sample] | None = None, *, summary: bool = True) -> RunResult:
        """The loop over ``samples`` (default: the benchmark's), writing into ``store`` (started); then the
        summary (``summary=False``: the caller merges and summarises, :mod:`creg.execution.backends`). An
        error (a failure limit, Ctrl-C) is raised after the summary, if asked, of what was finished."""
        done_ids = set(store.done_ids)
        resumed = len(done_ids)
        if resumed:
            retry = len(store.retry_ids)
            self.log(f"resuming {self.out}: {resumed} samples already done" + (f", {retry} failed ones to retry" if retry else ""))
        bar = None
        if self.progress:

            expected = getattr(self.benchmark, "expected_count", None)
            total = len(samples) if isinstance(samples, Sequence) else (
                expected() if callable(expected) else getattr(self.benchmark, "n", None))
            bar = tqdm(total=total, unit="sample", desc=f"{self.config.bench}", dynamic_ncols=True)
        processed = tried = failed = 0
        failures: dict[str, int] = {}
        self._last_failure = None
        complete = False
        error: BaseException | None = None
        t0 = time.perf_counter()
        try:
            stream = self._recording_order(self.benchmark.samples()) if samples is None else samples
            for batch in self._batches(iter(stream), done_ids, bar):
                n_ok = self._process(batch, store, failures)
                processed += n_ok
                tried += len(batch)
                failed += len(batch) - n_ok
                if bar is not None:
                    bar.update(len(batch))
                if failed:
                    self._check_failures(tried, failed)
            complete = True
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the summary
            error = e
        finally:
            if bar is not None:
                bar.close()
        summary_doc: dict[str, Any] = {}
        table = ""
        all_skipped: dict[str, int] = {}
        try:
            if summary:
                summary_doc, table, all_skipped = self.write_summary(store, complete=complete,
                                                                     elapsed_s=round(time.perf_counter() - t0, 2))
        except Exception as e:  # noqa: BLE001 - the first error is the one to report
            if error is None:
                raise
            self.log(f"could not write the summary either: {type(e).__name__}: {e}")
        if error is not None:
            raise error
        self.timing["explain"] = round(time.perf_counter() - t0, 2)
        return RunResult(self.out, summary_doc, table, processed, resumed, all_skipped, dict(self.timing))

    def write_summary(self, store: RunWriter, *, complete: bool, elapsed_s: float) -> tuple[dict[str, Any], str, dict[str, int]]:
        """Summarise every finished sample of ``store``: ``summary.json`` and ``table.md``."""
        names = [s.name for s in self.sources]
        all_skipped = dict(getattr(self.benchmark, "skipped", {}) or {})
        for f in store.failures():
            all_skipped[f.reason] = all_skipped.get(f.reason, 0) + 1
        if complete and hasattr(store, "sort_samples"):  # the files (and summary) of one uninterrupted process
            store.sort_samples(self._sample_order())
        records = store.records_so_far()
        summary = summarize(
            records, names, seed=self.config.seed, complete=complete, skipped=all_skipped,
            bench=self.config.bench, adapter=self.config.adapter, metrics=self._metrics(), pairwise=True,
            elapsed_s=elapsed_s,
        )

        summary.update(stored_controls(self.out, records, seed=self.config.seed))
        if getattr(self, "layers_auto", None) is not None:

            summary["layers_auto"] = brief(self.layers_auto)
        summary["warnings"] = run_warnings(getattr(store, "doc", None), summary, records)
        title = f"{self.config.bench} · {self.config.adapter} · n={summary['n_samples']}"
        table = markdown_table(summary, title, metrics=self._metrics())
        store.write_summary(summary, table)
        if complete and summary["n_samples"] == 0:
            why = "; ".join(w["message"] for w in summary["warnings"] if w["kind"] != "no_samples")
            raise NoSamples(f"no sample was explained{': ' + why if why else ''}; nothing to summarise "
                            f"(the run directory {self.out} keeps config.json and skipped.jsonl)")
        return summary, table, all_skipped

    def _recording_order(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        """``samples``, remembering their ids in order (the benchmark's order, for :meth:`_sample_order`)."""
        self._order: list[str] = []
        for s in samples:
            self._order.append(s.id)
            yield s
        self._order_complete = True

    def _sample_order(self) -> list[str]:
        """The benchmark's sample ids in order: as this process streamed them, else from the benchmark."""
        if getattr(self, "_order_complete", False):
            return list(self._order)
        return [s.id for s in self.benchmark.samples()]

    def _metrics(self):
        if not hasattr(self, "_metric_registry"):

            self._metric_registry = metric_registry(self.plugins)
        return self._metric_registry

