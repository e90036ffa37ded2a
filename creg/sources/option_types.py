"""Field types shared by the first-party sources' ``Options`` models.

They accept what ``--source-opt`` hands over (JSON-parsed values or plain strings: ``-2``,
``"-2,-3"``, ``[-2, -3]``, ``"[-2,-3]"``, ``MAX``) as well as Python values from code.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from ..options import parse_layers


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _one_layer(value: Any) -> int:
    layers = parse_layers(value)
    if len(layers) != 1:
        raise ValueError(f"one layer, got {value!r}")
    return layers[0]


def _not_empty(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value:
        raise ValueError("at least one layer is needed")
    return value


#: hidden-state indices (see :mod:`creg.adapter`), order kept, repeats dropped.
Layers = Annotated[tuple[int, ...], BeforeValidator(parse_layers), AfterValidator(_not_empty)]
#: one hidden-state index.
Layer = Annotated[int, BeforeValidator(_one_layer)]
#: a string compared case-insensitively (use with ``Literal[...]``).
Lowercase = BeforeValidator(_lower)
