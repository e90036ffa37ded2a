"""The round-off convention of a layer-reading source's records: the cancellation ratio's key in a record's
``extra``, the threshold below which a layer measures round-off, and the ``roundoff_layer_<l>`` flag
(the ratio itself: :mod:`creg.sources.roundoff`; the warning it raises: :mod:`creg.summary.warnings`)."""

from __future__ import annotations

#: Below this cancellation ratio a layer's Grad x Act is round-off (float32's is ~1e-7; the
#: layers that carry signal measure ~1e-2..1e-1 on the toy and the 28-layer shape).
ROUNDOFF_RATIO = 1e-4

#: Prefix of the record flag; the layer index follows (``roundoff_layer_-2``).
ROUNDOFF_FLAG = "roundoff_layer_"

#: Key of the per-layer ratios in a record's ``extra`` (``{"-2": 9.6e-08, "-3": 0.088}``).
CANCELLATION_KEY = "cancellation"


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
