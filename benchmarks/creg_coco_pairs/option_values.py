"""Benchmark option values: ``--bench-opt key=value`` delivers strings, Python callers real types."""

from __future__ import annotations

from typing import Any


def as_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    value = str(value).strip().lower()
    if value not in choices:
        raise ValueError(f"option {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"option {name} must be true or false, got {value!r}")


def as_float(name: str, value: Any, *, minimum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a number, got {value!r}") from None
    if not number >= minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {number}")
    return number


def as_int(name: str, value: Any, *, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {number}")
    return number
