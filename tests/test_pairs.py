"""Your own data (issue 20, item 2): the ``pairs`` benchmark reads CSV, JSONL and Parquet rows,
in three box layouts, keeps images inside the image root, refuses URLs, flags relations that
contradict the boxes; ``creg explain --from`` makes a run directory with a report; a box or a
relation in the wrong layout says that its numbers fit x, y, w, h."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

import creg
from creg.api import ApiError
from creg.plugins.benchmark import DataInvalid
from creg.cli import cli
from creg.plugins.manager import get_plugins
from creg.core.relation_check import contradiction
from creg.core.sample import Box
from creg.testing import BenchmarkContract

torch.set_num_threads(1)

SIZE = (160, 120)
#: (file, ref name, ref box, tgt name, tgt box, relation) in x, y, w, h: B left of, right of, above, below A
SCENES = [
    ("a.png", "cup", (90, 40, 30, 30), "bottle", (10, 45, 25, 25), "left"),
    ("b.png", "cup", (10, 40, 30, 30), "bottle", (110, 45, 25, 25), "right"),
    ("c.png", "cup", (60, 80, 30, 30), "bottle", (65, 5, 25, 25), ""),  # relation left out: above, from the boxes
    ("sub/d.png", "cup", (60, 5, 30, 30), "bottle", (65, 85, 25, 25), "below"),
]


def _draw(root: Path) -> None:
    for name, _, ref, _, tgt, _ in SCENES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.new("RGB", SIZE, (230, 230, 230))
        d = ImageDraw.Draw(im)
        for (x, y, w, h), colour in ((ref, (200, 40, 40)), (tgt, (40, 40, 200))):
            d.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
        im.save(path)


def _box(xywh, fmt):
    x, y, w, h = xywh
    return {"xywh": (x, y, w, h), "xyxy": (x, y, x + w, y + h), "cxcywh": (x + w / 2, y + h / 2, w, h)}[fmt]


def _rows(fmt="xywh"):
    return [{"image": name, "ref": rn, "ref_box": list(_box(rb, fmt)), "tgt": tn, "tgt_box": list(_box(tb, fmt)),
             "relation": rel} for name, rn, rb, tn, tb, rel in SCENES]


def write_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (" ".join(f"{v:g}" for v in x) if isinstance(x, list) else x) for k, x in r.items()})
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    _draw(tmp_path)
    return tmp_path


def bench(**options):
    return get_plugins().load("benchmark", "pairs")(**options)


def test_registered_through_the_entry_point():
    assert "pairs" in get_plugins().names("benchmark")


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_three_box_layouts_give_the_same_samples(images, fmt):
    rows = write_csv(images / f"rows-{fmt}.csv", _rows(fmt))
    samples = list(bench(file=str(rows), box_format=fmt).samples())
    assert [s.relation for s in samples] == ["left", "right", "above", "below"]
    assert samples[0].ref_box == Box(x0=90, y0=40, x1=120, y1=70)
    assert samples[0].tgt_box == Box(x0=10, y0=45, x1=35, y1=70)
    assert samples[2].meta["relation_given"] is False and samples[0].meta["relation_given"] is True
    assert samples[3].image_path == images / "sub" / "d.png" and samples[0].image_size == SIZE
    assert [s.id for s in samples] == ["row1", "row2", "row3", "row4"]


def test_csv_jsonl_and_parquet_read_alike(images):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows("xywh")
    write_csv(images / "rows.csv", rows)
    (images / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), images / "rows.parquet")
    got = {suffix: [(s.id, s.relation, s.ref_box, s.tgt_box) for s in bench(file=str(images / f"rows.{suffix}"),
                                                                          box_format="xywh").samples()]
           for suffix in ("csv", "jsonl", "parquet")}
    assert got["csv"] == got["jsonl"] == got["parquet"] and len(got["csv"]) == 4


def test_a_relation_that_contradicts_the_boxes_is_flagged(images):
    rows = _rows("xywh")
    rows[1]["relation"] = "left"  # the boxes put B right of A
    path = write_csv(images / "rows.csv", rows)
    b = bench(file=str(path), box_format="xywh")
    assert [s.id for s in b.samples()] == ["row1", "row3", "row4"]
    info = b.describe()
    assert info["skipped"] == {"relation contradicts the boxes": 1}
    assert "row 2: relation 'left' contradicts the boxes: they put B right of A" in info["problems"][0]
    assert any("first unused row" in w for w in info["warnings"])
    kept = bench(file=str(path), box_format="xywh", contradicting="keep")
    flagged = [s for s in kept.samples() if "contradicts" in s.meta]
    assert [s.id for s in flagged] == ["row2"] and any("kept" in w for w in kept.describe()["warnings"])


def test_contradiction_rule():
    a = Box(x0=40, y0=40, x1=60, y1=60)
    assert contradiction(a, Box(x0=80, y0=20, x1=100, y1=40), "right") is None  # above-right called right: weak, fine
    assert "put B above A" in contradiction(a, Box(x0=40, y0=0, x1=60, y1=20), "below")
    assert contradiction(a, Box(x0=40, y0=70, x1=60, y1=90), "right") is not None  # straight below: 90 deg off
    assert contradiction(a, a, "left") is None  # no direction


def test_coco_boxes_read_as_corners_say_they_fit_x_y_w_h(images):
    path = write_csv(images / "rows.csv", _rows("xywh"))
    b = bench(file=str(path))  # the default layout is x0, y0, x1, y1
    samples = list(b.samples())
    info = b.describe()
    assert len(samples) < 4 and sum(info["skipped"].values()) == 4 - len(samples)
    first = info["problems"][0]
    assert "row 1" in first and "these numbers fit x, y, w, h" in first and "box_format=xywh" in first


def test_images_stay_under_the_image_root_and_urls_are_refused(images, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    Image.new("RGB", SIZE).save(outside / "x.png")
    rows = _rows("xywh")
    rows[0]["image"] = "../" + outside.name + "/x.png"
    rows[1]["image"] = str(outside / "x.png")
    rows[2]["image"] = "nothing-here.png"
    rows[3]["image"] = str(images / "sub" / "d.png")  # absolute, but inside the root: fine
    b = bench(file=str(write_csv(images / "rows.csv", rows)), box_format="xywh")
    assert [s.id for s in b.samples()] == ["row4"]
    assert b.describe()["skipped"] == {"image path outside the image root": 2, "missing image file": 1}
    rows[0]["image"] = "https://example.org/a.png"
    with pytest.raises(DataInvalid, match="row 1: image 'https://example.org/a.png' is a URL; creg reads local files only"):
        list(bench(file=str(write_csv(images / "rows.csv", rows)), box_format="xywh").samples())


def test_bad_rows_are_counted_with_their_row_numbers(images):
    rows = _rows("xywh")
    rows[0]["ref_box"] = [1, 2, 3]
    rows[1]["tgt"] = ""
    rows[2]["relation"] = "behind"
    b = bench(file=str(write_csv(images / "rows.csv", rows)), box_format="xywh")
    assert [s.id for s in b.samples()] == ["row4"]
    problems = " | ".join(b.describe()["problems"])
    assert "row 1: ref_box: expected four numbers" in problems and "row 2: missing tgt" in problems
    assert "row 3: relation 'behind'" in problems
    with pytest.raises(DataInvalid, match="missing column"):
        list(bench(file=str(write_csv(images / "bad.csv", [{"image": "a.png", "ref": "cup"}]))).samples())


@pytest.mark.slow
def test_explain_from_rows_gives_a_run_directory_with_a_report(images):
    path = write_csv(images / "rows.csv", _rows("xywh"))
    out = images / "run"
    res = CliRunner().invoke(cli, ["explain", "--from", str(path), "--box-format", "xywh", "--adapter", "none",
                                   "--source", "oracle,random_relevance", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "### pairs · none · n=4" in res.output and "vs random_relevance" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 4 and summary["sources"]["oracle"]["vs_random"]["n"] == 4
    assert (out / "report.html").is_file() and "vs random_relevance ΔDAE" in (out / "report.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["bench"] == "pairs" and config["run"]["bench_options"]["box_format"] == "xywh"
    clash = CliRunner().invoke(cli, ["explain", "--from", str(path), "--image", str(images / "a.png")])
    assert clash.exit_code == 2 and "drop --image" in clash.output
    as_json = CliRunner().invoke(cli, ["explain", "--from", str(path), "--json"])
    assert as_json.exit_code == 2 and "--json and --maps describe one image" in as_json.output


def test_explain_relation_contradicting_the_boxes_is_an_error_with_a_hint(images):
    base = ["explain", "--adapter", "none", "--source", "oracle", "--image", str(images / "b.png"), "--ref", "cup",
            "--tgt", "bottle"]
    res = CliRunner().invoke(cli, base + ["--ref-box", "10,40,40,70", "--tgt-box", "110,45,135,70", "--relation", "left"])
    assert res.exit_code == 2
    assert "relation 'left' contradicts the boxes: they put B right of A" in res.output and "--relation" in res.output
    # COCO's x, y, w, h given as corners: the second box is refused and the message says it fits x, y, w, h
    res = CliRunner().invoke(cli, base + ["--ref-box", "10,40,30,30", "--tgt-box", "110,45,25,25"])
    assert res.exit_code == 2 and "these numbers fit x, y, w, h" in res.output and "--box-format xywh" in res.output
    ok = CliRunner().invoke(cli, base + ["--ref-box", "10,40,30,30", "--tgt-box", "110,45,25,25", "--box-format", "xywh",
                                         "--relation", "right"])
    assert ok.exit_code == 0, ok.output


def test_the_api_takes_a_box_format_and_hints_at_x_y_w_h(images):
    m = creg.load("none")
    ex = m.explain(images / "a.png", ref=("cup", (90, 40, 30, 30)), tgt=("bottle", (10, 45, 25, 25)),
                   sources=["oracle"], box_format="xywh")
    assert ex.relation == "left" and ex.sample.ref_box == Box(x0=90, y0=40, x1=120, y1=70)
    # x, y, w, h read as corners where w > x and h > y: a valid box, but the stated relation contradicts it
    with pytest.raises(ApiError, match="read as x, y, w, h .* they agree with it"):
        m.explain(images / "a.png", ref=("cup", (5, 5, 100, 20)), tgt=("bottle", (40, 10, 60, 15)), sources=["oracle"],
                  relation="right")
    ex = m.explain(images / "a.png", ref=("cup", (5, 5, 100, 20)), tgt=("bottle", (40, 10, 60, 15)), sources=["oracle"],
                   relation="right", box_format="xywh")
    assert ex["oracle"].dae == 0.0


def test_coco_pairs_reads_x_y_w_h_even_where_they_would_pass_as_corners(tmp_path):
    """COCO's [x, y, w, h] with w > x and h > y is also a valid x0, y0, x1, y1 box: coco_pairs must still add."""
    from coco_fixtures import FixtureImage, FixtureObject, write_coco_folder

    data = write_coco_folder(tmp_path / "coco", [
        FixtureImage(1, [FixtureObject("cat", (5, 10, 30, 40)), FixtureObject("dog", (80, 15, 30, 40))])])
    samples = list(get_plugins().load("benchmark", "coco_pairs")(data_dir=data, n=2).samples())
    boxes = {s.ref_name: s.ref_box for s in samples} | {s.tgt_name: s.tgt_box for s in samples}
    assert boxes["cat"] == Box(x0=5, y0=10, x1=35, y1=50) and boxes["dog"] == Box(x0=80, y0=15, x1=110, y1=55)


class TestBenchmarkContract_pairs(BenchmarkContract):
    n = 4
    seed_changes_samples = False  # the file's order: the seed plays no part
    expected_skipped = {"relation contradicts the boxes": 1, "missing image file": 1}

    @pytest.fixture(scope="class")
    @classmethod
    def make_benchmark(cls, tmp_path_factory):
        root = tmp_path_factory.mktemp("pairs_contract")
        _draw(root)
        rows = _rows("cxcywh")
        rows.append({**rows[0], "relation": "right"})  # contradicts its boxes
        rows.append({**rows[1], "image": "gone.png"})
        path = write_csv(root / "rows.csv", rows)
        bench = get_plugins().load("benchmark", "pairs")
        return lambda **kw: bench(file=str(path), box_format="cxcywh", **kw)
