"""Finding the parts of a Hugging Face VLM that creg hooks: decoder blocks, final norm, head.

Every decoder-only language model in transformers has a stack of blocks (``layers``), a final
norm (``norm``) and an output head (``lm_head``, the output embeddings). In a VLM the stack
sits inside the language model (``model.model.language_model`` in transformers 5), which
``get_decoder()`` returns. With ``device_map`` loading the parts may live on different devices:
:func:`module_device` says where each one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn


@dataclass(frozen=True)
class DecoderParts:
    """The decoder of a causal LM: ``layers[i]`` is block i (0-based), then ``norm``, then ``head``."""

    layers: nn.ModuleList
    norm: nn.Module
    head: nn.Module

    def __len__(self) -> int:
        return len(self.layers)


def _execution_device(hook) -> torch.device | None:
    """The device an accelerate hook runs its module on (``AlignDevicesHook.execution_device``,
    also inside a ``SequentialHook``), or None."""
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    for inner in getattr(hook, "hooks", ()) or ():
        found = _execution_device(inner)
        if found is not None:
            return found
    return None


def module_device(module: nn.Module) -> torch.device:
    """Where ``module`` runs: the execution device of accelerate's hook on it or on its first
    hooked submodule (a device map's offloaded layers keep their weights on the ``meta`` device and
    run on that one), else the device of its first parameter (or buffer) not on ``meta``; CPU for
    a module without either."""
    for m in module.modules():
        hook = getattr(m, "_hf_hook", None)
        if hook is not None:
            device = _execution_device(hook)
            if device is not None:
                return device
    for tensor in chain(module.parameters(), module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


def find_decoder(model: nn.Module) -> DecoderParts:
    """The decoder blocks, final norm and head of ``model`` (a ``*ForConditionalGeneration``).

    Uses ``model.get_decoder()`` (the language model) and ``model.get_output_embeddings()``;
    raises a clear error naming the model class when one of them is missing.
    """
    name = type(model).__name__
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    norm = getattr(decoder, "norm", None)
    if not isinstance(layers, nn.ModuleList) or norm is None:
        raise TypeError(
            f"{name}.get_decoder() has no `layers` ModuleList and `norm`: creg.hf expects a decoder-only "
            "language model (override HFAdapter.decoder_parts for another layout)"
        )
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise TypeError(f"{name} has no output embeddings (lm_head)")
    return DecoderParts(layers=layers, norm=norm, head=head)
