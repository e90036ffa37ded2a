"""Issue 21, item 6: the smaller items (an all-NaN source, plugin import failures named, the public
record model round-trips NaN, a deterministic merge after a resume)."""

from __future__ import annotations

import math

import pytest
import torch

from creg.core.compass import Flag
from creg.core.records import SampleRecord
from creg.plugins.relevance import RelevanceMap
from creg.core.sample import Box, make_sample
from creg.explain.pipeline import ScoringSettings, score_map

torch.set_num_threads(1)


def test_all_nan_source_is_no_signal_not_a_tie_break_dae():
    from PIL import Image

    s = make_sample(id="s", image=Image.new("RGB", (30, 30)), image_size=(30, 30), ref_name="a",
                    ref_box=Box(x0=0, y0=0, x1=10, y1=10), tgt_name="b", tgt_box=Box(x0=20, y0=0, x1=30, y1=10),
                    relation="right")
    row, compass = score_map(s, RelevanceMap(values=torch.full((3, 3), float("nan"))), ScoringSettings(), source="x")
    assert Flag.NO_SIGNAL.value in row.flags
    assert row.dae is None and row.ea is None and row.dae_sector is None
    # a map with some finite values keeps its DAE
    vals = torch.full((3, 3), float("nan"))
    vals[0, 2] = 1.0
    row, _ = score_map(s, RelevanceMap(values=vals), ScoringSettings(), source="x")
    assert Flag.NO_SIGNAL.value not in row.flags and row.dae is not None


def test_sample_record_round_trips_nan():
    r = SampleRecord(sample_id="a", source="s", relation="left", logits=[math.nan, 1, 2, 3], true_angle=1.0,
                     compass=[math.inf, 0.0], peak_sector=0, peak_angle=math.nan, sector_angle=0.0, dae=None,
                     dae_sector=None, ea=None)
    back = SampleRecord.model_validate_json(r.model_dump_json())
    assert math.isnan(back.logits[0]) and back.compass[0] == math.inf and math.isnan(back.peak_angle)


def test_unknown_name_names_the_plugin_that_failed_to_import(monkeypatch, tmp_path):
    import creg.plugins.manager as plugins_mod
    from fake_entry_points import entry_point

    (tmp_path / "broken_src_plugin.py").write_text("import not_a_module_anywhere_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = plugins_mod.entry_points
    monkeypatch.setattr(plugins_mod, "entry_points",
                        lambda group: [entry_point("brokensrc", "broken_src_plugin", "broken-dist")] + list(real(group=group)))
    monkeypatch.delenv("CREG_STRICT_PLUGINS", raising=False)
    p = plugins_mod.discover()
    with pytest.raises(plugins_mod.UnknownName) as e:
        p.get("source", "mysource")
    msg = str(e.value)
    assert msg.startswith("unknown source 'mysource'")
    assert "plugin brokensrc (broken-dist 1.0) failed to import: ModuleNotFoundError" in msg


def test_resume_after_a_killed_rank_writes_the_single_process_order(tmp_path):
    """Parts of an interrupted data-parallel run (rank 1 finished a later sample than rank 0) are
    merged by a single-process resume: records.jsonl ends in the order of an uninterrupted run."""
    import json

    from creg.execution.runner import Runner, RunConfig
    from creg.store import RunStore, RunWriter, part_path

    cfg = dict(adapter="none", sources=["oracle", "random"], n=6)
    ref = tmp_path / "reference"
    Runner(RunConfig(**cfg), ref, progress=False, log=lambda m: None).run()
    store = RunStore.read(ref)
    facts, rows = store.samples(), store.rows()
    ids = list(facts)
    out = tmp_path / "run"
    runner = Runner(RunConfig(**cfg), out, progress=False, log=lambda m: None)
    names = [s.name for s in runner.sources]
    with RunWriter(out, runner.describe(), sources=names) as main:
        main.start()
    for rank, done in ((0, [ids[4]]), (1, [ids[1], ids[3]])):
        with RunWriter(part_path(out, rank), runner.describe(), sources=names) as part:
            part.start()
            part.write_samples([(facts[sid], [r for r in rows if r.sample_id == sid][::-1]) for sid in done])
    Runner(RunConfig(**cfg), out, progress=False, log=lambda m: None).run()
    for name in ("samples.jsonl", "records.jsonl"):
        assert (out / name).read_text() == (ref / name).read_text()
    assert json.loads((out / "summary.json").read_text())["sources"] == json.loads((ref / "summary.json").read_text())["sources"]
