"""A run directory as tidy pandas DataFrames (``creg.read_run``; pandas: ``pip install 'creg[frames]'``).

:func:`read_run` returns a :class:`RunFrames` with

* ``records`` -- one row per sample and source: the fields of
  :class:`~creg.core.records.SampleRecord` in its order (:func:`record_row`; a field added to the
  record becomes a column), the compass as one column per sector named by its direction (``p_E``,
  ``p_NE``, ... for K = 8; ``p_0deg``, ``p_45deg``, ... for other K) with ``k`` and the peak's
  direction name (``peak``), the class logits as ``logit_left`` .. ``logit_below``, ``flags``
  joined with ``;``, the causal-occlusion entry, the ground truth and ``extra`` flattened
  (``cos_peak_delta``, ``ground_truth_causal_mass``, ...), then the sample's facts joined (names,
  boxes ``ref_x0`` .. ``tgt_y1``, image size, ``d_ab``, ``r_max``, ``sigma``, ``meta_*``);
* ``samples`` -- one row per sample (the sample's columns above: :func:`sample_row`);
* ``compass`` -- the long form: one row per sample, source and sector (``sector``, ``direction``,
  ``angle``, ``p``);
* ``summary`` -- one row per source: n, DAE, EA and their CIs, COS when the run has it;
* ``config`` -- the run's configuration (``config.json``'s ``run``).

:func:`read_runs` reads several runs into one :class:`RunFrames`: every table gains the columns
``run`` (a short label, the directory name or more of its path where names repeat) and ``model``
(the hub id or preset, never a local path: :func:`creg.report.cross_run.model_name`), and
``config`` maps each label to its run's configuration.

Column names are stable: a K = 8 run always has ``p_E`` .. ``p_SE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from creg.core.compass import sector_names
from creg.core.records import CARRIED, Named, SampleFacts, SampleRecord
from creg.core.sample import RELATIONS
from creg.report.compare import run_labels
from creg.report.cross_run import model_name
from creg.store import RunStore


class FramesUnavailable(ImportError):
    """pandas is not installed."""


def _pandas():
    try:
        import pandas as pd  # lazy: optional pandas
    except ImportError as e:
        raise FramesUnavailable("creg.read_run needs pandas: pip install 'creg[frames]'") from e
    return pd


@dataclass
class RunFrames:
    records: Any
    samples: Any
    compass: Any
    summary: Any
    config: dict[str, Any]

    def __repr__(self) -> str:
        return (f"RunFrames(records {self.records.shape}, samples {self.samples.shape}, compass {self.compass.shape}, "
                f"summary {self.summary.shape})")


def sector_columns(k: int) -> list[str]:
    """Column names of the K compass sectors: ``p_`` + the direction (``p_E``) or the centre angle (``p_45deg``)."""
    return ["p_" + n.replace("°", "deg") for n in sector_names(k)]


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested dicts to ``prefix_key_subkey`` columns; lists of numbers stay lists only when ragged."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}_{k}", v, out)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        out[f"{prefix}_lo"], out[f"{prefix}_hi"] = value  # a confidence interval
    elif value is None and prefix.endswith("_ci"):  # an interval not computed (no --cos, no samples): same columns
        out[f"{prefix}_lo"] = out[f"{prefix}_hi"] = None
    else:
        out[prefix] = value


def _shape(annotation: Any) -> Any:
    """What a field holds, without its ``None``: ``list``, ``dict``, a model class, or the scalar type."""
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return get_origin(annotation) or annotation


def _image_size_columns(size: Any, _facts: dict[str, Any]) -> dict[str, Any]:
    w, h = (size or (None, None))[:2]
    return {"image_width": w, "image_height": h}


def _compass_columns(probs: Any, rec: dict[str, Any]) -> dict[str, Any]:
    probs = probs or []
    names = sector_names(len(probs)) if probs else []
    return {"k": len(probs), "peak": names[rec["peak_sector"]] if probs else None,
            **dict(zip(sector_columns(len(probs)), probs))}


def _logit_columns(logits: Any, _rec: dict[str, Any]) -> dict[str, Any]:
    return {f"logit_{rel}": z for rel, z in zip(RELATIONS, logits or [None] * len(RELATIONS))}


#: fields whose entries have names: one column per entry
SPREAD = {"compass": _compass_columns, "logits": _logit_columns, "image_size": _image_size_columns}


def _columns(model: type, values: dict[str, Any], skip=()) -> dict[str, Any]:
    """``values`` (a ``model_dump()``) as flat columns, taken from ``model``'s fields in order: a scalar
    as it is, a :data:`SPREAD` field as its named entries, a :class:`~creg.core.records.Named` object as
    its name and box (``ref_name``, ``ref_x0`` .. ``ref_y1``); after them lists of text joined with
    ``;`` and dicts flattened (``cos_peak_delta``, ``meta_*``)."""
    out: dict[str, Any] = {}
    joined: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if name in skip:
            continue
        value, shape = values.get(name), _shape(f.annotation)
        if name in SPREAD:
            out.update(SPREAD[name](value, values))
        elif shape is Named:
            obj = value or {}
            out[f"{name}_name"] = obj.get("name")
            out.update(zip((f"{name}_{c}" for c in ("x0", "y0", "x1", "y1")), obj.get("box") or (None,) * 4))
        elif shape is list:
            joined[name] = ";".join(str(v) for v in value or [])
        elif shape is dict:
            flatten(name, value or {}, nested)
        else:
            out[name] = value
    return {**out, **joined, **nested}


def sample_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``samples.jsonl`` line (:class:`~creg.core.records.SampleFacts`) as flat columns: the facts
    records do not carry, ``id`` as ``sample_id``, the image size as ``image_width`` and ``image_height``."""
    out = _columns(SampleFacts, row, skip=CARRIED)
    return {"sample_id": out.pop("id"), **out}


def record_row(rec: dict[str, Any]) -> dict[str, Any]:
    """A record (:class:`~creg.core.records.SampleRecord`) as flat columns: its scalar fields, the compass
    by direction (with ``k`` and ``peak``), logits by relation, flags joined, COS, ground truth and extra flattened."""
    return _columns(SampleRecord, rec)


def _read(run_dir: Path):
    """(config's run, joined records, sample facts, summary) through the run store (creg.store)."""

    store = RunStore.read(run_dir)
    return (store.config.get("run", {}), [r.model_dump() for r in store.records()],
            [f.model_dump() for f in store.samples().values()], store.summary())


def read_run(run_dir: str | Path) -> RunFrames:
    """The tidy tables of a run directory (see the module docstring)."""
    pd = _pandas()
    config, raw_records, raw_samples, stored = _read(Path(run_dir))
    seen: set[tuple[str, str]] = set()
    recs = []
    for rec in raw_records:
        key = (rec.get("sample_id"), rec.get("source"))
        if key not in seen:
            seen.add(key)
            recs.append(rec)
    samples_rows = {}
    for row in raw_samples:
        samples_rows.setdefault(row["id"], sample_row(row))
    samples = pd.DataFrame(list(samples_rows.values()))
    records = pd.DataFrame([record_row(r) for r in recs])
    if not samples.empty and not records.empty:
        records = records.merge(samples, on="sample_id", how="left", validate="many_to_one")
    long_rows = []
    for r in recs:
        probs = r.get("compass") or []
        names = sector_names(len(probs))
        for i, p in enumerate(probs):
            long_rows.append({"sample_id": r["sample_id"], "source": r["source"], "sector": i, "direction": names[i],
                              "angle": i * 360.0 / len(probs), "p": p})
    compass = pd.DataFrame(long_rows, columns=["sample_id", "source", "sector", "direction", "angle", "p"])
    summary_rows = []
    if stored:
        for name, s in stored.get("sources", {}).items():
            row: dict[str, Any] = {"source": name}
            for key, v in s.items():
                if key in ("by_class", "by_correct", "flags"):
                    continue
                flatten(key, v, row)
            summary_rows.append(row)
    summary = pd.DataFrame(summary_rows)
    return RunFrames(records=records, samples=samples, compass=compass, summary=summary, config=config)


def read_runs(run_dirs) -> RunFrames:
    """Several runs as one set of tables, each row labelled with its ``run`` and ``model`` (see the
    module docstring); rows keep each run's order, runs the order given."""
    pd = _pandas()

    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("read_runs needs at least one run directory")
    labels = run_labels(dirs)
    parts: dict[str, list] = {"records": [], "samples": [], "compass": [], "summary": []}
    configs: dict[str, Any] = {}
    for label, path in zip(labels, dirs):
        frames = read_run(path)
        name = model_name(RunStore.read(path).config)
        configs[label] = frames.config
        for key in parts:
            df = getattr(frames, key).copy()
            df.insert(0, "model", name)
            df.insert(0, "run", label)
            parts[key].append(df)
    return RunFrames(**{k: pd.concat(v, ignore_index=True) for k, v in parts.items()}, config=configs)
