"""The coco_pairs benchmark on generated COCO folders and on the real coco-tiny layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from coco_fixtures import CATEGORIES, FixtureImage, FixtureObject, edge_case_images, pair_scenes, write_coco_folder
from creg.plugins.benchmark import DataNotFound
from creg.core.sample import RELATIONS, relation_from_boxes
from creg_coco_pairs.benchmark import CocoPairsBenchmark
from creg_coco_pairs.pairs import PairRules, image_candidates
from creg_coco_pairs.selection import class_quotas

from shared_data import COCO_TINY  # CREG_TEST_COCO, default ../shared/data/coco-tiny
NAMES = {i: n for n, i in CATEGORIES.items()}


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory) -> Path:
    """40 horizontal and 40 vertical cat/dog scenes plus one image per edge case (val2017)."""
    root = tmp_path_factory.mktemp("coco")
    write_coco_folder(root, pair_scenes(40, 40) + list(edge_case_images().values()))
    return root


def ids(bench) -> list[str]:
    return [s.id for s in bench.samples()]


def candidate_pairs(image: FixtureImage, **rules) -> set[tuple[str, str, str]]:
    """(ref name, tgt name, relation) of an image's candidates under ``rules``."""
    anns = [{"id": i, "category_id": CATEGORIES[o.category], "bbox": list(o.xywh), "iscrowd": o.iscrowd}
            for i, o in enumerate(image.objects, start=1)]
    info = {"id": image.image_id, "file_name": image.file_name, "width": image.size[0], "height": image.size[1]}
    return {(NAMES[c.ref_category_id], NAMES[c.tgt_category_id], c.relation)
            for c in image_candidates(info, anns, PairRules(**rules))}


def candidate_boxes(image: FixtureImage, **rules) -> set[tuple[float, ...]]:
    """The boxes (x, y, w, h) that take part in an image's candidates under ``rules``."""
    anns = [{"id": i, "category_id": CATEGORIES[o.category], "bbox": list(o.xywh), "iscrowd": o.iscrowd}
            for i, o in enumerate(image.objects, start=1)]
    info = {"id": image.image_id, "file_name": image.file_name, "width": image.size[0], "height": image.size[1]}
    return {xywh for c in image_candidates(info, anns, PairRules(**rules)) for xywh in (c.ref_xywh, c.tgt_xywh)}


# -- selection rules --------------------------------------------------------------------------

def test_clean_pair_gives_both_orders():
    cat_left = FixtureImage(1, [FixtureObject("cat", (5, 40, 30, 30)), FixtureObject("dog", (80, 40, 30, 30))])
    assert candidate_pairs(cat_left) == {("cat", "dog", "right"), ("dog", "cat", "left")}


def test_crowd_box_is_never_an_instance():
    assert candidate_pairs(edge_case_images()["crowd"]) == set()
    assert candidate_pairs(edge_case_images()["crowd"], instances="all") == set()


def test_several_instances_rule():
    two_cups = edge_case_images()["two_cups"]
    assert candidate_pairs(two_cups) == set()  # default "unique": cup is ambiguous
    assert candidate_boxes(two_cups, instances="largest") == {(5, 50, 30, 30), (85, 50, 30, 30)}  # the 30x30 cup
    # "all": both cups, each with the dog in both orders, never the two cups with each other
    assert candidate_boxes(two_cups, instances="all") == {(5, 50, 30, 30), (40, 55, 12, 12), (85, 50, 30, 30)}
    assert candidate_pairs(two_cups, instances="all") == {("cup", "dog", "right"), ("dog", "cup", "left")}


def test_tiny_boxes_are_filtered_by_min_area():
    tiny = edge_case_images()["tiny"]
    assert candidate_pairs(tiny) == set()
    assert candidate_pairs(tiny, min_area=0.0) == {("bench", "bed", "right"), ("bed", "bench", "left")}


def test_min_ratio_drops_diagonal_pairs():
    diagonal = FixtureImage(1, [FixtureObject("cat", (0, 0, 30, 30)), FixtureObject("dog", (60, 40, 30, 30))])  # dx 60, dy 40
    assert candidate_pairs(diagonal) == set()
    assert candidate_pairs(diagonal, min_ratio=1.2) == {("cat", "dog", "right"), ("dog", "cat", "left")}


# -- balance, determinism, stability ------------------------------------------------------------

def test_classes_are_balanced_and_relations_match_the_boxes(coco_dir):
    samples = list(CocoPairsBenchmark(data_dir=coco_dir, n=40, seed=3).samples())
    assert Counter(s.relation for s in samples) == {r: 10 for r in RELATIONS}
    assert [s.relation for s in samples[:8]] == list(RELATIONS) * 2  # classes take turns
    for s in samples:
        assert relation_from_boxes(s.ref_box, s.tgt_box, 1.5) == s.relation
        assert s.ref_name != s.tgt_name
    assert len({s.meta["image_id"] for s in samples}) == 40  # max_per_image=1


def test_same_seed_same_samples_other_seed_other_samples(coco_dir):
    a = ids(CocoPairsBenchmark(data_dir=coco_dir, n=20, seed=7))
    assert a == ids(CocoPairsBenchmark(data_dir=coco_dir, n=20, seed=7))
    assert a != ids(CocoPairsBenchmark(data_dir=coco_dir, n=20, seed=8))


def test_smaller_n_is_a_prefix_of_larger_n(coco_dir):
    small = ids(CocoPairsBenchmark(data_dir=coco_dir, n=12, seed=1))
    large = ids(CocoPairsBenchmark(data_dir=coco_dir, n=60, seed=1))
    assert large[:12] == small


def test_n_not_a_multiple_of_four_gives_the_remainder_to_the_first_classes(coco_dir):
    assert class_quotas(6) == {"left": 2, "right": 2, "above": 1, "below": 1}
    samples = list(CocoPairsBenchmark(data_dir=coco_dir, n=6).samples())
    assert Counter(s.relation for s in samples) == {"left": 2, "right": 2, "above": 1, "below": 1}


def test_default_is_300_and_a_shortfall_is_recorded(coco_dir):
    bench = CocoPairsBenchmark(data_dir=coco_dir)
    samples = list(bench.samples())
    info = bench.describe()
    assert info["n"] == 300
    # 40 horizontal scenes: each unordered pair used once, split between left and right
    assert info["per_class"] == {"left": 20, "right": 20, "above": 20, "below": 20} == Counter(s.relation for s in samples)
    assert info["shortfall"] == {r: 55 for r in RELATIONS}
    assert len(info["warnings"]) == 4 and "only 20 of 75" in info["warnings"][0]


def test_meta_names_the_coco_records(coco_dir):
    s = next(iter(CocoPairsBenchmark(data_dir=coco_dir, n=4).samples()))
    doc = json.loads((coco_dir / "annotations" / "instances_val2017.json").read_text())
    anns = {a["id"]: a for a in doc["annotations"]}
    assert anns[s.meta["ref_ann_id"]]["image_id"] == s.meta["image_id"] == anns[s.meta["tgt_ann_id"]]["image_id"]
    assert anns[s.meta["ref_ann_id"]]["category_id"] == s.meta["ref_category_id"] == CATEGORIES[s.ref_name]
    assert s.meta["split"] == "val2017" and s.image_path == coco_dir / "val2017" / s.meta["file_name"]
    assert s.id == f"coco_pairs-val2017-{s.meta['image_id']}-{s.meta['ref_ann_id']}-{s.meta['tgt_ann_id']}"


def test_options_arrive_as_strings_from_the_command_line(coco_dir):
    bench = CocoPairsBenchmark(data_dir=coco_dir, n="8", min_ratio="1.5", min_area="0.01", max_per_image="1", instances="UNIQUE")
    assert len(list(bench.samples())) == 8
    with pytest.raises(ValueError, match=r"^benchmark 'coco_pairs': option 'instances': Input should be 'unique', 'largest' or 'all', got 'most'$"):
        CocoPairsBenchmark(data_dir=coco_dir, instances="most")
    with pytest.raises(ValueError, match=r"option 'split': Input should be 'val2017' or 'train2017', got 'test2017'"):
        CocoPairsBenchmark(data_dir=coco_dir, split="test2017")
    with pytest.raises(ValueError, match=r"option 'min_ratio': Input should be a valid number"):
        CocoPairsBenchmark(data_dir=coco_dir, min_ratio="abc")


# -- data problems ------------------------------------------------------------------------------

def test_corrupt_image_and_bad_boxes_are_counted_not_fatal(coco_dir):
    bench = CocoPairsBenchmark(data_dir=coco_dir, n=400, max_per_image=0)
    samples = list(bench.samples())
    info = bench.describe()
    # the corrupt image once; zero-width truck and out-of-image orange: both orders of each pair
    assert info["skipped"] == {"unreadable image": 1, "invalid annotation": 4}
    assert any("x0 must be < x1" in p for p in info["problems"])
    assert any("lies outside the image" in p for p in info["problems"])
    bad_images = {900 + k for k in (3, 4, 5)}
    assert not bad_images & {s.meta["image_id"] for s in samples}


def test_missing_annotation_file_names_file_source_and_place(tmp_path):
    (tmp_path / "val2017").mkdir()
    with pytest.raises(DataNotFound) as e:
        list(CocoPairsBenchmark(data_dir=tmp_path).samples())
    message = str(e.value)
    assert str(tmp_path / "annotations" / "instances_val2017.json") in message
    assert "annotations_trainval2017.zip" in message and "cocodataset.org" in message


def test_missing_image_folder_and_missing_data_dir(tmp_path, monkeypatch):
    write_coco_folder(tmp_path, [FixtureImage(1, [FixtureObject("cat", (5, 40, 30, 30))], write_file=False)])
    with pytest.raises(DataNotFound, match=r"val2017\.zip"):
        list(CocoPairsBenchmark(data_dir=tmp_path).samples())
    monkeypatch.delenv("CREG_DATA_DIR", raising=False)
    monkeypatch.delenv("CREG_COCO_DIR", raising=False)
    with pytest.raises(DataNotFound, match="--data-dir"):
        list(CocoPairsBenchmark().samples())
    monkeypatch.setenv("CREG_COCO_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFound, match="nowhere"):
        list(CocoPairsBenchmark().samples())


def test_registered_through_the_entry_point():
    from creg.plugins.manager import get_plugins

    assert get_plugins(refresh=True).load("benchmark", "coco_pairs") is CocoPairsBenchmark


# -- the real COCO 2017 layout ------------------------------------------------------------------

needs_coco_tiny = pytest.mark.skipif(not (COCO_TINY / "annotations").is_dir(),
                                     reason=f"real COCO sample not found at {COCO_TINY} (set CREG_TEST_COCO)")


@needs_coco_tiny
@pytest.mark.parametrize("split", ["val2017", "train2017"])
def test_real_coco_tiny(split):
    bench = CocoPairsBenchmark(data_dir=COCO_TINY, split=split, n=28, seed=0)
    samples = list(bench.samples())
    assert Counter(s.relation for s in samples) == {r: 7 for r in RELATIONS}
    assert bench.skipped == {}
    doc = json.loads((COCO_TINY / "annotations" / f"instances_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    per_image = Counter((a["image_id"], a["category_id"]) for a in doc["annotations"])
    for s in samples:
        assert s.image_path.is_file()
        assert s.ref_name == names[s.meta["ref_category_id"]] and s.tgt_name == names[s.meta["tgt_category_id"]]
        assert per_image[(s.meta["image_id"], s.meta["ref_category_id"])] == 1  # default: unique names only
        assert per_image[(s.meta["image_id"], s.meta["tgt_category_id"])] == 1
        assert relation_from_boxes(s.ref_box, s.tgt_box, 1.5) == s.relation
    assert ids(CocoPairsBenchmark(data_dir=COCO_TINY, split=split, n=28, seed=0)) == [s.id for s in samples]
