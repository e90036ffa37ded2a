"""The per-sample record, declared once.

What a run learns about a sample splits in two: :class:`SampleFacts`, everything that does not
depend on the relevance source (names, boxes, geometry, the model's logits and answer), and one
:class:`SourceRow` per source (the compass and what is read from it). The run store writes them
as lines of ``samples.jsonl`` and ``records.jsonl`` (:mod:`creg.store.schema`, which adds the
schema version and the failure line).

:class:`SampleRecord`, the record users read (one sample explained by one source), is generated
from these two declarations: the row's key (``sample_id``, ``source``), the sample facts marked
:class:`InRecord`, then the row's other fields. :func:`join` builds it from a sample's facts and
one row; :func:`record_facts` reads the marked facts back out of a record (creg 0.1 run
directories stored only records). A field is therefore added in one place; the frames and exports
(:mod:`creg.report.frames`) take their columns from :class:`SampleRecord`'s fields. The fields are
a contract that users parse (docs/user-guide.md lists them): add fields, never rename or remove them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class InRecord:
    """Marks a :class:`SampleFacts` field that every :class:`SampleRecord` of the sample carries: as
    the record's field of the same name, or, with ``into``, as the entry ``key`` of the record's
    dict field ``into`` (added when the fact is not None)."""

    into: str | None = None
    key: str | None = None


class Named(BaseModel):
    """An object of a sample: its name and box ``[x0, y0, x1, y1]`` (pixels)."""

    name: str
    box: list[float]


class SampleFacts(BaseModel):
    """What is known about a sample whatever the source (one line of ``samples.jsonl``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    image: str | None = None  # the image file, or None for an in-memory image (re-created from config.json)
    image_size: list[int]  # (width, height)
    ref: Named  # the reference object A
    tgt: Named  # the target object B
    relation: Annotated[str, InRecord()]  # ground truth: left/right/above/below
    meta: dict[str, Any] = Field(default_factory=dict)  # benchmark-specific (e.g. COCO ids)
    true_angle: Annotated[float, InRecord()]  # theta_true (deg, 0 = right, 90 = up)
    d_ab: float  # distance between the centres of A and B (px)
    r_max: float  # rho_r * d_AB: the compass radius (Eq. 5)
    sigma: float  # sigma_r * r_max: the Gaussian falloff (Eq. 5)
    # z_1..z_4 = left, right, above, below; None without a model
    logits: Annotated[list[float] | None, InRecord()] = None
    pred: Annotated[str | None, InRecord()] = None  # the model's answer (argmax of the logits)
    correct: Annotated[bool | None, InRecord()] = None
    # occlusion of the true-direction sector (--cos); the same for every source: a record's cos["true"]
    cos_true: Annotated[dict[str, Any] | None, InRecord(into="cos", key="true")] = None


class SourceRow(BaseModel):
    """One sample explained by one source, without the sample's facts (one line of ``records.jsonl``)."""

    model_config = ConfigDict(extra="allow")

    sample_id: str
    source: str
    compass: list[float]  # P(theta_k), k = 0..K-1, sector k centred at k * 360 / K
    peak_sector: int
    peak_angle: float  # the direction the evidence points at (deg); see docs/paper-to-code.md
    sector_angle: float  # centre angle of the peak sector (the paper's literal theta_peak)
    dae: float | None  # Eq. 6 with peak_angle; None when the truth is undefined (d_AB = 0)
    dae_sector: float | None  # Eq. 6 with sector_angle
    ea: bool | None  # Eq. 7: dae <= 45
    flags: list[str] = Field(default_factory=list)  # degenerate inputs, see creg.core.compass.Flag
    cos: dict[str, Any] | None = None  # occlusion of this source's peak sector and its neighbours (--cos)
    dae_no_ref: float | None = None  # Eq. 6 with A's own cells left out (docs/paper-to-code.md)
    ground_truth: dict[str, float | None] | None = None  # vs the adapter's causal effects (creg.core.ground_truth)
    extra: dict[str, Any] = Field(default_factory=dict)  # source-specific diagnostics


#: the fields that say which sample and source a row (and a record) is about
RECORD_KEY = ("sample_id", "source")


def _in_record(field: FieldInfo) -> InRecord | None:
    return next((m for m in field.metadata if isinstance(m, InRecord)), None)


#: the sample facts every record carries, by name: where each goes in the record
CARRIED: dict[str, InRecord] = {name: mark for name, f in SampleFacts.model_fields.items()
                                if (mark := _in_record(f)) is not None}


def _record_fields() -> dict[str, Any]:
    """The fields of :class:`SampleRecord`: the row's key, the carried facts, the row's other fields."""
    rows, facts = SourceRow.model_fields, SampleFacts.model_fields
    same_name = [n for n, mark in CARRIED.items() if mark.into is None]
    clash = sorted(set(same_name) & set(rows))
    if clash:
        raise TypeError(f"SampleFacts and SourceRow both declare {clash}: a record field is declared once")
    homeless = sorted(n for n, mark in CARRIED.items() if mark.into is not None and mark.into not in rows)
    if homeless:
        raise TypeError(f"SampleFacts {homeless}: InRecord(into=...) names no SourceRow field")
    order = [(n, rows[n]) for n in RECORD_KEY] + [(n, facts[n]) for n in same_name]
    order += [(n, f) for n, f in rows.items() if n not in RECORD_KEY]
    fields: dict[str, Any] = {}
    for name, f in order:
        plain = copy.copy(f)
        plain.metadata = [m for m in f.metadata if not isinstance(m, InRecord)]
        fields[name] = (f.annotation, plain)
    return fields


class _Record(BaseModel):
    # NaN and infinities as NaN / Infinity in model_dump_json (as the run store writes them)
    model_config = ConfigDict(ser_json_inf_nan="constants")


SampleRecord = create_model(
    "SampleRecord", __base__=_Record, __module__=__name__,
    __doc__="""One sample explained by one source: the source's :class:`SourceRow` with the sample's
    facts marked :class:`InRecord` (see the module docstring for the layout).

    ``model_dump_json()`` writes NaN and infinities as ``NaN`` / ``Infinity`` (as the run store does),
    so ``model_validate_json()`` reads its own output back (a model's NaN logits included).""",
    **_record_fields())


def join(facts: SampleFacts, row: SourceRow) -> SampleRecord:
    """One sample's facts and one source's row as the record users read (:class:`SampleRecord`)."""
    values = {name: getattr(row, name) for name in SampleRecord.model_fields if name in SourceRow.model_fields}
    for name, mark in CARRIED.items():
        value = getattr(facts, name)
        if mark.into is None:
            values[name] = value
        elif value is not None:
            values[mark.into] = {**(values.get(mark.into) or {}), mark.key: value}
    return SampleRecord(**values)


def record_facts(record: SampleRecord) -> dict[str, Any]:
    """The sample facts a record carries (the :class:`InRecord` fields of :class:`SampleFacts`), by name."""
    out: dict[str, Any] = {}
    for name, mark in CARRIED.items():
        out[name] = (getattr(record, name) if mark.into is None
                     else (getattr(record, mark.into) or {}).get(mark.key))
    return out
