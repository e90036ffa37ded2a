"""The check between a run's sources and its adapter: each source's needs against the capabilities the adapter
class provides (:mod:`creg.plugins.capabilities`), refused in one line or, with ``--skip-unsupported``, dropped
with a warning."""

from __future__ import annotations

from typing import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from creg.core.errors import RunError
from creg.plugins.capabilities import (
    Capability,
    adapter_provides,
)
from creg.plugins.relevance import RelevanceSource, SourceRequest


def requested_capabilities(request: SourceRequest) -> frozenset[Capability]:
    """The capabilities a :class:`~creg.plugins.relevance.SourceRequest` reads."""
    needs: set[Capability] = set()
    if request.layers or any(g.layers for g in request.gradients):
        needs.add(Capability.LAYER_GRADIENTS)
    if request.vision_activations or any(g.vision for g in request.gradients):
        needs.add(Capability.VISION_ACTIVATIONS)
    if request.attentions:
        needs.add(Capability.ATTENTION_MAPS)
    return frozenset(needs)


def source_needs(source: RelevanceSource) -> frozenset[Capability]:
    """What ``source`` (built, with its options) needs: its request's reads and its class's ``needs``.
    Nothing for a source that runs without a model."""
    if not getattr(source, "needs_model", True):
        return frozenset()
    declared = frozenset(Capability(c) for c in getattr(type(source), "needs", frozenset()))
    try:
        requested = requested_capabilities(SourceRequest.of(source.request()))
    except ValueError:  # a request that is resolved later (creg.layers=auto): the class's needs stand for it
        requested = frozenset()
    return declared | requested


class Unsupported(BaseModel):
    """A source and the capabilities it needs that the adapter does not provide."""

    model_config = ConfigDict(frozen=True)

    source: str
    missing: tuple[Capability, ...]

    def describe(self) -> str:
        """``'attention_rollout' needs attention maps (attention_maps)``."""
        what = ", ".join(f"{c.description} ({c.value})" for c in self.missing)
        return f"{self.source!r} needs {what}"


def unsupported_sources(adapter_cls: type, sources: Iterable[RelevanceSource]) -> list[Unsupported]:
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


def check_sources(adapter_name: str, adapter_cls: type | None, sources: Sequence[RelevanceSource], *,
                  skip_unsupported: bool = False, option: str | None = "--skip-unsupported",
                  warn=None) -> list[RelevanceSource]:
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
    """A source needs a capability the run's adapter does not provide (a :class:`creg.core.errors.RunError`)."""
