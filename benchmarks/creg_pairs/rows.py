"""Reading a pairs file: CSV, JSONL or Parquet rows into :class:`PairRow` objects.

Columns (names case-insensitive; ``ref_name``/``tgt_name`` are accepted for ``ref``/``tgt``):

==========  ==========================================================================================
image       path of the image, relative to the image root (an absolute path must lie inside it)
ref         name of the reference object A
ref_box     A's box: four numbers in the file's ``box_format``, as ``"x0 y0 x1 y1"``, ``"x0,y0,x1,y1"``,
            ``"[x0, y0, x1, y1]"`` or (JSONL, Parquet) a list
tgt         name of the target object B
tgt_box     B's box, as ``ref_box``
relation    optional: left, right, above or below (B relative to A); empty: taken from the boxes
id          optional: the sample id (default ``rowN``, N the row's number in the file, from 1)
==========  ==========================================================================================

A row that cannot be read (a missing field, a box that is not four numbers) is returned with its
problem, never dropped silently; a file that cannot be read at all raises
:class:`creg.plugins.benchmark.DataInvalid` / :class:`creg.plugins.benchmark.DataNotFound`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from creg.plugins.benchmark import DataInvalid, DataNotFound

#: File suffixes read, by format.
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
#: Column name -> the field it fills.
ALIASES = {"image": "image", "ref": "ref", "ref_name": "ref", "ref_box": "ref_box", "tgt": "tgt", "tgt_name": "tgt",
           "tgt_box": "tgt_box", "relation": "relation", "id": "id"}
REQUIRED = ("image", "ref", "ref_box", "tgt", "tgt_box")
#: URL schemes refused (creg reads local files only: no network).
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class PairRow:
    """One row of the file: ``number`` counts data rows from 1; ``problem`` says why it cannot be used."""

    number: int
    fields: dict[str, Any]
    problem: str | None = None


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataInvalid(f"pairs file {path}: unknown suffix {path.suffix!r}; use .csv, .jsonl or .parquet")
    return fmt


def _raw_rows(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            yield from reader
    elif fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DataInvalid(f"pairs file {path}: line {i} is not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise DataInvalid(f"pairs file {path}: line {i} is not a JSON object")
                yield row
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataInvalid(f"pairs file {path}: reading Parquet needs pyarrow: pip install 'creg[parquet]'") from None
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds; say which file and why
            raise DataInvalid(f"pairs file {path}: not a readable Parquet file ({e})") from None
        yield from table.to_pylist()


def _columns(row: dict[str, Any], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        field = ALIASES.get(str(key).strip().lower())
        if field is not None:
            out[field] = value.strip() if isinstance(value, str) else value
    return out


def box_numbers(value: Any) -> list[float]:
    """Four numbers of a box cell: a list, or text such as ``"1 2 3 4"``, ``"1,2,3,4"``, ``"[1, 2, 3, 4]"``."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,;]+", value.strip().strip("[]()")) if p]
    elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        parts = list(value.tolist() if hasattr(value, "tolist") else value)
    else:
        raise ValueError(f"expected four numbers, got {value!r}")
    try:
        nums = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"expected four numbers, got {value!r}") from None
    if len(nums) != 4:
        raise ValueError(f"expected four numbers, got {len(nums)} in {value!r}")
    return nums


def read_rows(path: str | Path) -> list[PairRow]:
    """Every data row of ``path`` with its fields (``ref_box``/``tgt_box`` as four floats) or its problem.

    Raises :class:`DataNotFound` when the file is missing, :class:`DataInvalid` when it cannot be
    read, lacks a required column, or names an image by URL (creg reads local files only)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFound(f"pairs file not found: {path}")
    fmt = file_format(path)
    rows: list[PairRow] = []
    try:
        raw = list(_raw_rows(path, fmt))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataInvalid(f"pairs file {path}: cannot read it as {fmt.upper()} ({e})") from None
    if raw:
        seen = {ALIASES[k.strip().lower()] for row in raw[:1] for k in row if str(k).strip().lower() in ALIASES}
        missing = [c for c in REQUIRED if c not in seen] if fmt == "csv" else []
        if missing:
            raise DataInvalid(f"pairs file {path}: missing column(s) {', '.join(missing)}; the columns are "
                              f"image, ref, ref_box, tgt, tgt_box and optionally relation, id")
    for number, row in enumerate(raw, 1):
        fields = _columns(row, path)
        image = fields.get("image")
        if isinstance(image, str) and URL.match(image):
            raise DataInvalid(f"pairs file {path}: row {number}: image {image[:200]!r} is a URL; creg reads local "
                              "files only (no network): download the images and give their paths under --image-root")
        absent = [c for c in REQUIRED if fields.get(c) in (None, "")]
        if absent:
            rows.append(PairRow(number, fields, f"row {number}: missing {', '.join(absent)}"))
            continue
        try:
            for key in ("ref_box", "tgt_box"):
                fields[key] = box_numbers(fields[key])
        except ValueError as e:
            rows.append(PairRow(number, fields, f"row {number}: {key}: {e}"))
            continue
        rows.append(PairRow(number, fields))
    return rows
