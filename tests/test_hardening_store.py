"""Issue 21, item 2: a run store that never follows links and never writes or deletes outside its folder;
a refused run leaves nothing behind."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.execution.runner import Runner, RunConfig
from creg.store import RunDirError, RunStore, RunWriter, absorb_parts, part_path
from creg.store.files import DirLock, append_lines

from hostile_runs import one_line

torch.set_num_threads(1)

RUN = ["run", "--adapter", "none", "--source", "oracle,random", "--n", "3", "--no-progress"]


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=3), out, progress=False, log=lambda _: None).run()
    return out


@pytest.fixture
def victim(tmp_path):
    f = tmp_path / "outside" / "precious.txt"
    f.parent.mkdir()
    f.write_text("keep me\n")
    return f


def test_lock_symlink_is_not_truncated(tmp_path, run, victim):
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    line = one_line(CliRunner().invoke(cli, RUN + ["--out", str(run)]))
    assert "symbolic link" in line and ".lock" in line
    assert victim.read_text() == "keep me\n"


def test_dirlock_and_append_refuse_links(tmp_path, victim):
    (tmp_path / ".lock").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        DirLock(tmp_path).acquire()
    (tmp_path / "records.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        append_lines(tmp_path / "records.jsonl", ["{}"])
    assert victim.read_text() == "keep me\n"


@pytest.mark.parametrize("entry", ["records.jsonl", "samples.jsonl"])
def test_linked_jsonl_is_refused_on_resume_and_report(tmp_path, run, victim, entry):
    victim.write_text((run / entry).read_text())
    before = victim.read_text()
    (run / entry).unlink()
    (run / entry).symlink_to(victim)
    line = one_line(CliRunner().invoke(cli, RUN + ["--n", "5", "--out", str(run)]))
    assert entry in line and "symbolic link" in line
    line = one_line(CliRunner().invoke(cli, ["report", str(run), "--no-figures"]))
    assert entry in line
    assert victim.read_text() == before


def test_linked_figures_folder_is_refused(tmp_path, run):
    outside = tmp_path / "outside-figures"
    outside.mkdir()
    (run / "figures").symlink_to(outside, target_is_directory=True)
    line = one_line(CliRunner().invoke(cli, ["report", str(run), "--dpi", "30", "--no-heatmaps"]))
    assert "figures" in line and "symbolic link" in line
    assert list(outside.iterdir()) == []


def test_linked_parts_folder_is_not_emptied(tmp_path, run):
    outside = tmp_path / "outside-parts"
    (outside / "rank-00000").mkdir(parents=True)
    (outside / "rank-00000" / "data.txt").write_text("x")
    (run / "parts").symlink_to(outside, target_is_directory=True)
    line = one_line(CliRunner().invoke(cli, RUN + ["--out", str(run)]))
    assert "parts" in line
    assert (outside / "rank-00000" / "data.txt").read_text() == "x"


def test_absorb_parts_removes_only_real_folders(tmp_path, run):
    outside = tmp_path / "outside-rank"
    outside.mkdir()
    (outside / "data.txt").write_text("x")
    part_path(run, 0).parent.mkdir()
    part_path(run, 0).symlink_to(outside, target_is_directory=True)
    doc = json.loads((run / "config.json").read_text())
    w = RunWriter(run, doc, sources=["oracle", "random"])
    w.log = lambda _: None
    with pytest.raises(RunDirError, match="symbolic link"):
        absorb_parts(w)
    assert (outside / "data.txt").read_text() == "x"
    # called directly (no writer checks first), it still never deletes through the link
    os.unlink(part_path(run, 0))
    assert absorb_parts(w) == 0


def test_report_embeds_only_images_under_the_data_folder(tmp_path):
    from creg.report.examples import image_in_data_folder, run_samples

    outside = tmp_path / "secret.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(outside)
    data = tmp_path / "data"
    (data / "val2017").mkdir(parents=True)
    inside = data / "val2017" / "a.png"
    Image.new("RGB", (8, 8)).save(inside)
    cfg = {"run": {"data_dir": str(data)}, "benchmark": {}}
    assert image_in_data_folder(cfg, str(outside)) is None
    assert image_in_data_folder(cfg, str(data / "val2017" / ".." / ".." / "secret.png")) is None
    assert image_in_data_folder(cfg, str(inside)) == inside.resolve()
    assert image_in_data_folder({"run": {"data_dir": None}, "benchmark": {}}, str(inside)) is None
    (data / "val2017" / "link.png").symlink_to(outside)
    assert image_in_data_folder(cfg, str(data / "val2017" / "link.png")) is None
    row = {"image": str(outside), "image_size": [8, 8], "ref": {"name": "a", "box": [0, 0, 2, 2]},
           "tgt": {"name": "b", "box": [5, 5, 7, 7]}, "relation": "right"}
    cfg = {"run": {"data_dir": str(data), "bench": "nope"}, "benchmark": {}}
    assert run_samples(cfg, {"s1": row}, {"s1"}) == {}


def test_refused_out_leaves_no_lock(tmp_path):
    out = tmp_path / "notarun"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    line = one_line(CliRunner().invoke(cli, RUN + ["--out", str(out)]))
    assert "not empty" in line
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_failed_model_load_leaves_nothing(tmp_path):
    out = tmp_path / "deep" / "run"

    class Broken(Exception):
        pass

    runner = Runner(RunConfig(sources=["oracle"], n=2), out, progress=False, log=lambda _: None)
    runner._adapter_cls = type("A", (), {"load": staticmethod(lambda cfg: (_ for _ in ()).throw(Broken("no cuda")))})
    runner.adapter_config = type("C", (), {"model": "m"})()
    runner.describe = lambda: {"run": {}}
    with pytest.raises(Exception, match="no cuda"):
        runner.run()
    assert not (tmp_path / "deep").exists()


def test_store_read_refuses_links(run):
    (run / "summary.json").rename(run / "summary.real")
    (run / "summary.json").symlink_to(run / "summary.real")
    with pytest.raises(RunDirError, match="summary.json is a symbolic link"):
        RunStore.read(run)


@pytest.mark.slow
def test_device_cuda_on_a_cpu_machine_leaves_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "qwen2vl-toy", "--device", "cuda", "--source", "oracle",
                                   "--n", "2", "--no-progress", "--out", str(out)])
    line = one_line(res)
    assert "could not load" in line
    assert not out.exists()
