"""What a relevance source needs from the model and what an adapter provides (the check between them is
:mod:`creg.plugins.compatibility`).

A run is checked before its directory exists: every source that needs a model must find each
:class:`Capability` it needs among those the adapter class declares, or the run is refused in one
line naming the source and what is missing (``--skip-unsupported`` drops such sources instead and
runs the rest, with a warning). The check compares two sets and knows no method and no model:

* a **source** needs what its :meth:`~creg.plugins.relevance.RelevanceSource.request` reads (the request is
  the declaration: attention maps, vision-encoder activations, hidden states with gradients), plus
  what the class declares in ``needs`` beyond it (``layer_replay`` for a source that calls
  :meth:`~creg.plugins.adapter.VLMAdapter.logits_from_layer`);
* an **adapter** provides what its class declares in ``provides``. The default, for adapters that
  declare nothing (0.1 and 0.2 adapters), is every capability, as the adapter contract's default
  ``supports_attentions = True`` assumes: such an adapter runs as it always did, and a capability it
  lacks fails per sample at run time. An adapter that lacks one declares the smaller set.
"""

from __future__ import annotations

from enum import Enum


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


def adapter_provides(adapter_cls: type) -> frozenset[Capability]:
    """What adapter class ``adapter_cls`` declares it provides (every capability when it declares nothing)."""
    return frozenset(Capability(c) for c in getattr(adapter_cls, "provides", ALL_CAPABILITIES))
