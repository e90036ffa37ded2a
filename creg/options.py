"""Plugin options as they arrive from the command line (``--source-opt``, ``--bench-opt``).

Values come as JSON-parsed values or plain strings from the CLI and as real Python values from
code; these helpers accept both and fail with a message naming the option.
"""

from __future__ import annotations

from typing import Any, Sequence


def parse_bool(value: Any, name: str) -> bool:
    """``True``/``False`` or the strings true/false/1/0/yes/no/on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name}: expected true or false, got {value!r}")


def parse_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (case-insensitive)."""
    text = str(value).strip().lower()
    if text not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return text


def parse_float(value: Any, name: str, *, minimum: float) -> float:
    """A number >= ``minimum``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not number >= minimum:
        raise ValueError(f"{name}: expected a number >= {minimum}, got {number}")
    return number


def parse_int(value: Any, name: str, *, minimum: int) -> int:
    """An integer >= ``minimum``."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {number}")
    return number


def parse_layers(value: Any) -> tuple[int, ...]:
    """Hidden-state indices from ``-2``, ``"-2,-3"``, ``[-2, -3]`` or ``"[-2,-3]"``; order kept, no repeats."""
    if isinstance(value, bool):
        raise ValueError(f"layers: expected integers, got {value!r}")
    if isinstance(value, int):
        items: Sequence[Any] = [value]
    elif isinstance(value, str):
        items = [p for p in value.strip().strip("[]()").replace(" ", "").split(",") if p]
    else:
        items = list(value)
    try:
        layers = tuple(dict.fromkeys(int(x) for x in items))
    except (TypeError, ValueError):
        raise ValueError(f"layers: expected integers like -2,-3, got {value!r}") from None
    if not layers:
        raise ValueError("layers: at least one layer is needed")
    return layers
