"""The execution seam (creg.execution.backends): executors drive the Runner through its public steps only, one
place picks the executor, and the torchrun executor gives rank 0 the merged result and the other ranks None."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_distributed import MODEL_FREE, _rows, _run_ranks

import creg
from creg.api import ApiError
from creg.core.errors import RunError
from creg.execution.backends import Executor, LocalExecutor, TorchrunExecutor, World, executor_for
from creg.execution.runner import Runner, RunConfig, RunResult

CREG = Path(__file__).resolve().parents[1] / "creg"
#: the modules that drive a Runner from outside it
DRIVERS = sorted((CREG / "execution" / "backends").glob("*.py")) + [
    CREG / "execution" / "blank_control.py", CREG / "execution" / "auto_layers.py"]


def private_uses(source: str) -> list[str]:
    """``obj._name`` on anything but ``self``/``cls``, and ``from m import _name``: another object's private
    members (dunders such as ``__enter__`` are protocol, not private)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom):
            found += [f"from {node.module} import {a.name} (line {node.lineno})" for a in node.names
                      if a.name.startswith("_")]
    return found


def test_the_private_member_scan_finds_planted_uses():
    planted = "from creg.execution.runner import _hidden\nrunner._run(store)\nrunner._batch_size = 4\nself._ok = 1\nw.__enter__()"
    assert sorted(private_uses(planted)) == ["from creg.execution.runner import _hidden (line 1)",
                                             "runner._batch_size (line 3)", "runner._run (line 2)"]


@pytest.mark.parametrize("path", DRIVERS, ids=lambda p: p.name)
def test_executors_use_no_private_member_of_the_runner(path):
    assert private_uses(path.read_text(encoding="utf-8")) == []


def test_one_place_picks_the_executor():
    assert isinstance(executor_for(None), LocalExecutor)
    rank = executor_for(World(rank=1, size=2, local_rank=1))
    assert isinstance(rank, TorchrunExecutor) and rank.world.rank == 1
    assert all(isinstance(e, Executor) for e in (executor_for(None), rank))


def test_the_local_executor_writes_the_run_runner_run_writes(tmp_path):
    config = RunConfig(**MODEL_FREE)
    a = LocalExecutor().run(Runner(config, tmp_path / "a", progress=False, log=lambda m: None))
    b = Runner(config, tmp_path / "b", progress=False, log=lambda m: None).run()
    assert isinstance(a, RunResult) and a.processed == b.processed == 12
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert a.summary["complete"] is True and a.summary["elapsed_s"] >= 0


def test_torchrun_ranks_return_the_merged_result_on_rank_0_and_none_elsewhere(tmp_path):
    results = _run_ranks(tmp_path / "run", 2,
                         execute=lambda runner, world, messages: TorchrunExecutor(world, lambda w: messages).run(runner))
    assert isinstance(results[0], RunResult) and results[1] is None
    assert results[0].processed == 12 and results[0].summary["complete"] is True


def test_the_torchrun_executor_refuses_a_control_before_the_ranks_meet(tmp_path):
    runner = Runner(RunConfig(**{**MODEL_FREE, "controls": ["blank"]}), tmp_path / "run", progress=False,
                    log=lambda m: None)
    opened = []
    with pytest.raises(RunError, match="--control blank runs in one process"):
        TorchrunExecutor(World(rank=0, size=2, local_rank=0), opened.append).run(runner)
    assert opened == [] and not (tmp_path / "run").exists()


def test_creg_run_under_a_broken_torchrun_environment_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ApiError, match="start the run with torchrun"):
        creg.run(adapter="none", sources="oracle", n=2, out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
