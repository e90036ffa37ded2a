"""A data-parallel run: ``torchrun --nproc-per-node N -m creg run ...``.

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
"""

from __future__ import annotations

import time
from typing import Any, Callable

from creg.core.errors import RunError
from creg.execution.backends.world import Messages, World, shard, world_from_env
from creg.store import RunWriter, absorb_parts, part_path


class RankFailed(RunError):
    """Another rank of the run failed; the message names it and its error."""


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


def run_data_parallel(runner, world: World, messages: Messages):
    """Run ``runner`` as rank ``world.rank`` of ``world.size``; returns rank 0's
    :class:`creg.execution.runner.RunResult` on rank 0 and this rank's own (no summary) elsewhere."""
    import torch  # lazy: torch

    from creg.execution.runner import RunResult  # lazy: torch

    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    if world.rank:
        runner.progress = False
        log = runner.log
        runner.log = lambda m: log(f"[rank {world.rank}] {m}")
    names = [s.name for s in runner.sources]
    doc = runner.describe()

    # 1. rank 0 takes the run directory; every rank loads its replica
    main: RunWriter | None = None
    error: BaseException | None = None
    try:
        if world.is_main:
            main = RunWriter(runner.out, doc, sources=names, overwrite=runner.overwrite, log=runner.log)
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
    runner._batch_size = start["batch_size"]

    # 2. this rank's share, into its own part
    done = set(start["done"])
    pending = [s for s in runner.benchmark.samples() if s.id not in done]
    mine = shard(pending, world.rank, world.size)
    result: RunResult | None = None
    error = None
    t_share = time.perf_counter()  # elapsed_s runs from here, as one process's runs from its loop (load excluded)
    try:
        with RunWriter(part_path(runner.out, world.rank), doc, sources=names, overwrite=True, log=runner.log) as part:
            part.start()
            result = runner._run(part, mine, summary=False)
    except BaseException as e:  # noqa: BLE001 - rank 0 still merges what every rank finished
        error = e
    outcomes = messages.gather({"error": _outcome(error), "processed": result.processed if result else 0})
    shares_s = round(time.perf_counter() - t_share, 2)  # until the slowest rank finished its share

    # 3. rank 0 merges the parts and summarises
    if world.is_main:
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
        return RunResult(runner.out, summary, table, processed, len(done), skipped, {**runner.timing, "explain": shares_s})
    if error is not None:
        raise error
    return result


def run(runner, *, world: World | None = None, messages_factory: Callable[[World], Messages] = Messages):
    """Run ``runner`` in this process, or as one rank of a ``torchrun`` launch.

    Returns the :class:`creg.execution.runner.RunResult` to print, or None on ranks other than 0 (rank 0
    prints the merged result)."""
    world = world or world_from_env()
    if world is None:
        return runner.run()
    if runner.config.controls:
        raise RunError(f"--control {','.join(runner.config.controls)} runs in one process: run without torchrun "
                       "(the same command continues the finished run and adds the control)")
    from creg.execution.runner import _terminate_as_interrupt  # lazy: torch

    messages = messages_factory(world)
    restore = _terminate_as_interrupt()  # torchrun stops workers with SIGTERM: end like Ctrl-C, parts intact
    try:
        result = run_data_parallel(runner, world, messages)
    finally:
        restore()
        messages.close()
    return result if world.is_main else None
