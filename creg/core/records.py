"""The record users read per sample and source: one source's row joined with its sample's facts.

A run directory stores the per-sample facts once (``samples.jsonl``) and the per-source fields in
``records.jsonl`` (:mod:`creg.store.schema`); :meth:`creg.store.RunStore.records` joins them into
these records, whose layout is creg 0.1's ``records.jsonl`` line. The fields are a contract that
users parse (docs/user-guide.md lists them); add fields, never rename or remove them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SampleRecord(BaseModel):
    """One sample explained by one source.

    ``model_dump_json()`` writes NaN and infinities as ``NaN`` / ``Infinity`` (as the run store does),
    so ``model_validate_json()`` reads its own output back (a model's NaN logits included)."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    sample_id: str
    source: str
    relation: str  # ground truth: left/right/above/below
    pred: str | None = None  # the model's answer (argmax of the class logits); None without a model
    correct: bool | None = None
    logits: list[float] | None = None  # z_1..z_4 = left, right, above, below
    true_angle: float  # theta_true (deg, 0 = right, 90 = up)
    compass: list[float]  # P(theta_k), k = 0..K-1, sector k centred at k * 360 / K
    peak_sector: int
    peak_angle: float  # the direction the evidence points at (deg); see docs/paper-to-code.md
    sector_angle: float  # centre angle of the peak sector (the paper's literal theta_peak)
    dae: float | None  # Eq. 6 with peak_angle; None when the truth is undefined (d_AB = 0)
    dae_sector: float | None  # Eq. 6 with sector_angle
    ea: bool | None  # Eq. 7: dae <= 45
    flags: list[str] = Field(default_factory=list)  # degenerate inputs, see creg.core.compass.Flag
    cos: dict[str, Any] | None = None  # causal occlusion (creg run --cos)
    extra: dict[str, Any] = Field(default_factory=dict)  # source-specific diagnostics
    dae_no_ref: float | None = None  # Eq. 6 with A's own cells left out (docs/paper-to-code.md)
    ground_truth: dict[str, float | None] | None = None  # causal_mass, causal_rank (creg.core.ground_truth), where known
