"""The run store: the only code that reads or writes a run directory.

A run directory (schema :data:`~creg.store.schema.SCHEMA_VERSION`, docs/user-guide.md)::

    config.json     the resolved configuration and schema version (creg.store.identity)
    samples.jsonl   one line per finished sample: its facts (SampleFacts)
    records.jsonl   one line per finished sample and source (SourceRow)
    skipped.jsonl   one line per failed attempt at a sample (Failure); retried by a resume
    rejected.jsonl  lines a resume found unreadable, moved here with their line numbers
    summary.json    metrics, written atomically after every run (complete or not)
    table.md        the Table-1-style table
    maps/           one compressed archive of relevance maps per finished sample (creg.store.maps)
    report.md, report.json, figures/   written by ``creg report``
    flip/           a nested run directory (``creg analyze flip``)
    .lock           the writer's fcntl lock

Readers (:meth:`RunStore.read`) never change a file; a bad line anywhere is reported with its
line number (:attr:`RunStore.problems`) and costs only itself. One writer at a time
(:class:`RunWriter`, an exclusive lock); it appends whole lines with fsync, so a crash leaves at
most one torn last line, which the next writer removes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import ValidationError

from creg.config.run_config import RunConfig, config_error_message
from creg.core.logs import info as log_info
from creg.core.records import SampleRecord, join, record_facts
from creg.store.files import (
    DirLock,
    LinkRefused,
    LockBusy,
    append_lines,
    dumps,
    read_json_lines,
    write_atomic,
    write_json_atomic,
)
from creg.store.identity import resume_differences
from creg.store.layout import (
    CONFIG,
    RECORDS,
    REJECTED,
    SAMPLES,
    SKIPPED,
    SUMMARY,
    TABLE,
    RunDirError,
    inside,
    no_link_below,
    refuse_links,
)
from creg.store.maps import MAPS, StoredMap, decode_maps, encode_maps, map_file_name
from creg.store.parts import absorb_parts
from creg.store.schema import (
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    Failure,
    SampleFacts,
    SourceRow,
)


class RunStore:
    """Read access to a run directory (and the report artifacts it holds)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.problems: list[str] = []
        self._config: dict[str, Any] | None = None
        self._loaded = False

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def read(cls, path: Path | str) -> "RunStore":
        """Open an existing run directory for reading; :class:`RunDirError` if it is not one."""
        store = cls(path)
        refuse_links(store.path)
        if not (store.path / CONFIG).is_file():
            raise RunDirError(f"{store.path} is not a run directory (no {CONFIG}); make one with `creg run`")
        store.config  # validates the version
        return store

    @staticmethod
    def is_run_dir(path: Path | str) -> bool:
        return (Path(path) / CONFIG).is_file()

    @property
    def config(self) -> dict[str, Any]:
        """``config.json``: ``schema_version``, ``run`` (the RunConfig), ``adapter`` (resolved), ``benchmark``, ``environment``."""
        if self._config is None:
            try:
                cfg = json.loads((self.path / CONFIG).read_text())
            except ValueError as e:
                raise RunDirError(f"{self.path / CONFIG} is not valid JSON ({e}); the run directory is damaged") from None
            if not isinstance(cfg, dict) or "run" not in cfg:
                raise RunDirError(f"{self.path / CONFIG} is not a creg run configuration")
            if not isinstance(cfg["run"], dict):
                raise RunDirError(f"{self.path / CONFIG}: 'run' is a {type(cfg['run']).__name__}, not a table of "
                                  "settings; the run directory is damaged")
            version = cfg.get("schema_version", 1)
            if version not in READABLE_VERSIONS:
                raise RunDirError(
                    f"{self.path} has run-directory schema version {version}; this creg reads versions "
                    f"{', '.join(map(str, READABLE_VERSIONS))}: install the creg that wrote it (creg {cfg.get('creg_version', '?')})")
            _check_run_settings(self.path / CONFIG, cfg["run"])
            self._config = cfg
        return self._config

    @property
    def schema_version(self) -> int:
        return int(self.config.get("schema_version", 1))

    @property
    def sources(self) -> list[str]:
        return list(self.config["run"].get("sources", []))

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self.problems = []
        if self.schema_version == 1:
            self._load_v1()
        else:
            samples = read_json_lines(self.path / SAMPLES, SampleFacts.model_validate)
            rows = read_json_lines(self.path / RECORDS, SourceRow.model_validate)
            self.problems += samples.problems + rows.problems
            self._samples = {}
            for f in samples.rows:
                self._samples.setdefault(f.id, f)
            self._rows, seen, orphans, dups = [], set(), 0, 0
            for r in rows.rows:
                key = (r.sample_id, r.source)
                if key in seen:
                    dups += 1
                    continue
                if r.sample_id not in self._samples:
                    orphans += 1
                    continue
                seen.add(key)
                self._rows.append(r)
            if dups:
                self.problems.append(f"{RECORDS}: {dups} duplicate rows (same sample and source) ignored")
            if orphans:
                self.problems.append(f"{RECORDS}: {orphans} rows of samples without a {SAMPLES} line (an interrupted write) ignored")
        failures = read_json_lines(self.path / SKIPPED, _failure)
        self.problems += failures.problems
        self._failures = failures.rows
        self._loaded = True

    def _load_v1(self) -> None:
        """creg 0.1: every record carries the per-sample facts; ``samples.jsonl`` has names and boxes."""
        recs = read_json_lines(self.path / RECORDS, SampleRecord.model_validate)
        rows = read_json_lines(self.path / SAMPLES, dict)
        self.problems += recs.problems + rows.problems
        run = self.config["run"]
        raw = {}
        for r in rows.rows:
            raw.setdefault(r.get("id"), r)
        self._v1_records, seen = [], set()
        self._samples = {}
        for rec in recs.rows:
            if (rec.sample_id, rec.source) in seen:
                continue
            seen.add((rec.sample_id, rec.source))
            self._v1_records.append(rec)
            if rec.sample_id not in self._samples and rec.sample_id in raw:
                self._samples[rec.sample_id] = _facts_v1(raw[rec.sample_id], rec, run)
        self._rows = []

    def samples(self) -> dict[str, SampleFacts]:
        """Per-sample facts by id (first valid line of each sample)."""
        self._load()
        return dict(self._samples)

    def records(self) -> list[SampleRecord]:
        """Every (sample, source) record with its sample's facts joined, in file order."""
        self._load()
        if self.schema_version == 1:
            return list(self._v1_records)
        return [join(self._samples[r.sample_id], r) for r in self._rows]

    def rows(self) -> list[SourceRow]:
        """``records.jsonl`` as stored (per-source fields only)."""
        self._load()
        return list(self._rows)

    def failures(self) -> list[Failure]:
        """The latest failure of every sample that is not finished (``skipped.jsonl``)."""
        self._load()
        done = set(self._samples)
        last: dict[str, Failure] = {}
        for f in self._failures:
            if f.sample_id not in done:
                last.pop(f.sample_id, None)
                last[f.sample_id] = f
        return list(last.values())

    def summary(self) -> dict[str, Any] | None:
        """``summary.json`` as written by the last run, or None."""
        p = self.path / SUMMARY
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except ValueError:
            self.problems.append(f"{SUMMARY}: not valid JSON; ignored")
            return None

    def maps(self, sample_id: str) -> dict[str, StoredMap] | None:
        """The stored relevance maps of ``sample_id`` ({source: map}), or None when the run did not
        store them (``--no-save-maps``, or a run made before maps were stored). An unreadable
        archive is reported in :attr:`problems` and reads as None."""
        p = self.path / MAPS / map_file_name(sample_id)
        if not p.is_file():
            return None
        try:
            return decode_maps(p)
        except (OSError, ValueError, KeyError) as e:
            self.problems.append(f"{MAPS}/{p.name}: unreadable ({type(e).__name__}: {e}); ignored")
            return None

    def finished_at(self) -> str | None:
        """When the run last wrote its summary (ISO 8601, UTC, seconds), or None."""

        p = self.path / SUMMARY
        if not p.is_file():
            return None
        return datetime.fromtimestamp(p.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")

    # -- nested runs and artifacts ---------------------------------------------------------
    def sub_path(self, name: str) -> Path:
        """Where the nested run ``name`` (e.g. ``flip``) lives."""
        return inside(self.path, name)

    def sub(self, name: str) -> "RunStore | None":
        """The nested run ``name``, or None if there is none."""
        p = self.sub_path(name)
        return RunStore.read(p) if self.is_run_dir(p) else None

    def write_artifact(self, rel: str, data: str | bytes) -> Path:
        """Write a derived file (report.md, report.json, ...) atomically; ``rel`` is sanitised."""
        p = no_link_below(self.path, inside(self.path, rel))
        p.parent.mkdir(parents=True, exist_ok=True)
        no_link_below(self.path, p)
        write_atomic(p, data)
        return p

    def write_json_artifact(self, rel: str, obj: Any) -> Path:
        return self.write_artifact(rel, dumps(obj, indent=2) + "\n")

    def put_file(self, rel: str, src: Path) -> Path:
        """Move a file rendered elsewhere (a figure) into the run directory as ``rel`` (sanitised)."""
        return self.write_artifact(rel, Path(src).read_bytes())


def _check_run_settings(path: Path, run: dict[str, Any]) -> None:
    """RunDirError (one line) if config.json's ``run`` does not hold a valid run configuration
    (``"k": "abc"``, a negative seed ...): a damaged file is reported, not a traceback."""


    try:
        RunConfig.model_validate(run)
    except ValidationError as e:
        raise RunDirError(f"{path}: {config_error_message(e)}; the run directory is damaged") from None


def _failure(d: Any) -> Failure:
    return Failure.model_validate(d)


def _facts_v1(row: dict[str, Any], rec: SampleRecord, run: dict[str, Any]) -> SampleFacts:

    a, b = row["ref"]["box"], row["tgt"]["box"]
    d_ab = math.hypot((b[0] + b[2] - a[0] - a[2]) / 2, (b[1] + b[3] - a[1] - a[3]) / 2)
    r_max = run.get("rho_r", 2.0) * d_ab
    return SampleFacts(**{**record_facts(rec), **row, "d_ab": d_ab, "r_max": r_max,
                          "sigma": run.get("sigma_r", 0.6) * r_max})


class RunWriter(RunStore):
    """The one writer of a run directory.

    ``with RunWriter(out, doc, sources=...) as w:`` creates the directory if needed, takes the
    exclusive lock (a second writer gets :class:`RunDirError`) and, unless ``overwrite``, checks
    that ``doc`` (:func:`creg.store.identity.describe_run`) may continue the stored run. Nothing
    is changed until :meth:`start`, which the runner calls once everything (the model included)
    has loaded: it clears the directory (``overwrite``) or repairs it for the resume, and
    writes ``config.json``.
    """

    def __init__(self, path: Path | str, doc: dict[str, Any], *, sources: Sequence[str], overwrite: bool = False,
                 log: Callable[[str], None] = log_info):
        super().__init__(path)
        self.doc = doc
        self.source_names = list(sources)
        self.overwrite = overwrite
        self.log = log
        self._lock = DirLock(self.path)
        self.done_ids: set[str] = set()
        #: samples that failed before and are retried by this run
        self.retry_ids: set[str] = set()
        self._facts_done: dict[str, SampleFacts] = {}
        self._rows_done: list[SourceRow] = []

    def __enter__(self) -> "RunWriter":
        # what this writer creates, so that a run refused before start() leaves nothing behind
        self._made_dirs = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._made_lock = False
        self._started = False
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            refuse_links(self.path)
            self._made_lock = not os.path.lexists(self._lock.path)
            try:
                self._lock.acquire()
            except LockBusy as e:
                self._made_lock = False
                raise RunDirError(f"{self.path} is being written by another creg run ({e}); wait for it to end or use another --out") from None
            except LinkRefused as e:
                self._made_lock = False
                raise RunDirError(str(e)) from None
            self._check()
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if not getattr(self, "_started", True):
            self._discard()
        else:
            self._lock.release()

    def _discard(self) -> None:
        """Release the lock and, as the run never started, remove the lock file and the folders this
        writer created (a refused run leaves nothing behind)."""
        self._lock.release()
        if self._made_lock:
            self._lock.path.unlink(missing_ok=True)
        for d in self._made_dirs:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break

    def _check(self) -> None:
        entries = [p for p in self.path.iterdir() if p.name != DirLock.NAME]
        if not self.is_run_dir(self.path):
            if entries:
                raise RunDirError(f"{self.path} is not empty and holds no creg run (no {CONFIG}); "
                                  "choose a new or empty --out (creg never deletes files it did not write)")
            return
        if self.overwrite:
            return
        stored = self.config
        if self.schema_version != SCHEMA_VERSION:
            raise RunDirError(f"{self.path} holds a creg {stored.get('creg_version', '0.1')} run (run-directory schema "
                              f"version {self.schema_version}); this creg continues only version {SCHEMA_VERSION} runs: "
                              "`creg report` still reads it; use another --out, or --overwrite to start it again")
        diff = resume_differences(stored, self.doc)
        if diff:
            raise RunDirError(f"{self.path} holds a run with a different configuration ({'; '.join(diff)}); "
                              "use another --out, or --overwrite to start it again")

    def start(self) -> None:
        """Clear (``overwrite``) or repair (resume) the directory and write ``config.json``."""
        self._started = True
        refuse_links(self.path)
        if self.overwrite and self.is_run_dir(self.path):
            for p in self.path.iterdir():
                if p.name == DirLock.NAME:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        self._config = None
        self._loaded = False
        if self.is_run_dir(self.path):
            self._repair()
            # parts left by an interrupted data-parallel run (creg.store.parts), whatever its rank count
            if absorb_parts(self):
                self.log(f"{self.path.name}: merged the finished samples of an interrupted multi-process run")
        write_json_atomic(self.path / CONFIG, self.doc)
        self._config = self.doc

    def _repair(self) -> None:
        """Keep the samples whose facts and every source's row are there; move unreadable lines
        to ``rejected.jsonl`` (with their line numbers); drop torn tails and partial samples."""
        samples = read_json_lines(self.path / SAMPLES, SampleFacts.model_validate)
        rows = read_json_lines(self.path / RECORDS, SourceRow.model_validate)
        fails = read_json_lines(self.path / SKIPPED, _failure)
        for p in samples.problems + rows.problems + fails.problems:
            self.log(f"{self.path.name}: {p}")
        rejected = [dumps({"file": name, "line": no, "error": err, "text": text})
                    for name, jl in ((SAMPLES, samples), (RECORDS, rows), (SKIPPED, fails))
                    for no, err, text in jl.bad_lines]
        append_lines(self.path / REJECTED, rejected)

        facts: dict[str, SampleFacts] = {}
        for f in samples.rows:
            facts.setdefault(f.id, f)
        by_sample: dict[str, dict[str, SourceRow]] = {}
        for r in rows.rows:
            if r.source in self.source_names:
                by_sample.setdefault(r.sample_id, {}).setdefault(r.source, r)
        self.done_ids = {sid for sid in facts if len(by_sample.get(sid, {})) == len(self.source_names)}
        kept_facts = [facts[sid] for sid in facts if sid in self.done_ids]
        kept_rows = [r for sid in facts if sid in self.done_ids for r in by_sample[sid].values()]
        last_fail: dict[str, Failure] = {}
        for f in fails.rows:
            if f.sample_id not in self.done_ids:
                last_fail.pop(f.sample_id, None)
                last_fail[f.sample_id] = f
        if len(kept_facts) != len(samples.rows) or samples.torn_tail or samples.bad_lines:
            write_atomic(self.path / SAMPLES, "".join(dumps(f.model_dump()) + "\n" for f in kept_facts))
        if len(kept_rows) != len(rows.rows) or rows.torn_tail or rows.bad_lines:
            write_atomic(self.path / RECORDS, "".join(dumps(r.model_dump()) + "\n" for r in kept_rows))
        if len(last_fail) != len(fails.rows) or fails.torn_tail or fails.bad_lines:
            write_atomic(self.path / SKIPPED, "".join(dumps(f.model_dump()) + "\n" for f in last_fail.values()))
        self._facts_done = {f.id: f for f in kept_facts}
        self._rows_done = kept_rows
        maps = self.path / MAPS
        if maps.is_dir():  # archives of samples that did not finish are written again when they are
            keep = {map_file_name(sid) for sid in self.done_ids}
            for p in maps.iterdir():
                if p.is_file() and p.name not in keep:
                    p.unlink()
        self.retry_ids = set(last_fail)

    # -- writing ---------------------------------------------------------------------------
    def records_so_far(self) -> list[SampleRecord]:
        """The joined records of every finished sample (this run's and the resumed ones)."""
        return [join(self._facts_done[r.sample_id], r) for r in self._rows_done]

    def write_samples(self, results: Iterable[tuple[SampleFacts, Sequence[SourceRow]]]) -> None:
        """Append finished samples: their facts to ``samples.jsonl``, then their rows to ``records.jsonl``."""
        results = list(results)
        append_lines(self.path / SAMPLES, [dumps(f.model_dump()) for f, _ in results])
        append_lines(self.path / RECORDS, [dumps(r.model_dump()) for _, rows in results for r in rows])
        for f, rows in results:
            self._facts_done[f.id] = f
            self._rows_done += list(rows)
            self.done_ids.add(f.id)

    def sort_samples(self, order: Sequence[str]) -> bool:
        """Rewrite ``samples.jsonl`` and ``records.jsonl`` (atomically) with the finished samples in
        ``order`` (sample ids; others follow in their current order) and each sample's rows in the
        run's source order -- unless they are in that order already. A resumed or merged run so ends
        with the files, and the summary, of one uninterrupted process. Returns whether it rewrote."""
        rank = {sid: i for i, sid in enumerate(order)}
        ids = list(self._facts_done)
        ordered = sorted(ids, key=lambda sid: rank.get(sid, len(rank)))
        by_sample: dict[str, dict[str, SourceRow]] = {}
        for r in self._rows_done:
            by_sample.setdefault(r.sample_id, {}).setdefault(r.source, r)
        rows = [by_sample[sid][name] for sid in ordered for name in self.source_names if name in by_sample.get(sid, {})]
        if ordered == ids and rows == self._rows_done:
            return False
        facts = {sid: self._facts_done[sid] for sid in ordered}
        write_atomic(self.path / SAMPLES, "".join(dumps(f.model_dump()) + "\n" for f in facts.values()))
        write_atomic(self.path / RECORDS, "".join(dumps(r.model_dump()) + "\n" for r in rows))
        self._facts_done, self._rows_done = facts, rows
        return True

    def write_maps(self, maps: dict[str, dict[str, StoredMap]]) -> None:
        """Write the relevance maps of samples ({sample id: {source: map}}), one archive each,
        atomically; call it before :meth:`write_samples` of those samples."""
        if not maps:
            return
        root = self.path / MAPS
        root.mkdir(exist_ok=True)
        for sid, per_source in maps.items():
            write_atomic(root / map_file_name(sid), encode_maps(per_source))

    def write_failure(self, failure: Failure) -> None:
        append_lines(self.path / SKIPPED, [dumps(failure.model_dump())])

    def write_summary(self, summary: dict[str, Any], table: str) -> None:
        write_json_atomic(self.path / SUMMARY, summary)
        write_atomic(self.path / TABLE, table)


def write_grid_artifact(out_root: Path | str, rel: str, data: str | bytes) -> Path:
    """Another file of a grid or comparison (``comparison.html``, a figure) next to its runs, atomically."""
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    p = inside(root, rel)
    write_atomic(p, data)
    return p


def write_grid_files(out_root: Path | str, name: str, obj: Any, text: str) -> tuple[Path, Path]:
    """The table of a grid of runs (``creg analyze ablation|prompts``): ``NAME.json`` and ``NAME.md``
    next to the grid's run directories."""
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    j, m = inside(root, f"{name}.json"), inside(root, f"{name}.md")
    write_json_atomic(j, obj)
    write_atomic(m, text)
    return j, m
