"""What a relevance source needs from the model, what an adapter provides, and the check between them.

A run is checked before its directory exists: every source that needs a model must find each
:class:`Capability` it needs among those the adapter class declares, or the run is refused in one
line naming the source and what is missing (``--skip-unsupported`` drops such sources instead and
runs the rest, with a warning). The check compares two sets and knows no method and no model:

* a **source** needs what its :meth:`~creg.relevance.RelevanceSource.request` reads (the request is
  the declaration: attention maps, vision-encoder activations, hidden states with gradients), plus
  what the class declares in ``needs`` beyond it (``layer_replay`` for a source that calls
  :meth:`~creg.adapter.VLMAdapter.logits_from_layer`);
* an **adapter** provides what its class declares in ``provides``. The default, for adapters that
  declare nothing (0.1 and 0.2 adapters), is every capability, as the adapter contract's default
  ``supports_attentions = True`` assumes: such an adapter runs as it always did, and a capability it
  lacks fails per sample at run time. An adapter that lacks one declares the smaller set.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from .run_config import RunError

if TYPE_CHECKING:  # pragma: no cover - these pull in torch
    from .relevance import RelevanceSource, SourceRequest


class Capability(str, Enum):
    """One thing a forward pass can give a source (its value is the name messages and docs use)."""

    #: hidden states of decoder layers with gradients attached (``ForwardRequest.layers``).
    LAYER_GRADIENTS = "layer_gradients"
    #: the decoder replayed from a layer with a substituted hidden state (``logits_from_layer``).
    LAYER_REPLAY = "layer_replay"
    #: the vision encoder's activations with gradients (``ForwardRequest.vision_activations``).
    VISION_ACTIVATIONS = "vision_activations"
    #: per-layer attention maps streamed to a callback (``ForwardRequest.attentions``).
    ATTENTION_MAPS = "attention_maps"

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[Capability, str] = {
    Capability.LAYER_GRADIENTS: "decoder hidden states with gradients",
    Capability.LAYER_REPLAY: "a replay of the decoder from a layer",
    Capability.VISION_ACTIVATIONS: "vision-encoder activations with gradients",
    Capability.ATTENTION_MAPS: "attention maps",
}

#: Every capability: what an adapter that declares nothing is taken to provide.
ALL_CAPABILITIES: frozenset[Capability] = frozenset(Capability)


def requested_capabilities(request: "SourceRequest") -> frozenset[Capability]:
    """The capabilities a :class:`~creg.relevance.SourceRequest` reads."""
    needs: set[Capability] = set()
    if request.layers or any(g.layers for g in request.gradients):
        needs.add(Capability.LAYER_GRADIENTS)
    if request.vision_activations or any(g.vision for g in request.gradients):
        needs.add(Capability.VISION_ACTIVATIONS)
    if request.attentions:
        needs.add(Capability.ATTENTION_MAPS)
    return frozenset(needs)


def source_needs(source: "RelevanceSource") -> frozenset[Capability]:
    """What ``source`` (built, with its options) needs: its request's reads and its class's ``needs``.
    Nothing for a source that runs without a model."""
    from .relevance import SourceRequest

    if not getattr(source, "needs_model", True):
        return frozenset()
    declared = frozenset(Capability(c) for c in getattr(type(source), "needs", frozenset()))
    try:
        requested = requested_capabilities(SourceRequest.of(source.request()))
    except ValueError:  # a request that is resolved later (creg.layers=auto): the class's needs stand for it
        requested = frozenset()
    return declared | requested


def adapter_provides(adapter_cls: type) -> frozenset[Capability]:
    """What adapter class ``adapter_cls`` declares it provides (every capability when it declares nothing)."""
    return frozenset(Capability(c) for c in getattr(adapter_cls, "provides", ALL_CAPABILITIES))


class Unsupported(BaseModel):
    """A source and the capabilities it needs that the adapter does not provide."""

    model_config = ConfigDict(frozen=True)

    source: str
    missing: tuple[Capability, ...]

    def describe(self) -> str:
        """``'attention_rollout' needs attention maps (attention_maps)``."""
        what = ", ".join(f"{c.description} ({c.value})" for c in self.missing)
        return f"{self.source!r} needs {what}"


def unsupported_sources(adapter_cls: type, sources: Iterable["RelevanceSource"]) -> list[Unsupported]:
    """The sources that need something ``adapter_cls`` does not provide, in the given order."""
    provides = adapter_provides(adapter_cls)
    out = []
    for s in sources:
        missing = sorted(source_needs(s) - provides, key=list(Capability).index)
        if missing:
            out.append(Unsupported(source=s.name, missing=tuple(missing)))
    return out


def refusal(adapter_name: str, adapter_cls: type, gaps: Sequence[Unsupported], *, option: str | None = None) -> str:
    """One line: which sources need what adapter ``adapter_name`` does not provide, and what to do."""
    who = f"adapter {adapter_name!r} ({adapter_cls.__name__})"
    what = "; ".join(g.describe() for g in gaps)
    names = ", ".join(g.source for g in gaps)
    fix = f"drop {names} from the sources" + (f" or pass {option} to run the others" if option else "")
    return f"source {what}, which {who} does not provide: {fix}"


def drop_message(adapter_name: str, adapter_cls: type, gaps: Sequence[Unsupported], kept: Sequence[str]) -> str:
    """The warning of a run that drops its unsupported sources."""
    what = "; ".join(g.describe() for g in gaps)
    return (f"skipping: source {what}, which adapter {adapter_name!r} ({adapter_cls.__name__}) does not provide; "
            f"running {', '.join(kept)}")


def check_sources(adapter_name: str, adapter_cls: type | None, sources: Sequence["RelevanceSource"], *,
                  skip_unsupported: bool = False, option: str | None = "--skip-unsupported",
                  warn=None) -> list["RelevanceSource"]:
    """The sources a run keeps: all of them when ``adapter_cls`` provides what each needs (or no
    model runs). Otherwise :class:`UnsupportedSources` (one line naming each source and what it
    misses), or, with ``skip_unsupported``, the others and a warning through ``warn``; when none
    is left that is an error too."""
    if adapter_cls is None:
        return list(sources)
    gaps = unsupported_sources(adapter_cls, sources)
    if not gaps:
        return list(sources)
    if not skip_unsupported:
        raise UnsupportedSources(refusal(adapter_name, adapter_cls, gaps, option=option))
    dropped = {g.source for g in gaps}
    kept = [s for s in sources if s.name not in dropped]
    if not kept:
        raise UnsupportedSources(refusal(adapter_name, adapter_cls, gaps) + "; no other source is left to run")
    if warn is not None:
        warn(drop_message(adapter_name, adapter_cls, gaps, [s.name for s in kept]))
    return kept


class UnsupportedSources(RunError):
    """A source needs a capability the run's adapter does not provide (a :class:`creg.run_config.RunError`)."""
