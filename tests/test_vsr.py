"""The vsr benchmark, its relation mapping and name matching, and ``creg audit vsr``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import creg_vsr
from coco_fixtures import FixtureImage, FixtureObject, write_coco_folder
from creg.plugins.benchmark import DataNotFound
from creg.coco.annotations import load_instances
from creg_vsr.benchmark import VsrBenchmark
from creg_vsr.matching import (AMBIGUOUS, IMAGE_NOT_ANNOTATED, MATCHED, NAME_UNMATCHED, NEGATIVE, NO_INSTANCE, NOT_DIRECTIONAL,
                               SAME_CATEGORY, CocoInstances, match_row)
from creg_vsr.names import match_category
from creg_vsr.relations import PAPER, STRICT, creg_relation
from creg_vsr.rows import PARTS, SPLITS, VsrRow, load_rows, parse_caption

from shared_data import COCO_TINY  # CREG_TEST_COCO, default ../shared/data/coco-tiny
needs_coco_tiny = pytest.mark.skipif(not (COCO_TINY / "annotations").is_dir(),
                                     reason=f"real COCO sample not found at {COCO_TINY} (set CREG_TEST_COCO)")


def row(part: str, line: int, split: str = "random") -> VsrRow:
    found = [r for r in load_rows(split, part) if r.line == line]
    assert len(found) == 1
    return found[0]


# -- the shipped split files ------------------------------------------------------------------

@pytest.mark.parametrize("split, part, rows, positive", [
    ("random", "train", 7680, 3876), ("random", "dev", 1097, 564), ("random", "test", 2195, 1181),
    ("zeroshot", "train", 3489, 1799), ("zeroshot", "dev", 340, 167), ("zeroshot", "test", 1222, 629),
])
def test_shipped_splits_are_complete(split, part, rows, positive):
    loaded = load_rows(split, part)
    assert (len(loaded), sum(r.label for r in loaded)) == (rows, positive)
    assert all(r.subject and r.object and r.coco_split in ("train2017", "val2017") for r in loaded)


def test_licence_and_attribution_ship_with_the_data():
    splits = resources.files("creg_vsr").joinpath("splits")
    assert "Apache License" in splits.joinpath("LICENSE").read_text()
    assert "Visual Spatial Reasoning" in splits.joinpath("ATTRIBUTION.md").read_text()


def test_caption_subject_is_the_target_and_object_the_reference():
    r = row("test", 12)  # "The bed is at the left side of the bench."
    assert (r.subject, r.relation, r.object) == ("bed", "at the left side of", "bench")
    assert parse_caption("The suitcase contains the cat.", "contains") == ("suitcase", "cat")
    with pytest.raises(ValueError, match="does not read"):
        parse_caption("A cat sits left of the dog.", "left of")


# -- relation mapping on real rows --------------------------------------------------------------

@pytest.mark.parametrize("line, caption, strict, paper", [
    (12, "The bed is at the left side of the bench.", "left", None),
    (38, "The orange is at the right side of the sandwich.", "right", None),
    (24, "The cat is on top of the umbrella.", "above", "above"),
    (106, "The person is above the giraffe.", "above", "above"),
    (37, "The truck is under the couch.", "below", "below"),
    (42, "The teddy bear is beneath the dog.", "below", None),
    (1, "The person is inside the refrigerator.", None, None),
])
def test_relation_mapping_on_real_rows(line, caption, strict, paper):
    r = row("test", line)
    assert r.caption == caption
    assert creg_relation(r.relation, "strict") == strict
    assert creg_relation(r.relation, "paper") == paper


def test_on_is_not_a_direction_but_the_paper_counted_it():
    on_rows = [r for r in load_rows("random", "train") if r.relation == "on" and r.label == 1]
    assert on_rows and creg_relation("on") is None and creg_relation("on", "paper") == "above"


def test_every_mapped_phrase_occurs_in_vsr():
    phrases = {r.relation for s in SPLITS for p in PARTS for r in load_rows(s, p)}
    assert set(STRICT) <= phrases and set(PAPER) <= phrases
    assert not {"left", "right"} & phrases  # why a table keyed on bare "left"/"right" finds nothing


def directional(part: str, mapping: str) -> int:
    return sum(1 for r in load_rows("random", part) if r.label == 1 and creg_relation(r.relation, mapping))


def test_paper_mapping_gives_the_paper_matched_counts():
    assert [directional(p, "paper") for p in ("test", "dev", "train")] == [240, 121, 828]
    assert [directional(p, "strict") for p in ("test", "dev", "train")] == [369, 187, 1183]


# -- name matching ------------------------------------------------------------------------------

def test_name_matching_rule():
    cats = ["person", "dog", "hot dog", "teddy bear", "bear", "cell phone", "tv"]
    assert match_category("Hot  Dog", cats) == "hot dog"  # exact after normalising
    assert match_category("teddy", cats) == "teddy bear"  # contained, whole words
    assert match_category("brown bear cub", cats) == "bear"
    assert match_category("phone", cats) == "cell phone"
    assert match_category("tvs", cats) is None  # not a whole word
    assert match_category("dogs", cats) is None
    assert match_category("cat", ["cat", "catcher"]) == "cat"
    assert match_category("hot dog stand", cats) == "hot dog"  # the longest category mentioned
    assert match_category("small", ["small cup", "small bowl"]) is None  # ambiguous
    assert match_category("pug", cats) is None


@needs_coco_tiny
def test_every_vsr_name_is_exactly_a_coco_category():
    coco = load_instances(COCO_TINY, "val2017")
    categories = set(coco.categories.values())
    names = {n for s in SPLITS for p in PARTS for r in load_rows(s, p) for n in (r.subject, r.object)}
    assert len(names) == 77 and names <= categories


# -- boxes from a generated COCO folder ----------------------------------------------------------

def vsr_fixture_images() -> list[FixtureImage]:
    """Images named after real random/test rows (all train2017), each exercising one rule."""
    o = FixtureObject
    return [
        # line 12 "The bed is at the left side of the bench."
        FixtureImage(262118, [o("bed", (5, 40, 35, 35)), o("bench", (80, 45, 30, 30))], split="train2017"),
        # line 38 "The orange is at the right side of the sandwich." - two sandwiches, the big one at the left
        FixtureImage(260248, [o("sandwich", (5, 40, 40, 40)), o("sandwich", (60, 5, 15, 15)), o("orange", (85, 45, 30, 30))],
                     split="train2017"),
        # line 106 "The person is above the giraffe." - drawn below it: boxes disagree with the label
        FixtureImage(578671, [o("person", (45, 80, 20, 30)), o("giraffe", (40, 5, 30, 50))], split="train2017"),
        # line 29 "The truck is below the elephant." - zero-width truck box
        FixtureImage(461902, [o("truck", (50, 80, 0, 20)), o("elephant", (40, 5, 40, 40))], split="train2017"),
        # line 76 "The person is at the left side of the truck." - the file is corrupt
        FixtureImage(570956, [o("person", (5, 40, 30, 50)), o("truck", (70, 40, 40, 30))], split="train2017", corrupt=True),
        # line 37 "The truck is under the couch." - no couch annotated
        FixtureImage(358630, [o("truck", (40, 70, 40, 30))], split="train2017"),
    ]


@pytest.fixture(scope="module")
def vsr_dir(tmp_path_factory) -> Path:
    return write_coco_folder(tmp_path_factory.mktemp("vsr_coco"), vsr_fixture_images())


@pytest.fixture(scope="module")
def vsr_coco(vsr_dir) -> CocoInstances:
    return CocoInstances({"train2017": load_instances(vsr_dir, "train2017")})


def test_match_outcomes(vsr_coco):
    assert match_row(row("test", 3), vsr_coco).outcome == NEGATIVE
    assert match_row(row("test", 1), vsr_coco).outcome == NOT_DIRECTIONAL
    assert match_row(row("test", 44), vsr_coco).outcome == IMAGE_NOT_ANNOTATED  # truck/elephant, image absent
    assert match_row(row("test", 57), vsr_coco).outcome == NAME_UNMATCHED  # the fixture has no laptop category
    assert match_row(row("test", 37), vsr_coco).outcome == NO_INSTANCE
    assert match_row(row("test", 37), None).outcome == IMAGE_NOT_ANNOTATED
    m = match_row(row("test", 12), vsr_coco)
    assert m.outcome == MATCHED and m.relation == "left"
    assert m.tgt_ann["bbox"] == [5, 40, 35, 35] and m.ref_ann["bbox"] == [80, 45, 30, 30]  # subject = target


def test_several_instances_largest_or_unique(vsr_coco):
    largest = match_row(row("test", 38), vsr_coco)
    assert largest.outcome == MATCHED and largest.ref_ann["bbox"] == [5, 40, 40, 40]
    assert largest.instance_counts == {"sandwich": 2, "orange": 1}
    assert match_row(row("test", 38), vsr_coco, instances="unique").outcome == AMBIGUOUS


def test_same_category_never_matches(vsr_coco):
    r = row("test", 12)
    twin = VsrRow(**{**r.__dict__, "subject": "bench", "caption": "The bench is at the left side of the bench."})
    assert match_row(twin, vsr_coco).outcome == SAME_CATEGORY


def test_benchmark_flags_geometry_and_counts_bad_data(vsr_dir):
    bench = VsrBenchmark(data_dir=vsr_dir)
    samples = {s.id: s for s in bench.samples()}
    # line 289 "The bench is right of the bed." is about the same image as line 12
    assert sorted(samples) == ["vsr-random-test-00012", "vsr-random-test-00038", "vsr-random-test-00106",
                               "vsr-random-test-00289"]
    person = samples["vsr-random-test-00106"]
    assert (person.tgt_name, person.ref_name, person.relation) == ("person", "giraffe", "above")
    assert person.meta["geometry_relation"] == "below" and person.meta["geometry_agrees"] is False
    assert samples["vsr-random-test-00012"].meta["geometry_agrees"] is True
    info = bench.describe()
    assert info["skipped"] == {"invalid annotation": 1, "unreadable image": 1}
    assert info["outcomes"][MATCHED] == 6 and info["outcomes"][NO_INSTANCE] == 1
    assert info["annotation_files_absent"] == ["val2017"] and "instances_val2017.json" in info["warnings"][0]
    assert (info["geometry_agrees"], info["geometry_disagrees"]) == (3, 1)
    meta = samples["vsr-random-test-00038"].meta
    assert meta["caption"] == "The orange is at the right side of the sandwich." and meta["split"] == "train2017"
    assert {"image_id", "ref_ann_id", "tgt_ann_id", "ref_category_id", "tgt_category_id", "line"} <= set(meta)


def test_drop_disagreeing_option(vsr_dir):
    bench = VsrBenchmark(data_dir=vsr_dir, drop_disagreeing="true")
    assert [s.id for s in bench.samples()] == ["vsr-random-test-00012", "vsr-random-test-00038", "vsr-random-test-00289"]
    assert bench.skipped["geometry disagrees with label"] == 1


def test_seeded_subset_is_stable_under_n(vsr_dir):
    two = [s.id for s in VsrBenchmark(data_dir=vsr_dir, n=2, seed=5).samples()]
    four = [s.id for s in VsrBenchmark(data_dir=vsr_dir, n=4, seed=5).samples()]
    assert len(two) == 2 and len(four) == 4 and four[:2] == two
    every = [s.id for s in VsrBenchmark(data_dir=vsr_dir).samples()]  # n unset: all, in file order
    assert every == sorted(every) and sorted(four) == every
    assert two == [s.id for s in VsrBenchmark(data_dir=vsr_dir, n=2, seed=5).samples()]


def test_missing_annotations_message(tmp_path):
    with pytest.raises(DataNotFound) as e:
        list(VsrBenchmark(data_dir=tmp_path).samples())
    assert "instances_train2017.json" in str(e.value) and "instances_val2017.json" in str(e.value)
    assert "annotations_trainval2017.zip" in str(e.value)


def test_registered_through_the_entry_point():
    from creg.plugins.manager import get_plugins

    assert get_plugins(refresh=True).load("benchmark", "vsr") is VsrBenchmark


@needs_coco_tiny
def test_real_coco_tiny_test_part():
    samples = list(VsrBenchmark(data_dir=COCO_TINY).samples())
    assert [s.id for s in samples] == ["vsr-random-test-01118"]  # "The oven is under the sandwich."
    s = samples[0]
    assert (s.tgt_name, s.ref_name, s.relation, s.meta["split"]) == ("oven", "sandwich", "below", "val2017")
    assert s.image_path.is_file() and s.meta["geometry_agrees"] is False  # the oven's box centre lies to the right


# -- the audit ----------------------------------------------------------------------------------

def audit_cli() -> click.Group:
    @click.group()
    def cli():
        pass

    creg_vsr.register_commands(cli)
    return cli


def table_rows(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in output.splitlines()
            if line.split() and line.split()[0] in ("Test", "Dev", "Train", "Total")}


def test_audit_positive_counts_without_annotations(monkeypatch):
    monkeypatch.delenv("CREG_DATA_DIR", raising=False)
    monkeypatch.delenv("CREG_COCO_DIR", raising=False)
    result = CliRunner().invoke(audit_cli(), ["audit", "vsr"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [rows[p][0] for p in ("Test", "Dev", "Train", "Total")] == ["1181", "564", "3876", "5621"]
    assert "Matched needs the COCO 2017 instance annotations" in result.output


@needs_coco_tiny
def test_audit_on_coco_tiny_is_honest_about_missing_images():
    result = CliRunner().invoke(audit_cli(), ["audit", "vsr", "--data-dir", str(COCO_TINY)])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["Test"][:4] == ["1181", "369", "368", "1"]
    assert rows["Total"][:4] == ["5621", "1739", "1738", "1"]
    assert "image is not in the provided annotations" in result.output
    paper = table_rows(CliRunner().invoke(audit_cli(), ["audit", "vsr", "--data-dir", str(COCO_TINY), "--mapping", "paper"]).output)
    assert [paper[p][1] for p in ("Test", "Dev", "Train")] == ["240", "121", "828"]


def test_audit_joins_an_existing_audit_group_or_steps_aside():
    @click.group()
    def cli():
        pass

    other = click.Group("audit")
    cli.add_command(other)
    creg_vsr.register_commands(cli)
    assert cli.commands["audit"] is other and "vsr" in other.commands

    @click.group()
    def cli2():
        pass

    cli2.add_command(click.Command("audit", callback=lambda: None))
    creg_vsr.register_commands(cli2)
    assert "audit-vsr" in cli2.commands
