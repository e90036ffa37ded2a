"""What a run directory holds, line by line: the schema of ``samples.jsonl``, ``records.jsonl``
and ``skipped.jsonl`` (version :data:`SCHEMA_VERSION`).

Per-sample facts (names, boxes, geometry, the model's logits and answer, the true-direction
occlusion reading) are written once per sample in ``samples.jsonl``; ``records.jsonl`` holds
only what differs per relevance source. :class:`creg.core.records.SampleRecord` is the joined view
(one sample's facts with one source's row) that analyses and users read.

Floats are written as JSON numbers, and NaN / +-inf as the tokens ``NaN`` / ``Infinity`` /
``-Infinity`` (what Python's :mod:`json` reads and writes), so they round-trip.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Version of the run directory layout. 1: creg 0.1 (per-sample facts copied into every record);
#: 2: ``samples.jsonl`` holds the per-sample facts once, ``config.json`` the resolved configuration.
SCHEMA_VERSION = 2
#: Versions this creg reads (``creg report``); only :data:`SCHEMA_VERSION` can be continued.
READABLE_VERSIONS = (1, 2)


class Named(BaseModel):
    """An object of a sample: its name and box ``[x0, y0, x1, y1]`` (pixels)."""

    name: str
    box: list[float]


class SampleFacts(BaseModel):
    """One line of ``samples.jsonl``: everything about a sample that does not depend on the source."""

    model_config = ConfigDict(extra="allow")

    id: str
    image: str | None = None  # the image file, or None for an in-memory image (re-created from config.json)
    image_size: list[int]  # (width, height)
    ref: Named  # the reference object A
    tgt: Named  # the target object B
    relation: str  # ground truth: left/right/above/below
    meta: dict[str, Any] = Field(default_factory=dict)  # benchmark-specific (e.g. COCO ids)
    true_angle: float  # theta_true (deg, 0 = right, 90 = up)
    d_ab: float  # distance between the centres of A and B (px)
    r_max: float  # rho_r * d_AB: the compass radius (Eq. 5)
    sigma: float  # sigma_r * r_max: the Gaussian falloff (Eq. 5)
    logits: list[float] | None = None  # z_1..z_4 = left, right, above, below; None without a model
    pred: str | None = None  # the model's answer (argmax of the logits)
    correct: bool | None = None
    cos_true: dict[str, Any] | None = None  # occlusion of the true-direction sector (--cos); same for every source


class SourceRow(BaseModel):
    """One line of ``records.jsonl``: one sample explained by one source."""

    model_config = ConfigDict(extra="allow")

    sample_id: str
    source: str
    compass: list[float]  # P(theta_k), k = 0..K-1, sector k centred at k * 360 / K
    peak_sector: int
    peak_angle: float  # the direction the evidence points at (deg)
    sector_angle: float  # centre angle of the peak sector (the paper's literal theta_peak)
    dae: float | None  # Eq. 6 with peak_angle; None when the truth is undefined (d_AB = 0)
    dae_sector: float | None  # Eq. 6 with sector_angle
    ea: bool | None  # Eq. 7: dae <= 45
    flags: list[str] = Field(default_factory=list)  # degenerate inputs, see creg.core.compass.Flag
    cos: dict[str, Any] | None = None  # occlusion of this source's peak sector and its neighbours (--cos)
    dae_no_ref: float | None = None  # Eq. 6 with A's own cells left out (docs/paper-to-code.md)
    ground_truth: dict[str, float | None] | None = None  # vs the adapter's causal effects (creg.core.ground_truth)
    extra: dict[str, Any] = Field(default_factory=dict)  # source-specific diagnostics


class Failure(BaseModel):
    """One line of ``skipped.jsonl``: a sample that could not be processed (it is retried by a resume)."""

    model_config = ConfigDict(extra="allow")

    sample_id: str
    reason: str  # the exception's type, e.g. ImageUnreadable, PluginOutputError
    plugin: str | None = None  # which plugin raised or returned bad output, e.g. "source 'creg'"
    error: str = ""  # the message
    traceback: str = ""  # the last frames, for bug reports
