"""What the checkpoint itself does, for the contract to compare an adapter with.

An adapter reimplements three things its checkpoint already defines; the contract
(:mod:`creg.testing.adapter_contract`) compares each with the checkpoint's own version rather
than with the adapter's:

* the conversation text: the checkpoint's chat template (:func:`checkpoint_chat_template`,
  the template file a processor uses before the tokenizer's own);
* the input ids: the checkpoint's processor (``AutoProcessor.from_pretrained``), where it can be
  built here (:func:`checkpoint_processor`, :func:`processor_inputs`); where it cannot (e.g. it needs torchvision)
  the adapter's reference path is used and the contract says so;
* the vision activations GradCAM reads: the input of the module through which the model's own
  image-feature path reads the vision tower (:func:`module_input`, e.g. the projector).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from creg.hf.chat_inputs import local_chat_template, special_tokens_kwargs


def checkpoint_chat_template(model: str, tokenizer=None) -> str | None:
    """The chat template the checkpoint ships: ``chat_template.jinja`` / ``.json`` (a local
    directory or a hub id's cached file), else the tokenizer's; None when it ships none."""
    template = local_chat_template(model)
    if template is None and not Path(model).is_dir():
        from transformers.utils import cached_file  # lazy: transformers

        for name in ("chat_template.jinja", "chat_template.json"):
            try:
                path = cached_file(model, name, _raise_exceptions_for_missing_entries=False)
            except (OSError, ValueError):
                path = None
            if path:
                text = Path(path).read_text()
                template = json.loads(text)["chat_template"] if name.endswith(".json") else text
                break
    return template or getattr(tokenizer, "chat_template", None)


def checkpoint_processor(model: str):
    """The checkpoint's processor (``AutoProcessor.from_pretrained``), left-padding; raises what
    building it raises (ImportError without torchvision, OSError, ValueError, TypeError)."""
    from transformers import AutoProcessor  # lazy: transformers

    processor = AutoProcessor.from_pretrained(model)
    processor.tokenizer.padding_side = "left"
    return processor


def processor_inputs(processor, texts: Sequence[str], images: Sequence[Any], *, nested_images: bool = False,
                     call_kwargs: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """``processor`` applied to ``texts`` and ``images`` (one list per sample with ``nested_images``),
    without a second BOS token as the model card's ``apply_chat_template(..., tokenize=True)`` does."""

    batch_images = [[im] for im in images] if nested_images else list(images)
    return dict(processor(text=list(texts), images=batch_images, padding=True, return_tensors="pt",
                          **special_tokens_kwargs(processor.tokenizer, texts), **(call_kwargs or {})).items())


def module_input(model: nn.Module, module: nn.Module, run: Callable[[], Any]) -> Any:
    """The first positional input ``module`` receives while ``run()`` runs ``model`` (its first call)."""
    seen: list[Any] = []

    def hook(mod, args, kwargs):
        if not seen:
            seen.append(args[0] if args else next(iter(kwargs.values())))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    if not seen:
        raise RuntimeError(f"{type(module).__name__} was not called during the forward pass")
    return seen[0]
