"""The report's example figures: which samples each source shows, their images, and their relevance
maps.

Every source gets its best, median and worst sample by DAE; a source without any defined DAE is
left out with the reason, and the report says so. Heatmaps need the relevance maps: a run made with
``--save-maps`` (the default) stores them (:mod:`creg.store.maps`) and the report reads them from
there. Only for a run without stored maps is the run's model loaded again and the chosen samples
explained once more with the run's settings (one forward pass per sample for all sources). Where
that cannot be done -- the model cannot be loaded here, a
source needs a model the configuration does not name, an image is gone -- the figures show the
scene without the heatmap and the report says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from creg.config.resolve import build_benchmark
from creg.config.run_config import RunConfig
from creg.core.logs import info as log_info
from creg.core.records import SampleRecord
from creg.core.sample import Box, InvalidSample, make_sample
from creg.plugins.manager import get_plugins
from creg.summary.examples import select_examples

#: ``recompute(config, samples, wanted, log) -> ({(sample id, source): map}, problem or None)``
Recompute = Callable[[dict[str, Any], dict[str, Any], dict[str, set[str]], Callable[[str], None]],
                     tuple[dict[tuple[str, str], dict[str, Any]], str | None]]


def image_in_data_folder(config: dict[str, Any], image: Any) -> Path | None:
    """``samples.jsonl``'s ``image`` path if it is a regular file under the benchmark's data folder
    (config.json's ``run.data_dir``, or the benchmark's), else None: a run directory cannot make a
    report embed a file from anywhere else (``"image": "/any/file.png"``)."""
    run = config.get("run") if isinstance(config.get("run"), dict) else {}
    bench = config.get("benchmark") if isinstance(config.get("benchmark"), dict) else {}
    root = run.get("data_dir") or bench.get("data_dir")
    if not isinstance(image, str) or not image or not isinstance(root, str) or not root:
        return None
    try:
        base = Path(root).expanduser().resolve(strict=True)
        path = Path(image).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if path.is_relative_to(base) and path.is_file() else None


def run_samples(config: dict[str, Any], samples: dict[str, dict[str, Any]], ids: set[str]) -> dict[str, Any]:
    """:class:`creg.core.sample.Sample` objects of ``ids``: from ``samples.jsonl`` rows with an image file,
    else re-created by the benchmark (benchmarks are deterministic). Unrecoverable ids are left out."""
    out: dict[str, Any] = {}
    for sid in ids:
        row = samples.get(sid) or {}
        path = image_in_data_folder(config, row.get("image"))
        if path is not None:
            try:
                out[sid] = make_sample(id=sid, image=Path(path), image_size=tuple(row["image_size"]),
                                       ref_name=row["ref"]["name"], ref_box=Box(**dict(zip(("x0", "y0", "x1", "y1"), row["ref"]["box"]))),
                                       tgt_name=row["tgt"]["name"], tgt_box=Box(**dict(zip(("x0", "y0", "x1", "y1"), row["tgt"]["box"]))),
                                       relation=row["relation"], meta=row.get("meta") or {})
            except (InvalidSample, KeyError, TypeError, ValueError):
                pass
    missing = set(ids) - set(out)
    if missing:
        try:
            bench = build_benchmark(RunConfig(**config["run"]), get_plugins())
            for s in bench.samples():
                if s.id in missing:
                    out[s.id] = s
                    missing.discard(s.id)
                    if not missing:
                        break
        except Exception:  # noqa: BLE001 - figures fall back to boxes only; the report still completes
            pass
    return out


def stored_maps(store, wanted: dict[str, set[str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The maps of ``wanted`` ({sample id: source names}) that the run stored, in the form
    :func:`recompute_maps` returns (``peak_sector`` left out: the run recorded it with the map)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if store is None:
        return out
    for sid, names in wanted.items():
        for name, m in (store.maps(sid) or {}).items():
            if name in names:
                out[(sid, name)] = {"relevance": m.values, "cell_xy": m.cell_xy, "r_max": m.r_max or None}
    return out


def build_examples(config: dict[str, Any], groups: dict[str, list[SampleRecord]], samples: dict[str, dict[str, Any]],
                   *, heatmaps: bool = True, log: Callable[[str], None] = log_info, store=None,
                   recompute: Recompute | None = None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str], list[str]]:
    """({source: example items for :func:`creg.report.figures.examples_figure`}, {source left out:
    why}, notes for the report). ``store``: the run's :class:`creg.store.RunStore`, whose stored maps
    are used where it has them; ``recompute`` (:func:`creg.experiments.heatmaps.recompute_maps`) computes the
    maps it lacks, and without it those figures show the scene only, with a note."""
    picks = {name: select_examples(recs) for name, recs in groups.items()}
    left_out = {name: "no sample with a defined DAE (A and B share their centre in every sample)"
                for name, p in picks.items() if not p}
    ids = {r.sample_id for p in picks.values() for _, r in p}
    objs = run_samples(config, samples, ids)
    images = {}
    for sid, s in objs.items():
        try:
            images[sid] = s.load_image()
        except (OSError, ValueError):
            pass
    notes = []
    if ids and not images:
        notes.append("the samples' images could not be found; example figures show boxes only")
    maps: dict[tuple[str, str], dict[str, Any]] = {}
    if heatmaps and picks:
        wanted: dict[str, set[str]] = {}
        for name, p in picks.items():
            for _, r in p:
                wanted.setdefault(r.sample_id, set()).add(name)
        maps = stored_maps(store, wanted)
        missing: dict[str, set[str]] = {}
        for sid, names in wanted.items():
            rest = {n for n in names if (sid, n) not in maps}
            if rest:
                missing[sid] = rest
        problem = None
        if missing and recompute is None:
            problem = "the run stored no relevance maps for some examples (--no-save-maps) and none were recomputed"
        elif missing:  # a run without stored maps (--no-save-maps, or made before they were stored)
            more, problem = recompute(config, {sid: objs[sid] for sid in objs if sid in images}, missing, log)
            maps.update(more)
        if problem:
            notes.append(f"heatmaps: {problem}")
        changed = sorted({name for (sid, name), m in maps.items() if "peak_sector" in m
                          for _, r in picks[name] if r.sample_id == sid and r.peak_sector != m["peak_sector"]})
        if changed:
            notes.append("heatmaps: the recomputed maps of " + ", ".join(changed) + " peak in another sector than the "
                         "run recorded (a model or code change since the run, or nondeterministic kernels); the roses "
                         "show the recorded compasses")
    elif not heatmaps:
        notes.append("heatmaps were not requested (--no-heatmaps)")
    examples: dict[str, list[dict[str, Any]]] = {}
    for name, chosen in picks.items():
        items = []
        for label, r in chosen:
            item = {"label": label, "image": images.get(r.sample_id), "record": r.model_dump(),
                    "sample": samples.get(r.sample_id) or (objs[r.sample_id].summary() if r.sample_id in objs else _sample_stub(r))}
            item.update({k: v for k, v in maps.get((r.sample_id, name), {}).items() if k != "peak_sector"})
            items.append(item)
        if items:
            examples[name] = items
    return examples, left_out, notes


def _sample_stub(r: SampleRecord) -> dict[str, Any]:
    """A samples.jsonl row for a record whose sample line is missing: the boxes are unknown, so a
    unit-distance stand-in keeps the arrows drawable."""
    return {"id": r.sample_id, "ref": {"name": "A", "box": [0, 0, 2, 2]}, "tgt": {"name": "B", "box": [0, 0, 2, 2]}}
