"""Bad data in, clear result out: paths stay in the data folder, safe file names, image modes,
decompression bombs, extreme aspect ratios and malformed annotation entries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coco_fixtures import CATEGORIES, FixtureImage, FixtureObject, pair_scenes, write_coco_folder
from creg.plugins.benchmark import DataInvalid
from creg.core import images as images_mod
from creg.coco.annotations import load_instances
from creg.core.images import image_problem, to_rgb
from creg.core.paths import UnsafePath, resolve_inside
from creg.core.sample import Box, ImageUnreadable, make_sample
from creg_coco_pairs.benchmark import CocoPairsBenchmark


# -- paths and names ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "..\\..\\x.jpg", "", "a\x00b"])
def test_paths_from_data_files_may_not_leave_the_data_folder(tmp_path, name):
    with pytest.raises(UnsafePath):
        resolve_inside(tmp_path, name)


def test_ordinary_relative_paths_resolve_inside(tmp_path):
    assert resolve_inside(tmp_path, "000000000001.jpg") == tmp_path / "000000000001.jpg"
    assert resolve_inside(tmp_path, "sub/dir/x.jpg") == tmp_path / "sub" / "dir" / "x.jpg"


# -- images ---------------------------------------------------------------------------------------

def _grey_gradient(mode: str) -> Image.Image:
    ramp = np.linspace(0, 1, 64, dtype=np.float64)[None, :].repeat(8, axis=0)
    if mode == "I;16":
        data = (ramp * 65535).astype("<u2")
        return Image.frombytes("I;16", (data.shape[1], data.shape[0]), data.tobytes())
    if mode == "I":
        return Image.fromarray((ramp * 65535).astype(np.int32), "I")
    if mode == "F":
        return Image.fromarray(ramp.astype(np.float32), "F")
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_depth_greyscale_keeps_its_contrast(mode, tmp_path):
    im = _grey_gradient(mode)
    rgb = np.asarray(to_rgb(im))
    assert rgb.shape == (8, 64, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 <= rgb[0, 32, 0] <= 135  # a ramp, not all white
    if mode == "I;16":  # the same through a file (16-bit PNG) and Sample.load_image
        path = tmp_path / "g16.png"
        im.save(path)
        s = make_sample(id="g", image=path, image_size=im.size, ref_name="a", ref_box=Box(x0=0, y0=0, x1=4, y1=4),
                        tgt_name="b", tgt_box=Box(x0=40, y0=0, x1=44, y1=4), relation="right")
        loaded = np.asarray(s.load_image())
        assert loaded[0, 0, 0] == 0 and loaded[0, -1, 0] == 255 and loaded.std() > 50


def test_palette_alpha_and_cmyk_convert_to_the_right_colours():
    p = Image.new("P", (4, 4))
    p.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    assert tuple(np.asarray(to_rgb(p))[0, 0]) == (255, 0, 0)
    la = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent -> white background
    assert tuple(np.asarray(to_rgb(la))[0, 0]) == (255, 255, 255)
    la_opaque = Image.new("LA", (4, 4), (100, 255))
    assert tuple(np.asarray(to_rgb(la_opaque))[0, 0]) == (100, 100, 100)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    assert tuple(np.asarray(to_rgb(cmyk))[0, 0]) == (255, 0, 0)
    assert tuple(np.asarray(to_rgb(Image.new("1", (2, 2), 1)))[0, 0]) == (255, 255, 255)


def test_decompression_bomb_and_extreme_aspect_ratio_are_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 100 * 100)
    big = tmp_path / "big.png"
    Image.new("L", (200, 200)).save(big)  # a few hundred bytes on disk, 4x the pixel limit
    assert image_problem(big) == "image too large (decompression bomb)"
    wide = tmp_path / "wide.png"
    Image.new("L", (1010, 5)).save(wide)  # 5,050 pixels: within the limit, aspect 202
    assert image_problem(wide) == "extreme aspect ratio"
    s = make_sample(id="big", image=big, image_size=(200, 200), ref_name="a", ref_box=Box(x0=0, y0=0, x1=4, y1=4),
                    tgt_name="b", tgt_box=Box(x0=40, y0=0, x1=44, y1=4), relation="right")
    with pytest.raises(ImageUnreadable, match="decompression bomb"):
        s.load_image()


def test_pil_own_bomb_error_is_a_reason_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50 * 50)  # PIL raises above twice this
    path = tmp_path / "b.png"
    Image.new("L", (200, 200)).save(path)
    assert image_problem(path) == "image too large (decompression bomb)"


# -- annotation files -----------------------------------------------------------------------------

def _malformed_coco(root: Path) -> None:
    """A valid folder of clean scenes, then bad entries appended to its annotation file."""
    write_coco_folder(root, pair_scenes(8, 8))
    path = root / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    doc["images"] += [
        {"id": 9001, "file_name": "../../x.jpg", "width": 120, "height": 120},
        {"id": 9002, "file_name": "/etc/passwd", "width": 120, "height": 120},
        {"id": 9003, "file_name": "ok.jpg", "width": None, "height": 120},
        ["not", "an", "object"],
    ]
    first = doc["images"][0]["id"]
    doc["annotations"] += [
        {"id": 99001, "image_id": first, "category_id": 999, "bbox": [1, 1, 10, 10], "iscrowd": 0},
        {"id": 99002, "image_id": first, "category_id": CATEGORIES["cat"], "bbox": [1, 1, 10], "iscrowd": 0},
        {"id": 99003, "image_id": first, "category_id": CATEGORIES["cat"], "bbox": [1, 1, None, 10], "iscrowd": 0},
        {"id": 99004, "image_id": 424242, "category_id": CATEGORIES["cat"], "bbox": [1, 1, 5, 5], "iscrowd": 0},
        {"id": 99005, "image_id": 9001, "category_id": CATEGORIES["cat"], "bbox": [1, 1, 5, 5], "iscrowd": 0},
        "a string",
    ]
    path.write_text(json.dumps(doc))


def test_malformed_entries_are_skipped_with_their_reason(tmp_path):
    _malformed_coco(tmp_path)
    index = load_instances(tmp_path, "val2017")
    assert dict(index.skipped) == {
        "image path outside the data folder": 2,
        "malformed image entry": 2,
        "annotation with unknown category id": 1,
        "malformed annotation": 3,
        "annotation of an unknown image id": 1,
    }
    assert 9001 not in index.images and len(index.images) == 16
    bench = CocoPairsBenchmark(data_dir=tmp_path, n=8)
    samples = list(bench.samples())
    assert len(samples) == 8
    info = bench.describe()
    assert info["skipped"]["malformed annotation"] == 3 and info["skipped"]["image path outside the data folder"] == 2
    assert all(tmp_path in s.image_path.parents for s in samples)


def test_a_json_list_instead_of_an_object_is_one_clear_error(tmp_path):
    write_coco_folder(tmp_path, pair_scenes(1, 1))
    (tmp_path / "annotations" / "instances_val2017.json").write_text("[1, 2, 3]")
    with pytest.raises(DataInvalid, match="expected a JSON object with images, annotations and categories, got a JSON list"):
        load_instances(tmp_path, "val2017")
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DataInvalid, match="is not a COCO instances file"):
        load_instances(tmp_path, "val2017")


def test_bad_annotation_file_through_creg_run_is_one_line_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from creg.cli import cli

    write_coco_folder(tmp_path / "data", pair_scenes(1, 1))
    (tmp_path / "data" / "annotations" / "instances_val2017.json").write_text("[]")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--bench", "coco_pairs",
                                   "--data-dir", str(tmp_path / "data"), "--out", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "got a JSON list" in res.output and "Traceback" not in res.output
    assert not (out / "config.json").exists()


def test_an_annotation_file_name_that_escapes_is_never_opened(tmp_path):
    """The exact case of the issue: file_name '../../x.jpg' names a real image outside the data folder."""
    root = tmp_path / "data"
    write_coco_folder(root, [FixtureImage(1, [FixtureObject("cat", (5, 40, 30, 30)), FixtureObject("dog", (80, 40, 30, 30))])])
    Image.new("RGB", (120, 120)).save(tmp_path / "x.jpg")
    path = root / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    doc["images"][0]["file_name"] = "../../x.jpg"
    path.write_text(json.dumps(doc))
    bench = CocoPairsBenchmark(data_dir=root, n=4)
    assert list(bench.samples()) == []
    assert bench.describe()["skipped"] == {"image path outside the data folder": 1}


# -- laziness and bounds --------------------------------------------------------------------------

def test_synthetic_yields_lazily_and_knows_its_count_cheaply():
    import gc
    import weakref

    from creg_synthetic.benchmark import SyntheticBenchmark

    bench = SyntheticBenchmark(n=1_000_000)
    assert bench.expected_count() == 1_000_000  # without drawing a scene
    it = bench.samples()
    first = next(it)
    ref_sample, ref_image = weakref.ref(first), weakref.ref(first.image)
    del first
    for _ in range(3):
        next(it)
    gc.collect()
    assert ref_sample() is None and ref_image() is None  # the benchmark keeps no sample it has yielded


def test_a_decompression_bomb_or_extreme_aspect_image_is_a_skipped_sample_not_an_aborted_run(tmp_path, monkeypatch):
    """Through the runner with a model: the refused images are skipped with their reason, the others run."""
    from creg.plugins.benchmark import Benchmark
    from creg.plugins.manager import discover
    from creg.config.run_config import RunConfig
    from creg.execution.runner import Runner
    from fake_vlm import FakeVLMAdapter

    monkeypatch.setattr(images_mod, "MAX_PIXELS", 300 * 300)
    files = {}
    for name, size in {"ok": (64, 64), "bomb": (400, 400), "wide": (2020, 10)}.items():
        files[name] = tmp_path / f"{name}.png"
        Image.new("RGB", size, (200, 200, 200)).save(files[name])

    class Files(Benchmark):
        name = "files"

        def samples(self):
            for name, path in files.items():
                w, h = Image.open(path).size
                yield make_sample(id=name, image=path, image_size=(w, h), ref_name="a",
                                  ref_box=Box(x0=0, y0=0, x1=4, y1=4), tgt_name="b",
                                  tgt_box=Box(x0=w - 4, y0=0, x1=w, y1=4), relation="right")

    import types

    from creg import hookimpl

    plugin = types.ModuleType("files_plugin")
    plugin.register_benchmarks = hookimpl(lambda register: register("files", Files))
    plugins = discover()
    plugins.add_module(plugin)
    config = RunConfig(adapter="none", sources=["creg"], bench="files")
    result = Runner(config, tmp_path / "run", plugins=plugins, adapter=FakeVLMAdapter(), progress=False,
                    log=lambda m: None).run()
    assert result.processed >= 1
    records = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    assert {json.loads(r)["sample_id"] for r in records} == {"ok"}
    skipped = (tmp_path / "run" / "skipped.jsonl").read_text()
    assert "decompression bomb" in skipped and "extreme aspect ratio" in skipped
