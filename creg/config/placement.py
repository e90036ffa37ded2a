"""Placing a model larger than one device: ``--device-map`` and ``--max-memory``, checked and normalised.

A *device map* says where a model's layers go. It is passed to transformers'
``from_pretrained(device_map=...)``, which hands it to accelerate (Hugging Face's big-model
loading): a strategy (``auto``, ``balanced``, ``balanced_low_0``, ``sequential``) that fills the
visible GPUs, then the CPU, in layer order; or an explicit ``{module name: device}`` dict
(``{"model.language_model.layers.0": 0, ..., "lm_head": "cpu"}``). ``max_memory`` caps what a
strategy may put on each device: ``{"0": "70GiB", "1": "70GiB", "cpu": "200GiB"}`` (GPU indices,
``cpu``, ``mps``; sizes in bytes or with a unit, KB/MB/GB/TB or KiB/MiB/GiB/TiB).

Everything here is pure checking, no torch: it runs before a run directory is touched
(:class:`creg.config.run_config.RunConfig`) and again where an adapter validates its options
(:class:`creg.hf.HFAdapter.Options`). Values are normalised so that ``config.json`` round-trips
them unchanged (dict keys are strings; a resume compares them): a map's GPU devices are ints,
``max_memory``'s keys are ``"0"``, ``"1"``, ``"cpu"``, ``"mps"``. :func:`accelerate_max_memory`
turns a normalised ``max_memory`` into what accelerate takes (int GPU keys, sizes in bytes).

Disk offload (accelerate's ``"disk"``) is refused: every sample runs the offloaded layers with
gradients, and reading their weights from disk each time is slower than any GPU run is worth.
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Annotated, Any, Callable, Mapping

from pydantic import BeforeValidator

#: accelerate's placement strategies (``from_pretrained(device_map=...)``).
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
#: one device of a device map: a GPU index, cpu, mps, or an accelerator with an optional index.
_MAP_DEVICE = re.compile(r"^(\d+|cpu|mps|(cuda|xpu|npu|hpu|mlu|musa)(:\d+)?)$")
#: a key of max_memory: a GPU index (``cuda:N`` accepted and written as ``N``), cpu or mps.
_MEMORY_KEY = re.compile(r"^(?:(?:cuda|xpu|npu|hpu|mlu|musa):)?(\d+)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_NO_DISK = ("disk offload is not supported (every sample would read the offloaded weights from disk): "
            "give the model GPU or CPU memory instead")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object, got {text!r}")
    return value


def check_device_map(value: Any) -> str | dict[str, int | str] | None:
    """``value`` as a device map: a strategy name, or a ``{module: device}`` dict (a dict or its
    JSON text); GPU devices as ints. ValueError (one line) for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = _json_object(text, "device map")
        elif text in STRATEGIES:
            return text
        else:
            raise ValueError(f"expected {', '.join(STRATEGIES)} or a JSON object {{module: device}}, got {value!r}")
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {', '.join(STRATEGIES)} or a JSON object {{module: device}}, got {value!r}")
    if not value:
        raise ValueError("the device map is empty: name at least one module (\"\" is the whole model)")
    out: dict[str, int | str] = {}
    for module, device in value.items():
        if not isinstance(module, str):
            raise ValueError(f"device map module names are strings, got {module!r}")
        if isinstance(device, bool) or not isinstance(device, (int, str)):
            raise ValueError(f"{module!r}: expected a device (0, 1, cpu, cuda:1, ...), got {device!r}")
        text = str(device).strip()
        if text == "disk":
            raise ValueError(f"{module!r} -> disk: {_NO_DISK}")
        if not _MAP_DEVICE.match(text) or (isinstance(device, int) and device < 0):
            raise ValueError(f"{module!r}: unknown device {device!r}: use a GPU index (0, 1, ...), cpu, "
                             "mps or cuda:N")
        out[module] = int(text) if text.isdigit() else text
    return out


def parse_size(value: Any) -> int:
    """Bytes of a memory size: an int, or a number with a unit (``70GiB``, ``500MB``, ``1.5TiB``).
    ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}: expected bytes or a number with a unit such as 70GiB or 500MB")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"bad size {value!r}: must be positive")
        return value
    m = _SIZE.match(str(value)) if isinstance(value, (str, float)) else None
    if m is None:
        raise ValueError(f"bad size {value!r}: expected bytes or a number with a unit such as 70GiB or 500MB")
    size = int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])
    if size <= 0:
        raise ValueError(f"bad size {value!r}: must be positive")
    return size


def check_max_memory(value: Any) -> dict[str, int | str] | None:
    """``value`` as a per-device memory cap: a dict, its JSON text, or ``0=70GiB,1=70GiB,cpu=200GiB``.
    Keys normalised to ``"0"``, ``"1"``, ..., ``"cpu"``, ``"mps"`` (``cuda:N`` -> ``"N"``); sizes kept as
    given (stripped) once :func:`parse_size` accepts them. ValueError (one line) otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = _json_object(text, "max memory")
        else:
            pairs: dict[str, Any] = {}
            for item in (p.strip() for p in text.split(",")):
                key, eq, size = item.partition("=")
                if not eq or not key.strip() or not size.strip():
                    raise ValueError(f"{item!r}: expected DEVICE=SIZE, e.g. 0=70GiB,1=70GiB,cpu=200GiB")
                pairs[key.strip()] = size.strip()
            value = pairs
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"expected DEVICE=SIZE pairs, e.g. 0=70GiB,cpu=200GiB (or a JSON object), got {value!r}")
    out: dict[str, int | str] = {}
    for key, size in value.items():
        name = str(key).strip()
        m = _MEMORY_KEY.match(name)
        if isinstance(key, bool) or (isinstance(key, int) and key < 0):
            m = None
        if name == "disk":
            raise ValueError(f"disk: {_NO_DISK}")
        if m is None and name not in ("cpu", "mps"):
            raise ValueError(f"unknown device {key!r}: use GPU indices (0, 1, ...), cpu or mps")
        norm = m.group(1) if m else name
        if norm in out:
            raise ValueError(f"device {norm!r} given twice")
        try:
            parse_size(size)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        out[str(int(norm)) if norm.isdigit() else norm] = size.strip() if isinstance(size, str) else size
    return out



#: A pydantic field type for a device map (RunConfig, HFAdapter.Options): checked by :func:`check_device_map`.
DeviceMapField = Annotated[str | dict[str, int | str] | None, BeforeValidator(check_device_map)]
#: A pydantic field type for per-device memory caps: checked by :func:`check_max_memory`.
MaxMemoryField = Annotated[dict[str, int | str] | None, BeforeValidator(check_max_memory)]


def accelerate_max_memory(max_memory: Mapping[str, Any] | None) -> dict[int | str, int] | None:
    """A normalised ``max_memory`` as accelerate takes it: int GPU keys, sizes in bytes."""
    if max_memory is None:
        return None
    return {(int(k) if str(k).isdigit() else k): parse_size(v) for k, v in check_max_memory(max_memory).items()}


def rank_max_memory(device_map: str | Mapping[str, Any], max_memory: Mapping[str, Any] | None, *, local_rank: int,
                    local_size: int, n_gpus: int, gpu_free: Callable[[int], int], cpu_free: int) -> dict[str, Any]:
    """The ``max_memory`` of one of ``local_size`` processes on a machine of ``n_gpus`` GPUs (torchrun
    with several ranks per machine, each with a device map): rank ``local_rank`` gets GPUs
    ``local_rank * k .. local_rank * k + k - 1``, ``k = n_gpus // local_size``, so that the replicas
    never share a GPU.

    ``max_memory`` (normalised) keeps its meaning: GPU keys name GPUs by their machine index and
    limit the rank to those of its share that are named (their caps); without GPU keys every GPU
    of the share may be filled up to ``gpu_free(g)`` bytes. The CPU: the given ``cpu`` cap (per rank),
    none when ``max_memory`` names no ``cpu``, or 90% of ``cpu_free`` divided among the ranks when
    no ``max_memory`` is given (transformers gives one process 90% of it). An explicit
    ``{module: device}`` map cannot be shared out (every rank would use the same GPUs): ValueError.
    """
    if not isinstance(device_map, str):
        raise ValueError(f"an explicit {{module: device}} map would put all {local_size} ranks on this machine on the "
                         "same GPUs: use a strategy (auto, balanced, ...), which gives each rank its share of the GPUs, "
                         "or one rank per machine")
    k = n_gpus // local_size
    if k < 1:
        raise ValueError(f"{local_size} ranks on this machine but {n_gpus} GPU(s): a device map needs at least one GPU "
                         "per rank (fewer ranks per machine, or no device map)")
    share = range(local_rank * k, local_rank * k + k)
    given = {} if max_memory is None else dict(check_max_memory(max_memory))
    named = [int(key) for key in given if key.isdigit()]
    gpus = [g for g in share if g in named] if named else list(share)
    if not gpus:
        raise ValueError(f"--max-memory names GPUs {sorted(named)}, none of them in this rank's share "
                         f"{list(share)} (rank {local_rank} of {local_size} on {n_gpus} GPUs)")
    out: dict[str, Any] = {str(g): given.get(str(g), gpu_free(g)) for g in gpus}
    if max_memory is None:
        out["cpu"] = max(1, int(0.9 * cpu_free) // local_size)  # transformers' 90% of the free CPU memory, shared
    else:
        out.update({key: given[key] for key in ("cpu", "mps") if key in given})
    return out


def require_accelerate() -> None:
    """RuntimeError (one line) unless accelerate, which places the layers, is importable."""
    if importlib.util.find_spec("accelerate") is None:
        raise RuntimeError("a device map needs accelerate, Hugging Face's big-model loading: "
                           "pip install 'creg[big]' (or pip install accelerate)")
