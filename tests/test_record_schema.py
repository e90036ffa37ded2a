"""The record is declared once (creg.core.records): the store's two line models, the public
SampleRecord generated from them, join and its inverse, and the frame columns taken from the fields."""

from __future__ import annotations

import json

import pytest

from creg.core.records import CARRIED, RECORD_KEY, SampleFacts, SampleRecord, SourceRow, join, record_facts
from creg.report.frames import record_row, sample_row

FACTS = SampleFacts(id="s", image="a.png", image_size=[640, 480], ref={"name": "cup", "box": [10, 20, 30, 40]},
                    tgt={"name": "dog", "box": [100, 20, 140, 60]}, relation="right", meta={"coco": {"id": 7}},
                    true_angle=0.0, d_ab=100.0, r_max=200.0, sigma=120.0, logits=[0.1, 2.0, -1.0, 0.3], pred="right",
                    correct=True, cos_true={"delta": 0.5})
ROW = SourceRow(sample_id="s", source="creg", compass=[0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25], peak_sector=0,
                peak_angle=3.0, sector_angle=0.0, dae=3.0, dae_sector=0.0, ea=True, flags=["tiny_box", "edge"],
                cos={"peak": {"delta": 0.7}}, dae_no_ref=4.0, ground_truth={"causal_mass": 0.9, "causal_rank": None},
                extra={"cancellation": {"-2": 0.1}})


def test_the_record_is_the_rows_key_then_the_carried_facts_then_the_rows_fields():
    rows = list(SourceRow.model_fields)
    carried = [n for n, mark in CARRIED.items() if mark.into is None]
    assert carried == ["relation", "true_angle", "logits", "pred", "correct"]
    assert list(SampleRecord.model_fields) == [*RECORD_KEY, *carried, *(n for n in rows if n not in RECORD_KEY)]
    # the record's fields carry the declarations' defaults and requiredness
    for name, f in SampleRecord.model_fields.items():
        src = (SourceRow.model_fields.get(name) or SampleFacts.model_fields[name])
        assert (f.annotation, f.is_required(), f.default, f.default_factory) == \
            (src.annotation, src.is_required(), src.default, src.default_factory), name


def test_join_copies_the_row_and_the_carried_facts_and_puts_cos_true_into_cos():
    rec = join(FACTS, ROW)
    dumped = rec.model_dump()
    assert {k: dumped[k] for k in ROW.model_dump() if k != "cos"} == {k: v for k, v in ROW.model_dump().items() if k != "cos"}
    assert dumped["cos"] == {"peak": {"delta": 0.7}, "true": {"delta": 0.5}}
    assert (rec.relation, rec.true_angle, rec.logits, rec.pred, rec.correct) == ("right", 0.0, [0.1, 2.0, -1.0, 0.3], "right", True)
    assert rec.flags is not ROW.flags and rec.extra is not ROW.extra  # the record does not share the row's lists
    assert ROW.cos == {"peak": {"delta": 0.7}}  # the row is left as it was


def test_record_facts_reads_back_what_join_put_in():
    assert record_facts(join(FACTS, ROW)) == {n: getattr(FACTS, n) for n in CARRIED}
    plain = FACTS.model_copy(update={"cos_true": None, "logits": None, "pred": None, "correct": None})
    rec = join(plain, ROW.model_copy(update={"cos": None}))
    assert rec.cos is None and record_facts(rec)["cos_true"] is None


def test_the_store_lines_keep_their_layout():
    """samples.jsonl / records.jsonl lines are model_dump() in declaration order (docs/user-guide.md)."""
    assert list(json.loads(json.dumps(FACTS.model_dump()))) == [
        "id", "image", "image_size", "ref", "tgt", "relation", "meta", "true_angle", "d_ab", "r_max", "sigma", "logits",
        "pred", "correct", "cos_true"]
    assert list(ROW.model_dump()) == [
        "sample_id", "source", "compass", "peak_sector", "peak_angle", "sector_angle", "dae", "dae_sector", "ea", "flags",
        "cos", "dae_no_ref", "ground_truth", "extra"]


def test_frame_columns_come_from_the_records_fields():
    row = record_row(join(FACTS, ROW).model_dump())
    assert list(row)[:12] == ["sample_id", "source", "relation", "true_angle", "logit_left", "logit_right", "logit_above",
                              "logit_below", "pred", "correct", "k", "peak"]
    assert row["p_E"] == 0.5 and row["p_SE"] == 0.25 and row["peak"] == "E" and row["k"] == 8
    assert row["dae_no_ref"] == 4.0 and row["ground_truth_causal_mass"] == 0.9 and row["ground_truth_causal_rank"] is None
    assert row["flags"] == "tiny_box;edge" and row["cos_true_delta"] == 0.5 and row["cos_peak_delta"] == 0.7
    assert row["extra_cancellation_-2"] == 0.1
    assert not any(isinstance(v, (list, dict)) for v in row.values())


def test_sample_columns_are_the_facts_records_do_not_carry():
    row = sample_row(FACTS.model_dump())
    assert row == {"sample_id": "s", "image": "a.png", "image_width": 640, "image_height": 480, "ref_name": "cup",
                   "ref_x0": 10.0, "ref_y0": 20.0, "ref_x1": 30.0, "ref_y1": 40.0, "tgt_name": "dog", "tgt_x0": 100.0,
                   "tgt_y0": 20.0, "tgt_x1": 140.0, "tgt_y1": 60.0, "d_ab": 100.0, "r_max": 200.0, "sigma": 120.0,
                   "meta_coco_id": 7}


def test_a_fact_and_a_row_field_of_one_name_is_refused():
    from creg.core import records

    class Clashing(SourceRow):
        pred: str | None = None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "SourceRow", Clashing)
        with pytest.raises(TypeError, match="declare.*'pred'"):
            records._record_fields()


def test_a_fact_carried_into_a_field_the_row_lacks_is_refused():
    from creg.core import records

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "CARRIED", {**records.CARRIED, "cos_true": records.InRecord(into="occlusion", key="true")})
        with pytest.raises(TypeError, match="'cos_true'.*names no SourceRow field"):
            records._record_fields()
