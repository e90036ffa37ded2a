"""A data-parallel run: ``torchrun --nproc-per-node N -m creg run ...`` (:class:`TorchrunExecutor`).

Every rank builds the same :class:`creg.execution.runner.Runner` (same configuration, same benchmark,
one model replica on its own device) and then:

1. rank 0 opens the run directory as its one writer (lock, resume check); every rank loads its
   model; rank 0 repairs the directory for the resume and merges the parts an interrupted
   run left behind (:mod:`creg.store.parts`), then tells the others which samples are done;
2. every rank takes its share of the samples still to do -- every N-th of them in benchmark
   order, from position ``rank`` (:func:`creg.execution.backends.world.shard`) -- and writes them
   into its own part of the run directory (``parts/rank-0000K``, through the run store);
3. when all are done, rank 0 merges the parts into the run directory's files
   (:func:`creg.store.absorb_parts`, in benchmark order) and writes the summary: the same
   files, with the same records, that one process writes for the same command.

A rank that stops (Ctrl-C, a crash, a killed job) leaves its part; the next run of the same
command, with any number of processes, merges it first and does only what is left.

Every step goes through the Runner's public steps (:mod:`creg.execution.backends.base`); the
ranks exchange only small objects (:class:`creg.execution.backends.world.Messages`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from creg.core.errors import RunError
from creg.execution.backends.world import Messages, World, shard
from creg.execution.signals import terminate_as_interrupt
from creg.store import RunWriter, absorb_parts, part_path

if TYPE_CHECKING:  # pragma: no cover - the runner imports torch
    from creg.core.sample import Sample
    from creg.execution.runner import Runner, RunResult


class RankFailed(RunError):
    """Another rank of the run failed; the message names it and its error."""


class TorchrunExecutor:
    """Runs a Runner as rank ``world.rank`` of a ``torchrun`` launch (:class:`creg.execution.backends.base.Executor`);
    ``messages_factory`` opens the ranks' messages (gloo; the tests pass threads)."""

    name = "torchrun"

    def __init__(self, world: World, messages_factory: Callable[[World], Messages] = Messages):
        self.world = world
        self.messages_factory = messages_factory

    def run(self, runner: "Runner") -> "RunResult | None":
        """Rank 0's merged :class:`creg.execution.runner.RunResult`, or None on the other ranks (rank 0 prints it)."""
        if runner.config.controls:
            raise RunError(f"--control {','.join(runner.config.controls)} runs in one process: run without torchrun "
                           "(the same command continues the finished run and adds the control)")
        messages = self.messages_factory(self.world)
        restore = terminate_as_interrupt()  # torchrun stops workers with SIGTERM: end like Ctrl-C, parts intact
        try:
            result = run_data_parallel(runner, self.world, messages)
        finally:
            restore()
            messages.close()
        return result if self.world.is_main else None


def _outcome(error: BaseException | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"type": type(error).__name__, "message": str(error).splitlines()[0][:500] if str(error) else type(error).__name__,
            "interrupt": isinstance(error, KeyboardInterrupt)}


def _first_failure(outcomes: list[dict[str, Any] | None], me: int) -> tuple[int, dict[str, Any]] | None:
    for rank, out in enumerate(outcomes):
        if out is not None and rank != me:
            return rank, out
    return None


def run_data_parallel(runner: "Runner", world: World, messages: Messages) -> "RunResult":
    """Run ``runner`` as rank ``world.rank`` of ``world.size``; returns rank 0's merged
    :class:`creg.execution.runner.RunResult` on rank 0 and this rank's own (no summary) elsewhere."""
    _use_this_ranks_device(world)
    if world.rank:
        runner.progress = False
        log = runner.log
        runner.log = lambda m: log(f"[rank {world.rank}] {m}")
    doc = runner.describe()
    main = _open(runner, world, messages, doc)  # 1. rank 0 takes the run directory; every rank loads its replica
    done = _start(runner, world, messages, main)
    pending = runner.pending_samples(done)

    # 2. this rank's share, into its own part
    t_share = time.perf_counter()  # elapsed_s runs from here, as one process's runs from its loop (load excluded)
    result, error = _explain_share(runner, world, doc, shard(pending, world.rank, world.size))
    outcomes = messages.gather({"error": _outcome(error), "processed": result.processed if result else 0})
    shares_s = round(time.perf_counter() - t_share, 2)  # until the slowest rank finished its share

    # 3. rank 0 merges the parts and summarises
    if world.is_main:
        return _merge(runner, world, main, pending, outcomes, result, error, t_share=t_share, shares_s=shares_s,
                      resumed=len(done))
    if error is not None:
        raise error
    return result


def _use_this_ranks_device(world: World) -> None:
    import torch  # lazy: torch

    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())


def _open(runner: "Runner", world: World, messages: Messages, doc: dict[str, Any]) -> RunWriter | None:
    """Rank 0 opens the run directory (lock, resume check); every rank loads and checks its replica. Any
    rank's failure ends every rank: its own error here, :class:`RankFailed` naming it elsewhere."""
    main: RunWriter | None = None
    error: BaseException | None = None
    try:
        if world.is_main:
            main = runner.writer(doc=doc)
            main.__enter__()
        runner.check_model()  # load the replica (validates the model before anything is written)
    except BaseException as e:  # noqa: BLE001 - every rank must hear of it
        error = e
    failed = _first_failure(messages.gather(_outcome(error)), world.rank)
    if error is not None or failed is not None:
        if main is not None:
            main.__exit__(None, None, None)
        if error is not None:
            raise error
        rank, out = failed
        raise RankFailed(f"rank {rank} could not start: {out['message']}")
    return main


def _start(runner: "Runner", world: World, messages: Messages, main: RunWriter | None) -> set[str]:
    """Rank 0 starts the run directory (config.json, the resume's repair, the parts left merged) and tells
    every rank the finished sample ids and its batch size, which every rank then uses."""
    start: dict[str, Any] = {}
    if world.is_main:
        try:
            main.doc["execution"] = {**runner.execution(), "world_size": world.size}
            main.start()
            start = {"done": sorted(main.done_ids), "batch_size": runner.batch_size}
        except BaseException as e:  # noqa: BLE001
            main.__exit__(None, None, None)
            messages.broadcast({"error": _outcome(e)})
            raise
    start = messages.broadcast(start)
    if "error" in start:
        raise RankFailed(f"rank 0 could not open {runner.out}: {start['error']['message']}")
    runner.batch_size = start["batch_size"]
    return set(start["done"])


def _explain_share(runner: "Runner", world: World, doc: dict[str, Any],
                   mine: list["Sample"]) -> tuple["RunResult | None", BaseException | None]:
    """This rank's samples into its part (``parts/rank-0000R``); the result, or the error that stopped it."""
    try:
        with runner.writer(part_path(runner.out, world.rank), doc=doc, overwrite=True) as part:
            part.start()
            return runner.process(part, mine, summary=False), None
    except BaseException as e:  # noqa: BLE001 - rank 0 still merges what every rank finished
        return None, e


def _merge(runner: "Runner", world: World, main: RunWriter, pending: list["Sample"], outcomes: list[dict[str, Any]],
           result: "RunResult | None", error: BaseException | None, *, t_share: float, shares_s: float,
           resumed: int) -> "RunResult":
    """Rank 0: every part merged in benchmark order and the summary written (``"complete": false`` when a rank
    failed); then this rank's error, or one naming the first rank that failed."""
    try:
        absorb_parts(main, order=[s.id for s in pending])
        complete = all(o["error"] is None for o in outcomes)
        summary, table, skipped = runner.write_summary(main, complete=complete,
                                                       elapsed_s=round(time.perf_counter() - t_share, 2))
    finally:
        main.__exit__(None, None, None)
    if error is not None:
        raise error
    failed = _first_failure([o["error"] for o in outcomes], world.rank)
    if failed is not None:
        rank, out = failed
        if out["interrupt"]:
            raise KeyboardInterrupt(f"rank {rank} was interrupted")
        raise RankFailed(f"rank {rank} failed: {out['type']}: {out['message']}; the finished samples of every "
                         f"rank are in {runner.out}: re-run the same command to continue")
    processed = sum(o["processed"] for o in outcomes)
    # the time line of rank 0: its own load and probe, every rank's samples over the wall time of the shares
    return replace(result, summary=summary, table=table, processed=processed, resumed=resumed, skipped=skipped,
                   timing={**runner.timing, "explain": shares_s})
