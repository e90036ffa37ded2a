"""The round-off convention of a layer-reading source's records: the keys of the per-layer cancellation ratio and
threshold in a record's ``extra``, and the ``roundoff_layer_<l>`` flag of a layer whose Grad x Act measures round-off
or the norm's eps (the ratio and its threshold: :mod:`creg.sources.roundoff`; the warning: :mod:`creg.summary.warnings`)."""

from __future__ import annotations

#: Prefix of the record flag; the layer index follows (``roundoff_layer_-2``).
ROUNDOFF_FLAG = "roundoff_layer_"

#: Key of the per-layer ratios in a record's ``extra`` (``{"-2": 9.6e-08, "-3": 0.088}``).
CANCELLATION_KEY = "cancellation"

#: Key of the per-layer thresholds below which the record is flagged (``{"-2": 1e-06, ...}``).
THRESHOLD_KEY = "roundoff_threshold"


def roundoff_flag(layer: int) -> str:
    """The record flag of a round-off layer: ``roundoff_layer_-2``."""
    return f"{ROUNDOFF_FLAG}{layer}"


def flag_layer(flag: str) -> int | None:
    """The layer of a :func:`roundoff_flag`, None for any other flag."""
    if not flag.startswith(ROUNDOFF_FLAG):
        return None
    try:
        return int(flag[len(ROUNDOFF_FLAG):])
    except ValueError:
        return None
