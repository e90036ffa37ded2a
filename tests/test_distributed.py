"""Data-parallel runs (creg.execution.backends): N processes give the records of one process.

The toy-model test starts two real ``python -m creg run`` processes with the environment
``torchrun`` gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and the
gloo backend on CPU, and compares the merged run directory with a single-process run of the
same command. The resume tests run ranks as threads of this process, exchanging their
messages through an in-memory stand-in for the process group, on model-free runs.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from creg.execution.backends import World, run_data_parallel, shard, world_from_env
from creg.execution.runner import Runner, RunConfig
from creg.store import PARTS, RunStore, RunWriter, part_path, part_paths

TOY_SOURCES = "creg,gradcam,integrated_gradients,attention_rollout,random"


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    store = RunStore.read(out)
    assert store.problems == []
    return {(r.sample_id, r.source): r.model_dump() for r in store.records()}


def _facts(out: Path) -> dict[str, dict]:
    return {k: v.model_dump() for k, v in RunStore.read(out).samples().items()}


# -- sharding and the launcher's environment ------------------------------------------------
def test_shard_is_strided_disjoint_and_complete():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(parts, [])) == items
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def test_world_from_env_reads_torchrun_variables():
    assert world_from_env({}) is None
    assert world_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == World(rank=2, size=4, local_rank=0)
    with pytest.raises(ValueError, match="torchrun"):
        world_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="outside"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "2"})


# -- two processes, gloo, the toy model ----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_ranks(args: list[str], out: Path) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-m", "creg", "run", *args, "--out", str(out)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


_GLOO_THREADS_AFTER_CLOSE = r"""
import gc, os, sys
from creg.execution.backends.world import Messages, World
m = Messages(World(rank=0, size=1, local_rank=0))
m.gather("x")
import transformers.modeling_utils  # imports torch.distributed.nn, whose defaults read group.WORLD
m.close()
gc.collect()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(",".join(n for n in names if "gloo" in n or "tcpstore" in n))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc (Linux)")
@pytest.mark.slow
def test_closing_the_messages_ends_the_gloo_threads_though_the_model_code_imported_after_the_group(tmp_path):
    # torch.distributed.nn.functional keeps group.WORLD as a default argument when it is imported
    # after init_process_group (transformers' modeling code imports it): destroy_process_group then
    # leaves the group alive, and its threads die during interpreter shutdown, which now and then
    # aborts the process ("terminate called without an active exception", exit -6) after a
    # successful run. Messages imports it before it opens the group.
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _GLOO_THREADS_AFTER_CLOSE], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"threads of the process group still running after close: {done.stdout.strip()}"


@pytest.mark.slow
def test_two_gloo_processes_write_the_records_of_one_process(tmp_path):
    args = ["--adapter", "qwen2vl-toy", "--source", TOY_SOURCES, "--n", "5", "--cos", "--no-progress"]
    procs = _launch_ranks(args, tmp_path / "ddp")
    # the single-process run of the same command, meanwhile, in this process
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = RunConfig(adapter="qwen2vl-toy", sources=TOY_SOURCES.split(","), n=5, cos=True)
        Runner(config, tmp_path / "one", progress=False, log=lambda m: None).run()
    finally:
        torch.set_num_threads(threads)
    outs = [p.communicate(timeout=300) for p in procs]
    if any(p.returncode and "address already in use" in se.lower() for p, (_, se) in zip(procs, outs)):
        # the free port was taken between finding it and binding it: once more, on another port
        procs = _launch_ranks([*args, "--overwrite"], tmp_path / "ddp")
        outs = [p.communicate(timeout=300) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se[-3000:]
    assert "VLM accuracy" in outs[0][0] and outs[1][0] == ""  # rank 0 prints the merged table, rank 1 nothing
    assert "time: model load" in outs[0][0] and "5 samples in" in outs[0][0]  # every rank's samples, rank 0's clock

    one, ddp = _rows(tmp_path / "one"), _rows(tmp_path / "ddp")
    assert len(one) == 5 * len(TOY_SOURCES.split(","))
    assert set(ddp) == set(one)
    assert ddp == one  # same values, COS readings included
    assert _facts(tmp_path / "ddp") == _facts(tmp_path / "one")
    assert all(r["cos"] for r in ddp.values())
    store = RunStore.read(tmp_path / "ddp")
    assert store.config["execution"]["world_size"] == 2
    assert store.summary()["complete"] is True and store.summary()["n_samples"] == 5
    assert not (tmp_path / "ddp" / PARTS).exists()
    # the merged file is in benchmark order, like one process's
    ids = [json.loads(line)["id"] for line in (tmp_path / "ddp" / "samples.jsonl").read_text().splitlines()]
    assert ids == [json.loads(line)["id"] for line in (tmp_path / "one" / "samples.jsonl").read_text().splitlines()]


# -- ranks as threads: interruption and resume with another number of ranks -----------------
class ThreadMessages:
    """The collectives of :class:`creg.execution.backends.Messages` between threads (objects are copied,
    as pickling would)."""

    def __init__(self, world: World, hub: dict):
        self.world, self.hub = world, hub

    def _exchange(self, obj):
        hub = self.hub
        hub["slots"][self.world.rank] = copy.deepcopy(obj)
        hub["barrier"].wait(timeout=120)
        out = copy.deepcopy(hub["slots"])
        hub["barrier"].wait(timeout=120)
        return out

    def broadcast(self, obj, src=0):
        return self._exchange(obj if self.world.rank == src else None)[src]

    def gather(self, obj):
        return self._exchange(obj)

    def close(self):
        pass


MODEL_FREE = dict(adapter="none", sources=["oracle", "random_relevance", "random"], n=12)


class StopAfter:
    """A source that raises KeyboardInterrupt (Ctrl-C) on its ``after``-th call."""

    def __init__(self, inner, after: int):
        self.inner, self.after, self.calls = inner, after, 0
        self.name, self.needs_model = inner.name, inner.needs_model

    def request(self):
        return self.inner.request()

    def explain(self, ctx):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt("stopped by the test")
        return self.inner.explain(ctx)


def _run_ranks(out: Path, size: int, *, stop: dict[int, int] | None = None, execute=None) -> list:
    """Run a model-free run as ``size`` thread ranks; returns each rank's result or exception. ``execute(runner,
    world, messages)`` runs one rank (default :func:`run_data_parallel`)."""
    execute = execute or run_data_parallel
    hub = {"slots": [None] * size, "barrier": threading.Barrier(size)}
    results: list = [None] * size

    def rank_main(rank: int) -> None:
        runner = Runner(RunConfig(**MODEL_FREE), out, progress=False, log=lambda m: None)
        if stop and rank in stop:
            runner.sources[-1] = StopAfter(runner.sources[-1], stop[rank])
        world = World(rank=rank, size=size, local_rank=rank)
        try:
            results[rank] = execute(runner, world, ThreadMessages(world, hub))
        except BaseException as e:  # noqa: BLE001
            results[rank] = e

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


@pytest.fixture
def reference(tmp_path):
    out = tmp_path / "reference"
    Runner(RunConfig(**MODEL_FREE), out, progress=False, log=lambda m: None).run()
    return out


def test_an_interrupted_rank_keeps_its_samples_and_three_ranks_finish_the_run(tmp_path, reference):
    out = tmp_path / "run"
    first = _run_ranks(out, 2, stop={1: 2})  # rank 1 is stopped at its third sample
    assert isinstance(first[0], KeyboardInterrupt) and isinstance(first[1], KeyboardInterrupt)
    partial = _rows(out)
    done_ids = {sid for sid, _ in partial}
    assert len(done_ids) == 6 + 2  # rank 0's six and rank 1's first two, merged by rank 0
    assert RunStore.read(out).summary()["complete"] is False
    assert not part_paths(out)

    second = _run_ranks(out, 3)
    assert second[0].resumed == 8 and second[0].processed == 4
    assert _rows(out) == _rows(reference)
    assert RunStore.read(out).summary()["complete"] is True


def test_parts_left_by_a_killed_run_are_merged_by_a_single_process_resume(tmp_path, reference):
    """A hard kill leaves the parts unmerged (and one with a torn line and a half-written sample):
    the next writer, one process here, merges the finished samples and redoes the rest."""
    out = tmp_path / "run"
    ref = RunStore.read(reference)
    facts, rows = ref.samples(), ref.rows()
    ids = list(facts)
    runner = Runner(RunConfig(**MODEL_FREE), out, progress=False, log=lambda m: None)
    names = [s.name for s in runner.sources]
    with RunWriter(out, runner.describe(), sources=names) as main:
        main.start()
    by_sample = {sid: [r for r in rows if r.sample_id == sid] for sid in ids}
    # rank 0 of 3 finished ids[0], ids[3]; rank 2 finished ids[2] and wrote ids[5] without its last row
    for rank, done in ((0, [ids[0], ids[3]]), (2, [ids[2]])):
        with RunWriter(part_path(out, rank), runner.describe(), sources=names) as part:
            part.start()
            part.write_samples([(facts[sid], by_sample[sid]) for sid in done])
    half = part_path(out, 2)
    with open(half / "samples.jsonl", "a") as f:
        f.write(json.dumps(facts[ids[5]].model_dump()) + "\n")
    with open(half / "records.jsonl", "a") as f:
        f.write(json.dumps(by_sample[ids[5]][0].model_dump()) + "\n" + '{"sample_id": "torn')

    result = Runner(RunConfig(**MODEL_FREE), out, progress=False, log=lambda m: None).run()
    assert result.resumed == 3 and result.processed == len(ids) - 3
    assert _rows(out) == _rows(reference)
    assert not (out / PARTS).exists()
