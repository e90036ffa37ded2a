"""The run store (issue 11, item 1-2): one reader/writer of the run directory.

Each test reproduces one of the issue's bad cases: NaN logits, a bad line mid-file, two writers,
a resume that would mix models, --overwrite that deleted first, failures that aborted the run,
a plugin's wrong output, SIGTERM / first error / umask, and 0.1 run directories.
"""

from __future__ import annotations

import json
import math
import os
import types
from collections import Counter

import pytest
import torch
from click.testing import CliRunner

import creg
from creg.plugins.manager import discover
from creg.plugins.relevance import RelevanceMap, RelevanceSource
from creg.config.run_config import RunConfig
from creg.core.errors import RunError
from creg.execution.runner import NoSamples, Runner, TooManyFailures, parse_max_failures
from creg.store import RunDirError, RunStore, RunWriter, SampleFacts, SourceRow, describe_run

torch.set_num_threads(1)


def quiet(_: str) -> None:
    pass


# -- test plugins (registered on a private Plugins table, as a third party's would be) -------------

FAIL_IDS: set[str] = set()  # samples the ``boom`` source raises on
NAN_IDS: set[str] = set()  # samples whose logits the ``nanfake`` adapter makes NaN


def _oracle_maps(ctx):
    return [RelevanceMap(values=torch.ones(1, 1, dtype=torch.float64),
                         cell_xy=torch.tensor([[list(s.tgt_box.center)]], dtype=torch.float64)) for s in ctx.samples]


class Boom(RelevanceSource):
    name = "boom"
    needs_model = False

    def explain(self, ctx):
        for s in ctx.samples:
            s.load_image()  # a missing image fails here
            if s.id in FAIL_IDS or "*" in FAIL_IDS:
                raise ValueError(f"cannot explain {s.id}")
        return _oracle_maps(ctx)


class Interrupting(RelevanceSource):
    name = "interrupting"
    needs_model = False

    def explain(self, ctx):
        if any(s.id.endswith("2") for s in ctx.samples):
            raise KeyboardInterrupt
        return _oracle_maps(ctx)


class Short(RelevanceSource):
    """Returns one map fewer than samples (``zip`` used to truncate this silently)."""
    name = "short"
    needs_model = False

    def explain(self, ctx):
        return _oracle_maps(ctx)[:-1]


class Flat(RelevanceSource):
    name = "flat"
    needs_model = False

    def explain(self, ctx):
        return [RelevanceMap(values=torch.ones(5, dtype=torch.float64)) for _ in ctx.samples]


def _fake_cls():
    from fake_vlm import FakeVLMAdapter

    class NanFake(FakeVLMAdapter):
        def forward(self, samples, request, **kw):
            out = super().forward(samples, request, **kw)
            logits = out.class_logits.detach().clone()
            for i, s in enumerate(samples):
                if s.id in NAN_IDS:
                    logits[i] = float("nan")
            out.class_logits = logits
            return out

    class Broken(FakeVLMAdapter):
        @classmethod
        def load(cls, config):
            raise OSError(f"no model at {config.model}")

    return FakeVLMAdapter, NanFake, Broken


def make_plugins(*modules):
    fake, nanfake, broken = _fake_cls()
    mod = types.ModuleType("creg_storetest")

    @creg.hookimpl
    def register_sources(register):
        for cls in (Boom, Interrupting, Short, Flat):
            register(cls.name, cls)

    @creg.hookimpl
    def register_adapters(register):
        register("fakevlm", fake)
        register("nanfake", nanfake)
        register("brokenvlm", broken)

    mod.register_sources, mod.register_adapters = register_sources, register_adapters
    plugins = discover()
    plugins.add_module(mod)
    for m in modules:
        plugins.add_module(m)
    return plugins


@pytest.fixture
def plugins():
    FAIL_IDS.clear()
    NAN_IDS.clear()
    yield make_plugins()
    FAIL_IDS.clear()
    NAN_IDS.clear()


def registry_file(tmp_path, name, adapter="fakevlm", model="m1", **extra) -> str:
    path = tmp_path / name
    body = "".join(f'{k} = "{v}"\n' for k, v in extra.items())
    path.write_text(f'[presets.mine]\nadapter = "{adapter}"\nmodel = "{model}"\n{body}')
    return str(path)


def run(cfg, out, plugins, **kw):
    return Runner(cfg, out, plugins=plugins, progress=False, log=kw.pop("log", quiet), **kw).run()


# -- NaN / inf ---------------------------------------------------------------------------------

def test_nan_and_inf_round_trip_through_the_store(tmp_path):
    doc = describe_run(RunConfig(sources=["x"]), None, None, {})
    facts = SampleFacts(id="s", image_size=[10, 10], ref={"name": "a", "box": [0, 0, 1, 1]},
                        tgt={"name": "b", "box": [5, 5, 6, 6]}, relation="below", true_angle=315.0, d_ab=7.07,
                        r_max=14.1, sigma=8.5, logits=[float("nan"), float("inf"), float("-inf"), 0.5])
    row = SourceRow(sample_id="s", source="x", compass=[1.0], peak_sector=0, peak_angle=0.0, sector_angle=0.0,
                    dae=None, dae_sector=None, ea=None, extra={"score": float("nan")})
    with RunWriter(tmp_path / "r", doc, sources=["x"]) as w:
        w.start()
        w.write_samples([(facts, [row])])
    store = RunStore.read(tmp_path / "r")
    (rec,) = store.records()
    assert math.isnan(rec.logits[0]) and rec.logits[1:] == [float("inf"), float("-inf"), 0.5]
    assert math.isnan(rec.extra["score"]) and store.problems == []
    assert "NaN" in (tmp_path / "r" / "samples.jsonl").read_text()


def test_nan_logits_fail_that_sample_named_by_the_adapter_and_the_run_goes_on(tmp_path, plugins):
    _, nanfake, _ = _fake_cls()
    NAN_IDS.add("synthetic-0-00001")
    cfg = RunConfig(sources=["oracle", "random"], n=4, batch_size=2, bench_options={"width": 112, "height": 112})
    res = run(cfg, tmp_path / "r", plugins, adapter=nanfake(patch_px=14))
    store = RunStore.read(tmp_path / "r")
    (fail,) = store.failures()
    assert fail.sample_id == "synthetic-0-00001" and fail.reason == "PluginOutputError"
    assert "adapter" in fail.plugin and "non-finite class logits" in fail.error
    assert len(store.records()) == 6 and store.problems == []
    assert res.summary["complete"] is True and res.summary["n_samples"] == 3
    assert res.summary["skipped"] == {"PluginOutputError": 1}


# -- bad lines -----------------------------------------------------------------------------------

def test_a_bad_line_mid_file_costs_only_itself_in_report_and_resume(tmp_path, plugins):
    from creg.cli import cli

    out = tmp_path / "r"
    cfg = RunConfig(sources=["oracle", "random"], n=6)
    run(cfg, out, plugins)
    lines = (out / "records.jsonl").read_text().splitlines()
    lines[2] = '{"sample_id": "synthetic-0-00001", "source": "oracle", "compass": null'  # invalid JSON
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")

    store = RunStore.read(out)
    assert len(store.records()) == 11  # every valid line after the bad one is kept
    assert any(p.startswith("records.jsonl line 3:") for p in store.problems)
    res = CliRunner().invoke(cli, ["report", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "records.jsonl line 3" in res.output and "records.jsonl line 3" in (out / "report.md").read_text()

    logs: list[str] = []
    result = run(cfg, out, plugins, log=logs.append)
    assert result.resumed == 5 and result.processed == 1  # only the sample that lost a line is redone
    assert any("records.jsonl line 3" in m for m in logs)
    rejected = [json.loads(l) for l in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["file"] == "records.jsonl" and rejected[0]["line"] == 3
    store = RunStore.read(out)
    counts = Counter((r.sample_id, r.source) for r in store.records())
    assert len(counts) == 12 and set(counts.values()) == {1} and store.problems == []


# -- the lock ------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_with_one_clear_line(tmp_path, plugins):
    from creg.cli import cli

    out = tmp_path / "r"
    cfg = RunConfig(sources=["oracle"], n=3)
    run(cfg, out, plugins)
    doc = json.loads((out / "config.json").read_text())
    with RunWriter(out, doc, sources=["oracle"]):
        with pytest.raises(RunDirError, match="being written by another creg run"):
            run(cfg, out, plugins)
        res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--n", "3", "--out", str(out),
                                       "--no-progress"])
        assert res.exit_code == 2 and "being written by another creg run (pid" in res.output
        assert len([l for l in res.output.splitlines() if l.startswith("creg:")]) == 1
    assert len((out / "records.jsonl").read_text().splitlines()) == 3  # nothing written twice
    run(cfg, out, plugins)  # the lock is free again


# -- what a resume checks ------------------------------------------------------------------------

def test_resume_refuses_another_model_or_dtype_behind_the_same_name(tmp_path, plugins):
    out = tmp_path / "r"
    r1 = registry_file(tmp_path, "r1.toml", model="m1")
    r2 = registry_file(tmp_path, "r2.toml", model="m2")
    base = dict(adapter="mine", sources=["oracle"], n=2, device="cpu", bench_options={"width": 112, "height": 112})
    run(RunConfig(**base, registry=[r1]), out, plugins)
    stored = json.loads((out / "config.json").read_text())
    assert stored["schema_version"] == 2 and stored["adapter"]["model"] == "m1" and stored["adapter"]["dtype"] == "float32"
    assert {"creg", "torch", "transformers", "threads"} <= set(stored["environment"])
    with pytest.raises(RunDirError, match=r"adapter\.model: 'm1' -> 'm2'"):
        run(RunConfig(**base, registry=[r2]), out, plugins)
    with pytest.raises(RunDirError, match=r"adapter\.dtype: 'float32' -> 'bfloat16'"):
        run(RunConfig(**{**base, "device": "cuda:0"}, registry=[r1]), out, plugins)
    assert run(RunConfig(**base, registry=[r1]), out, plugins).resumed == 2  # the same resolution continues


# -- --overwrite ---------------------------------------------------------------------------------

def test_overwrite_validates_everything_first_then_removes_every_old_file(tmp_path, plugins):
    from creg.report.report import build_report

    out = tmp_path / "r"
    r1 = registry_file(tmp_path, "r1.toml")
    base = dict(adapter="mine", sources=["oracle"], n=2, bench_options={"width": 112, "height": 112}, registry=[r1])
    run(RunConfig(**base), out, plugins)
    build_report(out, log=quiet)
    run(RunConfig(**base), RunStore.read(out).sub_path("flip"), plugins)
    before = {p.name for p in out.iterdir()}
    assert {"report.md", "report.json", "figures", "flip"} <= before
    records = (out / "records.jsonl").read_bytes()

    with pytest.raises((RunError, ValueError), match="prompt"):  # a prompt without placeholders
        run(RunConfig(**{**base, "prompt": "Where is it?"}), out, plugins, overwrite=True)
    broken = registry_file(tmp_path, "r3.toml", adapter="brokenvlm")
    with pytest.raises(RunError, match="could not load"):  # the model does not load
        run(RunConfig(**{**base, "registry": [broken]}), out, plugins, overwrite=True)
    assert (out / "records.jsonl").read_bytes() == records and {p.name for p in out.iterdir()} == before

    run(RunConfig(**{**base, "k": 4}), out, plugins, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json", "maps", "records.jsonl", "samples.jsonl",
                                                     "summary.json", "table.md"]


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, plugins):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(RunDirError, match="not empty and holds no creg run"):
        run(RunConfig(sources=["oracle"], n=2), out, plugins, overwrite=True)
    assert (out / "notes.txt").read_text() == "precious"


# -- failure isolation ---------------------------------------------------------------------------

def test_a_failing_sample_is_recorded_and_retried_by_the_next_run(tmp_path, plugins):
    out = tmp_path / "r"
    FAIL_IDS.add("synthetic-0-00002")
    cfg = RunConfig(sources=["oracle", "boom"], n=6, batch_size=2)
    res = run(cfg, out, plugins)
    assert res.processed == 5 and res.summary["complete"] is True and res.summary["skipped"] == {"ValueError": 1}
    (fail,) = RunStore.read(out).failures()
    assert fail.sample_id == "synthetic-0-00002" and fail.plugin == "source 'boom'"
    assert "cannot explain synthetic-0-00002" in fail.error and "ValueError" in fail.traceback

    FAIL_IDS.clear()  # the cause is fixed: the same command processes it
    res = run(cfg, out, plugins)
    assert res.resumed == 5 and res.processed == 1 and res.summary["skipped"] == {}
    store = RunStore.read(out)
    assert store.failures() == [] and len(store.records()) == 12


def _files_benchmark(plugins, images, n=3):
    from creg.plugins.benchmark import Benchmark
    from creg.core.sample import Box, make_sample

    class Files(Benchmark):
        name = "files"

        def samples(self):
            for i in range(n):
                yield make_sample(id=f"f{i}", image=images / f"{i}.png", image_size=(64, 64), ref_name="a",
                                  ref_box=Box(x0=0, y0=0, x1=10, y1=10), tgt_name="b",
                                  tgt_box=Box(x0=40, y0=0, x1=50, y1=10), relation="right")

    mod = types.ModuleType("creg_filesbench")
    mod.register_benchmarks = creg.hookimpl(lambda register: register("files", Files))
    plugins.add_module(mod)


def test_a_decompression_bomb_is_a_failure_with_its_reason(tmp_path, plugins, monkeypatch):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    _files_benchmark(plugins, images, n=2)
    Image.new("RGB", (64, 64)).save(images / "0.png")
    Image.new("RGB", (64, 64)).save(images / "1.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 > 2 x 1000 pixels: PIL refuses it as a bomb
    with pytest.raises(NoSamples, match="no sample was explained"):  # every sample failed: an error, not a table
        run(RunConfig(sources=["boom"], bench="files"), tmp_path / "r", plugins)
    summary = RunStore.read(tmp_path / "r").summary()
    assert summary["n_samples"] == 0 and sum(summary["skipped"].values()) == 2 and summary["complete"] is True
    fails = RunStore.read(tmp_path / "r").failures()
    assert len(fails) == 2 and all("bomb" in (f.reason + f.error).lower() for f in fails)


def test_a_missing_image_is_retried_once_it_is_there(tmp_path, plugins):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    _files_benchmark(plugins, images)
    for i in (0, 2):
        Image.new("RGB", (64, 64)).save(images / f"{i}.png")
    cfg = RunConfig(sources=["boom"], bench="files")
    res = run(cfg, tmp_path / "r", plugins)
    assert res.processed == 2 and res.summary["skipped"] == {"FileNotFoundError": 1}
    Image.new("RGB", (64, 64)).save(images / "1.png")
    res = run(cfg, tmp_path / "r", plugins)
    assert res.processed == 1 and res.summary["skipped"] == {} and res.summary["n_samples"] == 3


def test_max_failures_stops_a_run_that_fails_everywhere(tmp_path, plugins):
    FAIL_IDS.add("*")
    with pytest.raises(TooManyFailures, match=r"stopped: 10 of 10 samples failed .*ValueError in source 'boom'"):
        run(RunConfig(sources=["boom"], n=40), tmp_path / "r", plugins)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["complete"] is False and summary["skipped"] == {"ValueError": 10}
    with pytest.raises(TooManyFailures, match="stopped: 3 of 3"):
        run(RunConfig(sources=["boom"], n=40), tmp_path / "r2", plugins, max_failures="2")
    assert parse_max_failures("10%") == pytest.approx(0.1) and parse_max_failures("0") == 0
    for bad in ("lots", "-1", "1.5"):
        with pytest.raises(RunError, match="--max-failures"):
            parse_max_failures(bad)


@pytest.mark.parametrize("source,message", [
    ("short", "source 'short': returned 0 relevance maps for 1 samples"),
    ("flat", "source 'flat': returned relevance of shape (5,)"),
])
def test_wrong_plugin_output_is_an_error_of_the_sample_named_by_plugin(tmp_path, plugins, source, message):
    with pytest.raises(NoSamples, match="PluginOutputError 3"):
        run(RunConfig(sources=["oracle", source], n=3, batch_size=3), tmp_path / "r", plugins, max_failures=100)
    fails = RunStore.read(tmp_path / "r").failures()
    assert len(fails) == 3 and all(message in f.error and f.reason == "PluginOutputError" for f in fails)
    assert RunStore.read(tmp_path / "r").records() == []


# -- endings -----------------------------------------------------------------------------------

def test_the_first_error_is_the_one_reported(tmp_path, plugins, monkeypatch):
    def disk_full(self, summary, table):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunWriter, "write_summary", disk_full)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(sources=["interrupting"], n=5), tmp_path / "r", plugins, log=logs.append)
    assert any("could not write the summary either" in m and "No space left" in m for m in logs)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_honour_the_umask(tmp_path, plugins, umask):
    old = os.umask(umask)
    try:
        run(RunConfig(sources=["oracle"], n=2), tmp_path / "r", plugins)
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("config.json", "summary.json", "table.md", "records.jsonl", "samples.jsonl"):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == want, name


def test_artifact_names_from_data_stay_inside_the_run_directory(tmp_path, plugins):
    run(RunConfig(sources=["oracle"], n=1), tmp_path / "r", plugins)
    store = RunStore.read(tmp_path / "r")
    p = store.write_artifact("figures/x/../../../../elsewhere/y.png", b"png")
    assert p.resolve().is_relative_to((tmp_path / "r").resolve())
    assert not (tmp_path / "elsewhere").exists()


# -- creg 0.1 run directories --------------------------------------------------------------------

def test_a_0_1_run_directory_is_read_and_not_continued(tmp_path, plugins):
    from creg.report.report import build_report

    out = tmp_path / "old"
    out.mkdir()
    run_cfg = RunConfig(sources=["oracle", "random"], n=2).model_dump()
    (out / "config.json").write_text(json.dumps({"creg_version": "0.1.0", "run": run_cfg, "adapter": None,
                                                 "benchmark": {"name": "synthetic"}}))
    samples, records = [], []
    for i, rel in enumerate(["left", "right"]):
        sid = f"s{i}"
        samples.append({"id": sid, "image": None, "image_size": [100, 100], "ref": {"name": "a", "box": [40, 40, 60, 60]},
                        "tgt": {"name": "b", "box": [0, 40, 20, 60] if rel == "left" else [80, 40, 100, 60]},
                        "relation": rel, "meta": {}})
        for src, dae in (("oracle", 0.0), ("random", 100.0)):
            records.append({"sample_id": sid, "source": src, "relation": rel, "pred": None, "correct": None, "logits": None,
                            "true_angle": 180.0 if rel == "left" else 0.0, "compass": [0.125] * 8, "peak_sector": 0,
                            "peak_angle": 0.0, "sector_angle": 0.0, "dae": dae, "dae_sector": dae, "ea": dae <= 45,
                            "flags": [], "cos": None, "extra": {}})
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    store = RunStore.read(out)
    assert store.schema_version == 1 and len(store.records()) == 4 and store.samples()["s0"].d_ab == 40.0
    rep = build_report(out, figures=False, log=quiet)
    assert rep["summary"]["sources"]["oracle"]["dae"] == 0.0 and rep["summary"]["sources"]["random"]["ea"] == 0.0
    with pytest.raises(RunDirError, match="schema version 1.*`creg report` still reads it"):
        run(RunConfig(sources=["oracle", "random"], n=2), out, plugins)


def test_a_source_name_with_a_path_cannot_make_the_report_write_outside(tmp_path, plugins):
    """A run directory from elsewhere (or a plugin) names a source ``x/../../../elsewhere/y``."""
    pytest.importorskip("matplotlib")
    from creg.report.report import build_report

    evil = "x/../../../elsewhere/y"
    out = tmp_path / "a" / "b" / "r"
    run(RunConfig(sources=["oracle"], n=2), out, plugins)
    rows = (out / "records.jsonl").read_text().replace('"source": "oracle"', json.dumps({"source": evil})[1:-1])
    (out / "records.jsonl").write_text(rows)
    rep = build_report(out, log=quiet)
    assert any(name.startswith("examples_x_") for name in rep["figures"])
    inside = out.resolve()
    assert all((out / rel).resolve().is_relative_to(inside) and (out / rel).is_file() for rel in rep["figures"].values())
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(inside))
