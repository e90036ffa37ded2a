"""What a run directory holds, line by line: the schema of ``samples.jsonl``, ``records.jsonl``
and ``skipped.jsonl`` (version :data:`SCHEMA_VERSION`).

Per-sample facts (names, boxes, geometry, the model's logits and answer, the true-direction
occlusion reading) are written once per sample in ``samples.jsonl`` (:class:`SampleFacts`);
``records.jsonl`` holds only what differs per relevance source (:class:`SourceRow`). Both are
declared in :mod:`creg.core.records`, with :class:`~creg.core.records.SampleRecord`, the joined
view (one sample's facts with one source's row) that analyses and users read; a line is the
model's ``model_dump()`` in field order.

Floats are written as JSON numbers, and NaN / +-inf as the tokens ``NaN`` / ``Infinity`` /
``-Infinity`` (what Python's :mod:`json` reads and writes), so they round-trip.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from creg.core.records import Named, SampleFacts, SourceRow

__all__ = ["SCHEMA_VERSION", "READABLE_VERSIONS", "Named", "SampleFacts", "SourceRow", "Failure"]

#: Version of the run directory layout. 1: creg 0.1 (per-sample facts copied into every record);
#: 2: ``samples.jsonl`` holds the per-sample facts once, ``config.json`` the resolved configuration.
SCHEMA_VERSION = 2
#: Versions this creg reads (``creg report``); only :data:`SCHEMA_VERSION` can be continued.
READABLE_VERSIONS = (1, 2)


class Failure(BaseModel):
    """One line of ``skipped.jsonl``: a sample that could not be processed (it is retried by a resume)."""

    model_config = ConfigDict(extra="allow")

    sample_id: str
    reason: str  # the exception's type, e.g. ImageUnreadable, PluginOutputError
    plugin: str | None = None  # which plugin raised or returned bad output, e.g. "source 'creg'"
    error: str = ""  # the message
    traceback: str = ""  # the last frames, for bug reports
