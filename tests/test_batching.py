"""Batching (creg.execution.batching): length bucketing over a lazy stream, --batch-size auto."""

from __future__ import annotations

import itertools

import pytest
import torch
from PIL import Image

from creg.execution.batching import (AUTO, CPU_AUTO_BATCH, batches, largest_fitting, length_key, padding_fraction,
                           parse_batch_size, resolve_batch_size)
from creg.execution.runner import Runner, RunConfig
from creg.core.sample import Box, make_sample
from creg.store import RunStore


def _sample(i: int, w: int, h: int = 64, name: str = "cat"):
    return make_sample(id=f"s{i}", image=Image.new("RGB", (w, h)), image_size=(w, h), ref_name=name,
                       ref_box=Box(x0=0, y0=0, x1=10, y1=10), tgt_name="dog", tgt_box=Box(x0=20, y0=0, x1=30, y1=10), relation="right")


WIDTHS = [64, 512, 64, 512, 128, 512, 64, 128]


def test_without_a_key_batches_follow_the_stream_and_skip_finished_samples():
    samples = [_sample(i, w) for i, w in enumerate(WIDTHS)]
    skipped = []
    out = list(batches(samples, 3, skip={"s1", "s4"}, on_skip=skipped.append))
    assert [[s.id for s in b] for b in out] == [["s0", "s2", "s3"], ["s5", "s6", "s7"]]
    assert [s.id for s in skipped] == ["s1", "s4"]


def test_bucketing_groups_similar_lengths_keeps_every_sample_once_and_ties_in_order():
    samples = [_sample(i, w) for i, w in enumerate(WIDTHS)]
    out = list(batches(samples, 2, key=length_key, window=4))
    ids = [s.id for b in out for s in b]
    assert sorted(ids) == sorted(s.id for s in samples)
    # each window of 2 * 4 samples is sorted by image area; equal areas keep the stream's order
    assert [[s.image_size[0] for s in b] for b in out] == [[64, 64], [64, 128], [128, 512], [512, 512]]
    assert [s.id for s in out[0]] == ["s0", "s2"]
    area = lambda s: s.image_size[0] * s.image_size[1]  # noqa: E731
    plain = list(batches(samples, 2))
    assert padding_fraction(out, area) < padding_fraction(plain, area)
    assert padding_fraction([[samples[0], samples[2]]], area) == 0.0
    # hand-computed: one batch of widths 64 and 512 pads 64 to 512 -> 1 - 576 / 1024
    assert padding_fraction([[samples[0], samples[1]]], area) == pytest.approx(1 - 576 / 1024)


def test_bucketing_reads_the_stream_lazily():
    endless = (_sample(i, 64 + 64 * (i % 3)) for i in itertools.count())
    first = next(batches(endless, 4, key=length_key, window=2))
    assert len(first) == 4  # a window of 8 was enough; the endless stream was not exhausted


def test_an_adapter_may_give_the_exact_sequence_length():
    class Adapter:
        def sequence_length(self, sample):
            return 1000 - sample.image_size[0]

    s64, s512 = _sample(0, 64), _sample(1, 512)
    assert length_key(s64, Adapter()) > length_key(s512, Adapter())
    assert length_key(s64) < length_key(s512)


def test_parse_batch_size():
    assert parse_batch_size("auto") == AUTO and parse_batch_size(" AUTO ") == AUTO
    assert parse_batch_size("16") == 16 and parse_batch_size(3) == 3
    for bad in ("0", "-1", "x", 0, 2.5, True):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            parse_batch_size(bad)


def test_largest_fitting_bisects_to_the_limit_of_a_monotone_test():
    for cap in (1, 2, 5, 17, 64):
        calls = []
        assert largest_fitting(lambda n: calls.append(n) or n <= cap, 64) == cap
        assert len(calls) <= 2 * 7 + 1
    assert largest_fitting(lambda n: False, 64) == 1  # nothing fits: one at a time
    assert largest_fitting(lambda n: True, 40) == 40


def test_auto_batch_size_on_cpu_is_fixed_and_on_gpu_stops_at_out_of_memory():
    assert resolve_batch_size(AUTO, device="cpu") == CPU_AUTO_BATCH
    assert resolve_batch_size(5, device="cuda") == 5

    def try_batch(n):
        if n > 11:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert resolve_batch_size(AUTO, device="cuda", try_batch=try_batch) == 11

    def broken(n):
        raise KeyError("a bug, not a memory limit")

    with pytest.raises(KeyError):
        resolve_batch_size(AUTO, device="cuda", try_batch=broken)


def test_run_with_batch_size_auto_records_the_resolved_size_and_the_same_records(tmp_path):
    base = dict(adapter="none", sources=["oracle", "random_relevance", "random"], n=10)
    Runner(RunConfig(**base), tmp_path / "one", progress=False, log=lambda m: None).run()
    Runner(RunConfig(**base, batch_size=AUTO), tmp_path / "auto", progress=False, log=lambda m: None).run()
    auto = RunStore.read(tmp_path / "auto")
    assert auto.config["run"]["batch_size"] == AUTO
    assert auto.config["execution"]["batch_size"] == CPU_AUTO_BATCH
    rows = lambda d: {(r.sample_id, r.source): r.model_dump() for r in RunStore.read(d).records()}  # noqa: E731
    assert rows(tmp_path / "auto") == rows(tmp_path / "one")


def test_cli_refuses_a_bad_batch_size_in_one_line(tmp_path):
    from click.testing import CliRunner

    from creg.cli.main import cli as main

    res = CliRunner().invoke(main, ["run", "--adapter", "none", "--batch-size", "many", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["creg: --batch-size 'many': expected a positive integer or 'auto'"]
    assert not (tmp_path / "r").exists()


def test_auto_batch_size_predicts_from_two_peak_readings_and_checks_once():
    """Peak memory linear in the batch size (2 GiB fixed + 3 GiB per sample, 40 GiB free): the
    readings at 1 and 2 predict 1 + (0.9 * 40 - 5) // 3 = 11, and one pass at 11 confirms it."""
    GiB = 2**30

    class FakeMemory:
        def start(self):
            self.n = None

        def peak(self):
            return (2 + 3 * self.n) * GiB

        def available(self):
            return 40 * GiB

    mem, calls = FakeMemory(), []

    def try_batch(n):
        calls.append(n)
        mem.n = n
        if (2 + 3 * n) * GiB > 40 * GiB:
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert resolve_batch_size(AUTO, device="cuda", try_batch=try_batch, memory=mem) == 11
    assert calls == [1, 2, 11]

    # the prediction was too optimistic (the fake runs out above 8): shrink by 0.8 until it fits
    calls.clear()

    def tighter(n):
        calls.append(n)
        mem.n = n
        if n > 8:
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert resolve_batch_size(AUTO, device="cuda", try_batch=tighter, memory=mem) == 8
    assert calls == [1, 2, 11, 8]


def test_predicted_batch_bounds():
    from creg.execution.batching import predicted_batch

    assert predicted_batch(5, 8, 100, 64) == 1 + int((90 - 5) // 3)
    assert predicted_batch(5, 8, 10_000, 64) == 64  # capped by the limit
    assert predicted_batch(5, 8, 6, 64) == 2  # 2 fitted already
    assert predicted_batch(5, 5, 100, 64) is None  # no growth: nothing to extrapolate


def test_run_prints_and_records_its_timing(tmp_path):
    from click.testing import CliRunner

    from creg.cli import cli

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle,random", "--n", "6",
                                    "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    line = next(l for l in res.output.splitlines() if l.startswith("time: "))
    assert "6 samples in" in line and "samples/s" in line
    assert "seconds" in RunStore.read(out).config["execution"]
