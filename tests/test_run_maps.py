"""Relevance maps stored in the run (``creg run --save-maps``, the default): every finished sample has
its maps, they are the maps that were scored, a resume keeps the guarantee, and the report draws
heatmaps from them without loading the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from creg.core.compass import project_to_compass
from creg.execution.runner import Runner, RunConfig
from creg.store import RunStore
from creg.store.maps import MAPS, StoredMap, decode_maps, encode_maps, map_file_name

torch.set_num_threads(1)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def fake():
    from creg.testing.fake_vlm import FakeVLMAdapter

    return FakeVLMAdapter(patch_px=14, seed=5)


def _run(out, fake, **kw):
    cfg = RunConfig(sources=["oracle", "gradnorm", "random_relevance"], n=4, bench_options={"width": 112, "height": 112}, **kw)
    return Runner(cfg, out, adapter=fake, progress=False, log=_quiet).run()


def test_archive_round_trip_keeps_arrays_names_and_boxes(tmp_path):
    maps = {"a/b": StoredMap(np.arange(6, dtype=np.float32).reshape(2, 3), None, 12.5),
            "c": StoredMap(np.ones((1, 1)), np.array([[[3.0, 4.0]]]), 7.0, (1.0, 2.0, 3.0, 4.0))}
    path = tmp_path / "x.npz"
    path.write_bytes(encode_maps(maps))
    back = decode_maps(path)
    assert list(back) == ["a/b", "c"]
    assert np.array_equal(back["a/b"].values, maps["a/b"].values) and back["a/b"].cell_xy is None
    assert back["a/b"].ref_box is None and back["c"].ref_box == (1.0, 2.0, 3.0, 4.0)
    assert back["c"].cell_xy.tolist() == [[[3.0, 4.0]]] and back["c"].r_max == 7.0


def test_a_grid_shared_by_sources_is_stored_once(tmp_path):
    cell = np.random.default_rng(0).random((3, 4, 2))
    maps = {s: StoredMap(np.ones((3, 4)), cell, 1.0) for s in ("a", "b", "c")}
    maps["d"] = StoredMap(np.ones((3, 4)), cell + 1, 1.0)
    path = tmp_path / "x.npz"
    path.write_bytes(encode_maps(maps))
    with np.load(path) as z:
        assert sorted(f for f in z.files if f.startswith("cell_xy")) == ["cell_xy_0", "cell_xy_3"]
    back = decode_maps(path)
    assert all(np.allclose(back[s].cell_xy, cell) for s in "abc") and np.allclose(back["d"].cell_xy, cell + 1)


def test_file_names_stay_inside_and_apart():
    a, b = map_file_name("../x/y"), map_file_name("___x_y")
    assert "/" not in a and not a.startswith(".") and a != b


def test_every_sample_has_the_maps_it_was_scored_with(tmp_path, fake):
    run = tmp_path / "run"
    _run(run, fake)
    store = RunStore.read(run)
    samples = store.samples()
    assert len(list((run / MAPS).iterdir())) == len(samples) == 4
    for rec in store.records():
        m = store.maps(rec.sample_id)[rec.source]
        s = samples[rec.sample_id]
        ref, tgt = s.ref.box, s.tgt.box
        from creg.core.sample import Box

        compass = project_to_compass(torch.as_tensor(m.values, dtype=torch.float64), Box(**dict(zip(("x0", "y0", "x1", "y1"), ref))),
                                     Box(**dict(zip(("x0", "y0", "x1", "y1"), tgt))), tuple(s.image_size), k=8, sigma_r=0.6,
                                     rho_r=2.0, cell_xy=None if m.cell_xy is None else torch.as_tensor(m.cell_xy, dtype=torch.float64))
        if rec.source != "random_relevance" or compass.probs.max() > compass.probs.min():
            assert compass.peak_sector == rec.peak_sector, rec
        assert m.r_max == pytest.approx(s.r_max)


def test_no_save_maps_writes_none_and_resume_drops_unfinished_archives(tmp_path, fake):
    run = tmp_path / "run"
    _run(run, fake, save_maps=False)
    assert not (run / MAPS).exists()
    run2 = tmp_path / "run2"
    _run(run2, fake)
    stray = run2 / MAPS / map_file_name("never-finished")
    stray.write_bytes(b"junk")
    _run(run2, fake)  # a resume: nothing left to do, the stray archive goes
    assert not stray.exists() and len(list((run2 / MAPS).iterdir())) == 4


def test_report_reads_stored_maps_without_the_model(tmp_path, fake, monkeypatch):
    from creg.report.report import build_report

    run = tmp_path / "run"
    _run(run, fake)

    def no_model(*a, **k):
        raise AssertionError("the report reloaded the model although the run stored its maps")

    rep = build_report(run, log=_quiet, dpi=50, html=False, recompute=no_model)
    assert not any("heatmaps" in n for n in rep["figure_notes"]), rep["figure_notes"]
    assert "examples_gradnorm" in rep["figures"]


def test_a_merged_part_brings_its_maps(tmp_path, fake):
    """Data-parallel runs: a rank's part carries its archives into the run directory when merged."""
    import json
    import shutil

    from creg.store import RunWriter, part_path

    part = tmp_path / "part"
    _run(part, fake)
    doc = json.loads((part / "config.json").read_text())
    main = tmp_path / "main"
    with RunWriter(main, doc, sources=doc["run"]["sources"], log=_quiet) as w:
        w.start()
    dest = part_path(main, 0)
    dest.parent.mkdir(parents=True)
    shutil.move(str(part), str(dest))
    with RunWriter(main, doc, sources=doc["run"]["sources"], log=_quiet) as w:
        w.start()  # merges the interrupted run's part
    store = RunStore.read(main)
    assert len(store.samples()) == 4 and not (main / "parts").exists()
    assert all(set(store.maps(sid)) == {"oracle", "gradnorm", "random_relevance"} for sid in store.samples())
