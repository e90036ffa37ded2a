"""A run's results as files for other tools (``creg export RUN --format csv|parquet``).

The tables are :func:`creg.report.frames.read_run`'s, read through the run store:

* ``wide`` -- one row per sample and source (``RunFrames.records``): the record's fields
  (:func:`creg.report.frames.record_row`: every field of :class:`~creg.core.records.SampleRecord`),
  one column per compass sector named by its direction (``p_E`` ...), logits by relation, COS,
  ground truth and extra flattened, the sample's names, boxes, d_AB, r_max, sigma and metadata;
* ``long`` -- one row per sample, source and sector (``RunFrames.compass``: ``sector``,
  ``direction``, ``angle``, ``p``) with the sample's ``relation`` and ``correct`` joined;
* ``samples`` -- one row per sample; ``summary`` -- one row per source (summary.json flattened).

Every exported table has a ``complete`` column (summary.json's: false for a partial run, which
:func:`export_run` also warns about). CSV cells whose text starts with ``=``, ``+``, ``-`` or ``@``
are written with a leading ``'`` (:func:`creg.core.safe_text.csv_cell`), so a category name from data is
never run as a spreadsheet formula.

CSV needs pandas (``pip install 'creg[frames]'``); Parquet also needs pyarrow. Parquet columns have
one type each: a column mixing kinds of values (lists, dicts, numbers and text in a metadata field) is
written as text (lists and dicts as JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from creg.core.safe_text import csv_cell
from creg.store import RunStore

FORMATS = ("csv", "parquet")
FORMS = ("wide", "long", "samples", "summary")


class ExportUnavailable(ImportError):
    """A library the export needs (pandas, pyarrow) is not installed; the message says what to install."""


def table(run_dir: str | Path, form: str = "wide"):
    """The pandas DataFrame of ``form`` (see the module docstring) of a run directory."""
    from creg.report.frames import FramesUnavailable, read_run  # lazy: torch

    if form not in FORMS:
        raise ValueError(f"export form {form!r}: choose one of {', '.join(FORMS)}")
    try:
        frames = read_run(run_dir)
    except FramesUnavailable as e:
        raise ExportUnavailable(str(e)) from None
    if form == "wide":
        return frames.records
    if form == "samples":
        return frames.samples
    if form == "summary":
        return frames.summary
    keys = [c for c in ("sample_id", "source", "relation", "correct") if c in frames.records.columns]
    if frames.compass.empty or len(keys) <= 2:
        return frames.compass
    return frames.compass.merge(frames.records[keys], on=["sample_id", "source"], how="left")


def _pyarrow():
    try:
        import pyarrow  # noqa: F401  # lazy: optional pyarrow
    except ImportError:
        raise ExportUnavailable("--format parquet needs pyarrow: pip install pyarrow, or pip install 'creg[parquet]' (or export --format csv)") from None


def _one_type(column):
    """An object column as values of one Parquet type: lists/dicts as JSON text, mixed kinds as text."""
    def norm(v: Any) -> Any:
        return json.dumps(v) if isinstance(v, (list, tuple, dict)) else v

    values = column.map(norm)
    kinds = {type(v) for v in values if v is not None and v == v}
    if kinds <= {int, float}:
        return values if len(kinds) < 2 else values.astype("float64")
    if len(kinds) > 1:
        return values.map(lambda v: v if v is None or v != v else str(v))
    return values


def write_table(df, out: str | Path, fmt: str = "csv") -> Path | None:
    """Write ``df`` to ``out`` as ``fmt`` (``out`` ``-``: CSV on stdout, returns None)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _pyarrow()
        if str(out) == "-":
            raise ValueError("Parquet is binary: give a file with --out (stdout takes CSV only)")
        df = df.copy()
        for name in df.columns:
            if df[name].dtype == object:
                df[name] = _one_type(df[name])
    if fmt == "csv":
        df = _no_formulas(df)
    if str(out) == "-":
        df.to_csv(sys.stdout, index=False)
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    return out


def _no_formulas(df):
    """``df`` with every text cell a spreadsheet would run as a formula made text (:func:`creg.core.safe_text.csv_cell`)."""

    from pandas.api.types import is_numeric_dtype  # lazy: optional pandas

    df = df.copy()
    for name in df.columns:
        if not is_numeric_dtype(df[name].dtype):  # object or string columns (pandas 3 infers str)
            df[name] = df[name].map(csv_cell)
    return df.rename(columns=lambda c: csv_cell(c) if isinstance(c, str) else c)


def run_complete(run_dir: str | Path) -> bool:
    """Whether the run finished (summary.json's ``complete``; False when there is no summary)."""

    summary = RunStore.read(run_dir).summary() or {}
    return summary.get("complete") is True


def default_path(run_dir: str | Path, form: str, fmt: str) -> Path:
    """``<run name>-<form>.<csv|parquet>`` in the current directory (nothing is written into the run)."""
    return Path(f"{Path(run_dir).resolve().name}-{form}.{fmt}")


def export_run(run_dir: str | Path, out: str | Path | None = None, *, fmt: str = "csv", form: str = "wide",
               log: Callable[[str], None] | None = None) -> Path | None:
    """Write one table of a run directory as CSV or Parquet, with a ``complete`` column; a partial run
    is exported with a warning through ``log``. Returns the file written (None for stdout)."""
    if fmt == "parquet":
        _pyarrow()
    df = table(run_dir, form)
    complete = run_complete(run_dir)
    df = df.assign(complete=complete)
    if not complete and log is not None:
        log(f"warning: {run_dir} is a partial run (summary.json: complete false): the export holds only the samples "
            "finished so far; re-run the same `creg run` command to finish it")
    return write_table(df, out if out is not None else default_path(run_dir, form, fmt), fmt)
