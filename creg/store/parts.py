"""Per-rank parts of a run directory (data-parallel runs, :mod:`creg.execution.backends`).

In a run over N processes every rank writes its own part, a complete run directory of its
own under ``RUN/parts/rank-00003`` (same ``config.json`` document, its own lock, its own
``samples.jsonl`` / ``records.jsonl`` / ``skipped.jsonl``). Rank 0 holds the run directory's
writer and, when every rank is done, merges the parts into the run directory's own files
(:func:`absorb_parts`) -- the files a single-process run writes -- and removes them.

A part left behind by an interrupted run (any number of ranks) is merged by the next writer of
the run directory when it starts (:meth:`creg.store.RunWriter.start`), whatever number of
ranks that one uses: each rank's finished samples survive, each sample is merged once, and a
sample that is finished nowhere is processed again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from creg.store.files import DirLock, LockBusy, read_json_lines, write_atomic
from creg.store.layout import RECORDS, SAMPLES, SKIPPED, RunDirError, refuse_links
from creg.store.maps import MAPS, map_file_name
from creg.store.schema import Failure, SampleFacts, SourceRow

PARTS = "parts"
_PREFIX = "rank-"


def part_path(run_dir: Path | str, rank: int) -> Path:
    """Where rank ``rank`` writes its part of ``run_dir``."""
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    return Path(run_dir) / PARTS / f"{_PREFIX}{rank:05d}"


def part_paths(run_dir: Path | str) -> list[Path]:
    """The parts present in ``run_dir`` (of this or an interrupted run), by rank."""
    root = Path(run_dir) / PARTS
    if root.is_symlink() or not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX) and p.is_dir() and not p.is_symlink())


def _finished(part: Path, sources: Sequence[str]) -> tuple[list[tuple[SampleFacts, list[SourceRow]]], list[Failure], list[str]]:
    """The samples of ``part`` that have their facts and a row of every source (in file order),
    the failures of the others, and the problems met (bad or torn lines)."""

    facts = read_json_lines(part / SAMPLES, SampleFacts.model_validate)
    rows = read_json_lines(part / RECORDS, SourceRow.model_validate)
    fails = read_json_lines(part / SKIPPED, Failure.model_validate)
    problems = [f"{part.name}/{p}" for p in facts.problems + rows.problems + fails.problems]
    by_sample: dict[str, dict[str, SourceRow]] = {}
    for r in rows.rows:
        if r.source in sources:
            by_sample.setdefault(r.sample_id, {}).setdefault(r.source, r)
    done: list[tuple[SampleFacts, list[SourceRow]]] = []
    seen: set[str] = set()
    for f in facts.rows:
        got = by_sample.get(f.id, {})
        if f.id in seen or len(got) != len(sources):
            continue
        seen.add(f.id)
        done.append((f, [got[s] for s in sources]))
    failures = [f for f in fails.rows if f.sample_id not in seen]
    return done, failures, problems


def absorb_parts(writer, *, order: Sequence[str] | None = None) -> int:
    """Merge every part of ``writer``'s run directory (a :class:`creg.store.RunWriter` holding it) into its files,
    then remove the parts.

    A sample is taken once (the first part that finished it) and only if the run directory does
    not hold it already; its facts and rows go through :meth:`RunWriter.write_samples`, so the
    merged files are exactly those a single process writes. Failures of samples finished nowhere
    are kept (a resume retries them). ``order`` (sample ids) sorts the merged samples, e.g. into
    the benchmark's order; ids not in it follow in part order. Returns the number of samples merged.
    Raises :class:`creg.store.RunDirError` if a part is still being written.
    """

    refuse_links(writer.path)  # a linked parts/ or rank folder is refused, never followed
    refuse_links(writer.path / PARTS)
    parts = part_paths(writer.path)
    for part in parts:
        refuse_links(part)
    if not parts:
        return 0
    finished: list[tuple[SampleFacts, list[SourceRow]]] = []
    failures: list[Failure] = []
    have = set(writer.done_ids)
    locks = []
    try:
        for part in parts:
            lock = DirLock(part)
            try:
                lock.acquire()
            except LockBusy as e:
                raise RunDirError(f"{part} is still being written ({e}); wait for that rank to end") from None
            locks.append(lock)
            done, fails, problems = _finished(part, writer.source_names)
            for p in problems:
                writer.log(f"{writer.path.name}: {p}")
            for facts, rows in done:
                if facts.id not in have:
                    have.add(facts.id)
                    finished.append((facts, rows))
                    archive = part / MAPS / map_file_name(facts.id)
                    if archive.is_file():  # the maps go in before the sample's lines (creg.store.maps)
                        (writer.path / MAPS).mkdir(exist_ok=True)
                        write_atomic(writer.path / MAPS / archive.name, archive.read_bytes())
            failures += fails
        if order is not None:
            rank = {sid: i for i, sid in enumerate(order)}
            finished.sort(key=lambda fr: rank.get(fr[0].id, len(rank)))
        writer.write_samples(finished)
        for f in failures:
            if f.sample_id not in have:
                writer.write_failure(f)
                writer.retry_ids = set(writer.retry_ids) | {f.sample_id}
    finally:
        for lock in locks:
            lock.release()
    for part in parts:  # real folders under a real parts/ (checked above), removed without following links
        if not part.is_symlink() and part.is_dir():
            shutil.rmtree(part, ignore_errors=True)
    root = writer.path / PARTS
    if not root.is_symlink() and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return len(finished)
