"""Runs lose nothing: a killed ``creg run`` leaves a valid partial run that the same command finishes.

A slow test source (registered through a throw-away distribution on PYTHONPATH, exactly as a
third-party plugin would be) keeps the run going long enough to kill it mid-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from creg.core.records import SampleRecord
from creg.execution.runner import Runner, RunConfig
from creg.store import RunStore, SourceRow

N = 30
PLUGIN = '''
import os, time, torch, creg
from creg.plugins.relevance import RelevanceMap, RelevanceSource

class SlowOracle(RelevanceSource):
    name = "slow_oracle"
    needs_model = False
    def explain(self, ctx):
        time.sleep(float(os.environ.get("CREG_TEST_SLOW_S", "0.05")))
        return [RelevanceMap(values=torch.ones(1, 1, dtype=torch.float64),
                             cell_xy=torch.tensor([[list(s.tgt_box.center)]], dtype=torch.float64)) for s in ctx.samples]

@creg.hookimpl
def register_sources(register):
    register("slow_oracle", SlowOracle)
'''


@pytest.fixture
def plugin_env(tmp_path):
    site = tmp_path / "site"
    dist = site / "creg_slowtest-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: creg-slowtest\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[creg]\ncreg_slowtest = creg_slowtest\n")
    (site / "creg_slowtest.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1", CREG_STRICT_PLUGINS="1")
    return env


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "creg", "run", "--adapter", "none", "--source", "slow_oracle,random",
            "--n", str(N), "--out", str(out)]


def _records(out: Path) -> list[SampleRecord]:
    store = RunStore.read(out)
    records = store.records()
    assert store.problems == []
    return records


def _start_and_wait(out: Path, env: dict, min_lines: int) -> subprocess.Popen:
    proc = subprocess.Popen(_cmd(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    path = out / "records.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= min_lines:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no records appeared")


@pytest.mark.slow
def test_sigkill_then_rerun_processes_every_sample_once(tmp_path, plugin_env):
    out = tmp_path / "run"
    proc = _start_and_wait(out, plugin_env, min_lines=10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # the partial run is valid: config, whole records (a torn tail at most), no duplicates
    assert json.loads((out / "config.json").read_text())["run"]["n"] == N
    lines = (out / "records.jsonl").read_bytes().split(b"\n")
    whole = [SourceRow.model_validate_json(l) for l in lines[:-1]]
    assert 10 <= len(whole) < 2 * N
    assert max(Counter((r.sample_id, r.source) for r in whole).values()) == 1

    done = subprocess.run(_cmd(out), env=plugin_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stderr
    recs = _records(out)
    counts = Counter((r.sample_id, r.source) for r in recs)
    assert len(counts) == 2 * N and set(counts.values()) == {1}
    samples = [json.loads(l)["id"] for l in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == len(set(samples)) == N
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["n_samples"] == N
    assert summary["sources"]["slow_oracle"]["dae"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_ctrl_c_leaves_a_partial_summary(tmp_path, plugin_env):
    out = tmp_path / "run"
    # 0.2 s per sample: on a loaded machine 30 x 0.05 s could end before the signal arrives
    proc = _start_and_wait(out, dict(plugin_env, CREG_TEST_SLOW_S="0.2"), min_lines=4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"interrupted" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and 0 < summary["n_samples"] < N
    assert "Partial run" in (out / "table.md").read_text()
    assert len(_records(out)) >= 4


def test_torn_last_line_and_orphan_sample_line_are_repaired(tmp_path):
    out = tmp_path / "run"
    cfg = RunConfig(sources=["oracle", "random"], n=6)
    Runner(cfg, out, progress=False, log=lambda m: None).run()
    recs = (out / "records.jsonl").read_text().splitlines()
    samples = (out / "samples.jsonl").read_text().splitlines()
    # a crash while writing sample 5: its sample line is there, its records are half a line
    (out / "records.jsonl").write_text("\n".join(recs[:10]) + "\n" + recs[10][: len(recs[10]) // 2])
    (out / "summary.json").unlink()

    result = Runner(cfg, out, progress=False, log=lambda m: None).run()
    assert result.resumed == 5 and result.processed == 1 and result.summary["complete"] is True
    counts = Counter((r.sample_id, r.source) for r in _records(out))
    assert len(counts) == 12 and set(counts.values()) == {1}
    assert (out / "samples.jsonl").read_text().splitlines() == samples  # one line each, same order


@pytest.mark.slow
def test_sigterm_ends_like_ctrl_c_with_a_partial_summary(tmp_path, plugin_env):
    out = tmp_path / "run"
    proc = _start_and_wait(out, plugin_env, min_lines=4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()[-2000:]
    assert b"terminated (SIGTERM)" in err and b"Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and 0 < summary["n_samples"] < N
    assert "Partial run" in (out / "table.md").read_text()


@pytest.mark.slow
def test_two_runs_into_the_same_out_at_once_the_second_is_refused(tmp_path, plugin_env):
    out = tmp_path / "run"
    slow = dict(plugin_env, CREG_TEST_SLOW_S="1.0")  # the first run outlives the second's start-up
    first = _start_and_wait(out, slow, min_lines=2)
    second = subprocess.run(_cmd(out), env=plugin_env, capture_output=True, text=True, timeout=120)
    still_running = first.poll() is None
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert still_running, "the first run ended before the second started; the test proves nothing"
    assert second.returncode == 2 and "being written by another creg run" in second.stderr
    assert "Traceback" not in second.stderr
    counts = Counter((r.sample_id, r.source) for r in _records(out))
    assert counts and set(counts.values()) == {1}
