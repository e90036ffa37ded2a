"""What a run is: its configuration (``config.json``'s ``run``), and how its names resolve to
plugins (the adapter and its loading config, the sources, the benchmark).

Everything here runs before a run directory is touched, so a bad value fails before anything
is written: every field of :class:`RunConfig` is validated when it is built, and every plugin's
options are validated against the plugin's ``Options`` (:mod:`creg.plugins.options`) when it resolves.
Errors are :class:`RunError` / :class:`creg.plugins.options.OptionsError` with a one-line message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from creg.config.placement import DeviceMapField, MaxMemoryField
from creg.core.errors import RunError
from creg.core.prompts import resolve_template

if TYPE_CHECKING:  # pragma: no cover - imported lazily: these pull in torch
    pass

NO_MODEL = "none"
#: devices a model can be put on: auto, cpu, mps, meta or an accelerator type with an optional index.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|meta|(cuda|xpu|npu|hpu|mtia)(:\d+)?)$")
#: the largest ``--seed`` (numpy's and torch's seeds are 32-bit unsigned).
MAX_SEED = 2**32 - 1
#: the most threads ``--threads`` accepts.
MAX_THREADS = 1024
#: the dtypes a model can be loaded in (``--dtype``; auto: bfloat16 on CUDA, float32 on the CPU).
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: how ``--cos`` occludes a sector (``--cos-op``, creg.explain.occlusion); grey is the paper's.
COS_OPERATORS = ("grey", "blur", "patch_drop")


def check_device(device: str | None) -> str | None:
    """``device`` if torch can name it (auto, cpu, cuda, cuda:1, mps, ...), else ValueError."""
    if device is None or DEVICE_PATTERN.match(device):
        return device
    raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N, mps or xpu")


def check_prompt(prompt: str | None) -> str | None:
    """``prompt`` if it is a template name (A, B, C) or a template with {ref} and {tgt}, else ValueError."""
    if prompt is not None:
        resolve_template(prompt)
    return prompt


class RunConfig(BaseModel):
    """Everything that determines a run's results (``config.json``)."""

    model_config = ConfigDict(validate_assignment=True)

    adapter: str = NO_MODEL
    model: str | None = None  # overrides the preset's model (hub id or local dir)
    dtype: Literal[DTYPES] | None = None
    device: str | None = None
    prompt: str | None = None
    adapter_options: dict[str, Any] = Field(default_factory=dict)  # --adapter-opt, over the preset's options
    sources: list[str] = Field(default_factory=lambda: ["oracle", "random"], min_length=1)
    source_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    bench: str = "synthetic"
    bench_options: dict[str, Any] = Field(default_factory=dict)
    n: int | None = Field(None, ge=0)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data_dir: str | None = None
    k: int = Field(8, ge=1, le=360)
    sigma_r: float = Field(0.6, gt=0, allow_inf_nan=False)
    rho_r: float = Field(2.0, gt=0, allow_inf_nan=False)
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = 1  # "auto": creg.execution.batching.resolve_batch_size
    cos: bool = False  # causal occlusion (Eq. 8) per sample and source, see creg.explain.occlusion
    cos_op: Literal[COS_OPERATORS] = "grey"
    registry: list[str] = Field(default_factory=list)
    #: torch intra-op threads; None = :func:`default_threads` (the CLI stores the number it used).
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)
    #: accelerate's placement of a model over several devices (creg.config.placement), passed to the adapter
    #: as its options ``device_map`` / ``max_memory``; None: the whole model on ``device``.
    device_map: DeviceMapField = None
    max_memory: MaxMemoryField = None
    #: controls run after the samples (creg.execution.blank_control): "blank" = the same samples with the objects removed,
    #: into RUN_DIR/blank. Not part of the identity: a control never changes the run's own records.
    controls: list[Literal["blank"]] = Field(default_factory=list)
    #: store every finished sample's relevance maps in the run (creg.store.maps), so that the report and
    #: the gallery draw heatmaps without the model; not part of the identity (results do not depend on it)
    save_maps: bool = True

    @model_validator(mode="after")
    def _placement(self) -> "RunConfig":
        mapped = self.device_map is not None or self.adapter_options.get("device_map") is not None
        if self.max_memory is not None and not mapped:
            raise ValueError("--max-memory caps what a device map puts on each device: give --device-map too "
                             "(e.g. --device-map auto)")
        if self.device_map is not None and self.device not in (None, "auto"):
            raise ValueError(f"--device {self.device} and --device-map both given: the device map places the "
                             "model (drop --device)")
        for key in ("device_map", "max_memory"):
            if getattr(self, key) is not None and key in self.adapter_options:
                raise ValueError(f"--{key.replace('_', '-')} and --adapter-opt {key}=... both given: use one")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return check_device(v)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | None) -> str | None:
        return check_prompt(v)

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, v: list[str]) -> list[str]:
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"sources named more than once: {', '.join(repeated)}")
        return v

    @classmethod
    def checked(cls, **values: Any) -> "RunConfig":
        """Build a config; a bad value raises :class:`RunError` with one line naming the field."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise RunError(config_error_message(e)) from None

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the stored one (device, threads and placement are
        checked as resolved: config.json's ``adapter.device``, ``environment.threads``, ``adapter.options``)."""
        return self.model_dump(exclude={"registry", "device", "threads", "device_map", "max_memory", "controls",
                                        "save_maps"})

    def placement(self) -> dict[str, Any]:
        """The adapter options ``--device-map`` and ``--max-memory`` set (only those given)."""
        return {k: v for k, v in (("device_map", self.device_map), ("max_memory", self.max_memory)) if v is not None}


#: RunConfig fields whose command-line flag is not --FIELD.
_FLAGS = {"n": "--limit", "sources": "--source", "registry": "--registry", "adapter_options": "--adapter-opt",
          "source_options": "--source-opt", "bench_options": "--bench-opt", "controls": "--control"}


def config_error_message(e: ValidationError) -> str:
    """A RunConfig ValidationError on one line, each field named by its command-line flag."""
    parts = []
    for err in e.errors():
        field = str(err["loc"][0]) if err.get("loc") else ""
        flag = _FLAGS.get(field, "--" + field.replace("_", "-")) if field else ""
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        value = err.get("input")
        got = f", got {value!r}" if "got" not in msg and repr(value) not in msg and not isinstance(value, dict) else ""
        parts.append(f"{flag}: {msg}{got}" if flag else msg)
    return "; ".join(parts)


# -- threads ------------------------------------------------------------------------------------------
