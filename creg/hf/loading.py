"""Loading a transformers model the way every creg adapter does: frozen, eval, chosen dtype.

``device`` is where a single-device model runs (``auto``: CUDA when available). With
``device_map`` (e.g. ``"auto"``, accelerate's big-model loading) transformers places the
blocks itself and ``device`` is ignored; creg's hooks and replay then follow each block's
device (:mod:`creg.hf.capture`, :mod:`creg.hf.replay`).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from creg.config.placement import (
    accelerate_max_memory,
    check_device_map,
    rank_max_memory,
    require_accelerate,
)
from creg.core import logs
from creg.core.sample import Sample
from creg.hf.explainable import refuse_cross_attention

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def load_model(model_class: Any, name: str, *, device: str, dtype: str, attn_implementation: str,
               device_map: str | dict[str, Any] | None = None, max_memory: dict[str, Any] | None = None):
    """``model_class.from_pretrained(name)`` frozen and in eval mode.

    ``model_class``: a transformers class or its name (``"LlavaForConditionalGeneration"``).
    ``device_map`` / ``max_memory``: accelerate's placement (:mod:`creg.config.placement`; normalised
    values, converted here to what accelerate takes); ``device`` then only decides what dtype
    ``auto`` means (bfloat16 when CUDA is visible), as config.json records it.
    A decoder that cross-attends to the image is refused (:mod:`creg.hf.explainable`).
    """
    if isinstance(model_class, str):
        import transformers  # lazy: transformers

        model_class = getattr(transformers, model_class)
    target = resolve_device(device)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype, target), "attn_implementation": attn_implementation}
    if device_map is not None:

        require_accelerate()
        kwargs["device_map"] = check_device_map(device_map)
        max_memory = _this_ranks_share(kwargs["device_map"], max_memory)
        if max_memory is not None:
            kwargs["max_memory"] = accelerate_max_memory(max_memory)
    elif max_memory is not None:
        raise ValueError("max_memory needs a device_map")

    config_class = getattr(model_class, "config_class", None)
    if config_class is not None:  # refuse a cross-attending decoder before its weights load
        refuse_cross_attention(name, config=config_class.from_pretrained(name))
    model = model_class.from_pretrained(name, **kwargs)
    refuse_cross_attention(name, model=model)
    if device_map is None:
        model.to(target)
    else:
        _log_placement(model)
    return model.eval().requires_grad_(False)


def _this_ranks_share(device_map, max_memory):
    """``max_memory`` limited to this process's share of the GPUs when torchrun started several
    processes on this machine (``LOCAL_WORLD_SIZE`` > 1; :func:`creg.config.placement.rank_max_memory`)."""

    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if local_size <= 1 or not torch.cuda.is_available():
        return max_memory
    import psutil  # accelerate's own dependency  # lazy: optional psutil


    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    share = rank_max_memory(device_map, max_memory, local_rank=local_rank, local_size=local_size,
                            n_gpus=torch.cuda.device_count(), gpu_free=lambda g: torch.cuda.mem_get_info(g)[0],
                            cpu_free=psutil.virtual_memory().available)
    gpus = [int(k) for k in share if k.isdigit()]
    torch.cuda.set_device(gpus[0])  # this rank's default CUDA device is in its share (torchrun's LOCAL_RANK may not be)
    logs.info(f"rank {local_rank} of {local_size} on this machine: device map over GPUs {', '.join(map(str, gpus))}")
    return share


def _log_placement(model) -> None:
    """One log line: how many modules of the device map went to each device."""
    placed = getattr(model, "hf_device_map", None)
    if not placed:
        return

    counts: dict[str, int] = {}
    for device in placed.values():
        counts[str(device)] = counts.get(str(device), 0) + 1
    logs.info("device map: " + ", ".join(f"{n} module{'s' * (n != 1)} on {'cuda:' + d if d.isdigit() else d}"
                                         for d, n in counts.items()))


def load_images(samples: Sequence[Sample], images: Sequence[Any] | None) -> list[Any]:
    """The samples' RGB images (or ``images`` in their place), checked against ``image_size``."""
    if images is not None and len(images) != len(samples):
        raise ValueError(f"got {len(images)} images for {len(samples)} samples")
    loaded = [s.load_image() for s in samples] if images is None else [im.convert("RGB") for im in images]
    for s, im in zip(samples, loaded):
        if tuple(im.size) != tuple(s.image_size):
            raise ValueError(
                f"sample {s.id!r}: the image is {im.size[0]}x{im.size[1]} but image_size says "
                f"{s.image_size[0]}x{s.image_size[1]}; boxes and cell centres would not match the pixels"
            )
    return loaded
