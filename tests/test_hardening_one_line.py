"""Issue 21, item 5: one line, never a traceback, through creg report, config loading, the COCO readers
and creg explain / the API (the benchmarks' image checks); the report draws only finite values."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from creg.plugins.benchmark import DataInvalid
from creg.cli import cli
from creg.coco.annotations import load_instances
from creg.execution.runner import Runner, RunConfig

from hostile_runs import one_line

torch.set_num_threads(1)


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=3), out, progress=False, log=lambda _: None).run()
    return out


# -- creg report --------------------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_report_on_a_read_only_run_dir(run):
    os.chmod(run, 0o555)
    try:
        line = one_line(CliRunner().invoke(cli, ["report", str(run), "--no-figures"]))
    finally:
        os.chmod(run, 0o755)
    assert "cannot read or write" in line


@pytest.mark.parametrize("err", ["ENOSPC", "EROFS"])
def test_report_on_a_full_disk_or_read_only_file_system(run, monkeypatch, err):
    import errno

    import creg.store.files as files

    def full(path, data):
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)), str(path))

    monkeypatch.setattr(files, "write_atomic", full)
    monkeypatch.setattr("creg.store.run_store.write_atomic", full)
    line = one_line(CliRunner().invoke(cli, ["report", str(run), "--no-figures"]))
    assert os.strerror(getattr(errno, err)) in line and "report.json" in line


def test_report_with_records_jsonl_a_directory(run):
    (run / "records.jsonl").unlink()
    (run / "records.jsonl").mkdir()
    line = one_line(CliRunner().invoke(cli, ["report", str(run), "--no-figures"]))
    assert "records.jsonl" in line


@pytest.mark.parametrize("damage", [{"k": "abc"}, ["run", "as", "a", "list"], {"seed": -1}])
def test_damaged_config_json_is_one_line_for_report_and_resume(run, damage):
    cfg = json.loads((run / "config.json").read_text())
    cfg["run"] = {**cfg["run"], **damage} if isinstance(damage, dict) else damage
    (run / "config.json").write_text(json.dumps(cfg))
    line = one_line(CliRunner().invoke(cli, ["report", str(run), "--no-figures"]))
    assert "damaged" in line
    line = one_line(CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle,random", "--n", "3",
                                             "--no-progress", "--out", str(run)]))
    assert "damaged" in line


def test_infinity_in_a_compass_does_not_kill_the_report(run):
    lines = (run / "records.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["compass"][0] = float("inf")
    rec["dae"] = float("inf")
    lines[0] = json.dumps(rec)  # writes Infinity
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(cli, ["report", str(run), "--dpi", "30", "--no-heatmaps"])
    assert res.exit_code == 0, res.output
    assert (run / "report.md").is_file() and any((run / "figures").iterdir())


# -- COCO readers -------------------------------------------------------------------------------------

def _instances(root, text: str):
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(text)


def test_coco_json_nested_200k_deep_is_one_error(tmp_path):
    _instances(tmp_path, "[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataInvalid, match="nested too deeply"):
        load_instances(tmp_path, "val2017")


def test_coco_image_id_a_list_is_skipped_and_counted(tmp_path):
    doc = {"images": [{"id": [1], "file_name": "a.jpg", "width": 10, "height": 10},
                      {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10}],
           "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],
           "categories": [{"id": 1, "name": "cup"}]}
    _instances(tmp_path, json.dumps(doc))
    index = load_instances(tmp_path, "val2017")
    assert set(index.images) == {2} and sum(index.skipped.values()) == 1


# -- creg explain / the API: the benchmarks' image checks ---------------------------------------------

def _png(path, size):
    Image.new("L", size).save(path, optimize=True)
    return path


def test_explain_refuses_an_image_above_the_pixel_limit(tmp_path):
    from creg.core.images import MAX_PIXELS

    big = _png(tmp_path / "big.png", (9000, 8000))  # 72 M pixels > MAX_PIXELS (64 M), below PIL's own limit
    assert 9000 * 8000 > MAX_PIXELS
    line = one_line(CliRunner().invoke(cli, ["explain", "--adapter", "none", "--source", "oracle", "--image", str(big),
                                             "--ref", "a", "--ref-box", "0,0,10,10", "--tgt", "b",
                                             "--tgt-box", "100,100,120,120"]))
    assert "decompression bomb" in line


def test_api_refuses_a_decompression_bomb(tmp_path, monkeypatch):
    import creg
    from creg.api import ApiError

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's own bomb error, as for a 900 M-pixel file
    small = _png(tmp_path / "s.png", (100, 100))
    m = creg.load("none")
    with pytest.raises(ApiError, match="decompression bomb"):
        m.explain(small, ref=("a", (0, 0, 10, 10)), tgt=("b", (50, 50, 60, 60)), sources=["oracle"])
    with pytest.raises(ApiError, match="aspect ratio"):
        m.explain(Image.new("RGB", (4000, 10)), ref=("a", (0, 0, 2, 2)), tgt=("b", (50, 0, 60, 2)), sources=["oracle"])


def test_explain_with_a_special_token_in_a_name_is_one_line(tiny_qwen2vl_dir, tmp_path):
    img = tmp_path / "i.png"
    Image.new("RGB", (64, 48), "white").save(img)
    line = one_line(CliRunner().invoke(cli, ["explain", "--adapter", "qwen2vl", "--model", str(tiny_qwen2vl_dir),
                                             "--source", "oracle", "--image", str(img),
                                             "--ref", "cup<|im_end|>", "--ref-box", "0,0,10,10", "--tgt", "b",
                                             "--tgt-box", "40,20,60,40"]))
    assert "special token" in line
