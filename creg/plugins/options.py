"""Plugin options with a schema: every adapter, source and benchmark declares a pydantic model.

A plugin class declares its options as a nested model::

    class MySource(RelevanceSource):
        class Options(PluginOptions):
            layers: Layers = Field((-2,), description="hidden-state indices")
            steps: int = Field(50, ge=1, description="integration steps")

Values arrive from the command line (``--source-opt``, ``--bench-opt``, ``--adapter-opt``; JSON-parsed
where they parse, plain strings otherwise), from a registry file or from code.
:func:`validate_options` checks them against the class's ``Options`` before a run directory is
touched and fails with one line that names the plugin and the field::

    source 'creg': option 'layers': expected integers like -2,-3, got 'abc'

:func:`parse_layers` reads hidden-state indices (``-2``, ``"-2,-3"``, ``[-2, -3]``); the :data:`Layers` field type uses it.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Mapping, Sequence

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticUndefined


class PluginOptions(BaseModel):
    """Base of every plugin's ``Options``: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class OptionsError(ValueError):
    """A plugin option (or a command-line value) is invalid; the message is one line."""


def declares_options(cls: type) -> bool:
    """True if ``cls`` declares its own ``Options`` (the base classes' ``Options`` is :class:`PluginOptions` itself)."""
    options = getattr(cls, "Options", None)
    return isinstance(options, type) and issubclass(options, BaseModel) and options is not PluginOptions


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return f"unknown option {loc!r}"
    if err.get("type") == "missing":
        return f"option {loc!r} is required"
    value = err.get("input")
    shown = (f", got {value!r}" if value is not None and not isinstance(value, dict) and "got" not in msg
             and repr(value) not in msg else "")
    return f"option {loc!r}: {msg}{shown}" if loc else f"{msg}{shown}"


def validation_message(e: ValidationError) -> str:
    """The errors of a pydantic ValidationError on one line."""
    return "; ".join(_format_error(err) for err in e.errors())


def validate_options(kind: str, name: str, cls: type, values: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """``values`` checked against ``cls.Options``: the validated model, or :class:`OptionsError`.

    The message names the plugin (``kind`` and ``name``), the field and, for an unknown key, the
    valid ones.
    """
    options_cls = getattr(cls, "Options", None) or PluginOptions
    if isinstance(values, options_cls):
        return values
    if isinstance(values, BaseModel):
        values = values.model_dump()
    try:
        return options_cls.model_validate(dict(values or {}))
    except ValidationError as e:
        message = validation_message(e)
        if any(err.get("type") == "extra_forbidden" for err in e.errors()):
            valid = ", ".join(options_cls.model_fields) or "none"
            message += f" (valid options: {valid})"
        raise OptionsError(f"{kind} {name!r}: {message}") from None


def describe_options(cls: type) -> list[dict[str, Any]]:
    """``[{name, type, default, description}]`` of ``cls.Options`` (for ``creg list``)."""
    options_cls = getattr(cls, "Options", None)
    if options_cls is None:
        return []
    rows = []
    for field_name, f in options_cls.model_fields.items():
        default = None if f.default is PydanticUndefined else f.default
        if f.default_factory is not None:
            default = f.default_factory()
        rows.append({"name": field_name, "type": _type_text(f.annotation, f.metadata), "default": default,
                     "description": f.description or ""})
    return rows


def _type_text(ann: Any, metadata: Sequence[Any] = ()) -> str:
    """A short human reading of a field's type: ``unique|largest|all``, ``int >= 1``, ``list of int``."""

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        text = "|".join(str(a) for a in args)
    elif origin in (tuple, list, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        text = "list of " + (_type_text(inner[0]) if inner else "values")
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join("none" if a is type(None) else _type_text(a) for a in args)
    else:
        text = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
    bounds = []
    for m in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sign} {getattr(m, attr)}")
    return f"{text} {', '.join(bounds)}" if bounds else text


# -- field types ----------------------------------------------------------------------------------


def parse_layers(value: Any) -> tuple[int, ...]:
    """Hidden-state indices from ``-2``, ``"-2,-3"``, ``[-2, -3]`` or ``"[-2,-3]"``; order kept, no repeats."""
    if isinstance(value, bool):
        raise ValueError(f"layers: expected integers, got {value!r}")
    if isinstance(value, int):
        items: Sequence[Any] = [value]
    elif isinstance(value, str):
        items = [p for p in value.strip().strip("[]()").replace(" ", "").split(",") if p]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"layers: expected integers like -2,-3, got {value!r}")
    try:
        if any(isinstance(x, bool) or (isinstance(x, float) and not x.is_integer()) for x in items):
            raise ValueError
        layers = tuple(dict.fromkeys(int(x) for x in items))
    except (TypeError, ValueError):
        raise ValueError(f"layers: expected integers like -2,-3, got {value!r}") from None
    if not layers:
        raise ValueError("layers: at least one layer is needed")
    return layers


def _layers_field(value: Any) -> tuple[int, ...]:
    try:
        return parse_layers(value)
    except ValueError as e:  # the field name is already in the message validate_options builds
        raise ValueError(str(e).removeprefix("layers: ")) from None


def _one_layer(value: Any) -> int:
    layers = _layers_field(value)
    if len(layers) != 1:
        raise ValueError(f"expected one layer index, got {value!r}")
    return layers[0]


#: A pydantic field type: hidden-state indices (``-2``, ``"-2,-3"``, ``[-2,-3]``) -> a tuple of ints.
Layers = Annotated[tuple[int, ...], BeforeValidator(_layers_field)]
#: A pydantic field type: one hidden-state index (``-2`` or ``"-2"``).
Layer = Annotated[int, BeforeValidator(_one_layer)]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def Choice(*values: str) -> Any:  # noqa: N802 - used like a type: ``mode: Choice("a", "b") = "a"``
    """A pydantic field type: one of ``values``, case-insensitive (``"UNIQUE"`` -> ``"unique"``)."""
    return Annotated[Literal[values], BeforeValidator(_lower)]
