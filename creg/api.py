"""The Python API: a model in one line, an explained image in one more, a run, its tidy tables.

::

    import creg
    m = creg.load("qwen2vl-toy")                       # a preset, a hub id or a local directory
    ex = m.explain("scene.png", ref=("cup", (10, 20, 60, 80)), tgt=("bottle", (120, 30, 170, 90)),
                   sources=["creg", "attention_rollout"])
    ex["creg"].dae, ex.answer, ex.plot("scene-explained.png")
    summary = creg.run(sources=["creg", "random"], n=20, out="runs/quick")
    frames = creg.read_run("runs/quick")               # pandas DataFrames (pip install 'creg[frames]')

The command line is a thin layer over these functions: ``creg explain`` loads through :func:`load_config` and
calls :meth:`Model.explain`. ``creg run``, :func:`run` and :func:`load` turn what they were given into a
:class:`creg.config.run_config.RunConfig` through the one resolver, :func:`creg.config.resolve.resolve_run_config`,
so the same names and values mean the same run everywhere; their defaults are RunConfig's fields' and
:mod:`creg.config.defaults`' (:data:`RUN_DEFAULTS` lists them for :func:`run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import UnidentifiedImageError
from pydantic import ValidationError

from creg.config.defaults import (  # noqa: F401 (DEFAULT_MODEL, default_out: public API names)
    DEFAULT_EXPLAIN_SOURCES,
    DEFAULT_MODEL,
    default_out,
    field_default,
    run_defaults,
)
from creg.config.hub import check_available
from creg.config.presets import load_registry
from creg.config.resolve import build_sources, resolve_adapter, resolve_run_config
from creg.config.run_config import NO_MODEL, RunConfig
from creg.core.box_formats import BoxFormatError, fits_xywh, to_xyxy, xywh_hint
from creg.core.errors import RunError
from creg.core.images import open_rgb, size_problem, to_rgb
from creg.core.logs import info
from creg.core.relation_check import contradiction
from creg.core.sample import (
    RELATIONS,
    Box,
    InvalidSample,
    make_sample,
    relation_from_boxes,
)
from creg.execution.backends import executor_for, world_from_env
from creg.execution.runner import Runner
from creg.execution.threads import apply_threads
from creg.explain.samples import SourceExplanation, explain_samples
from creg.plugins.compatibility import UnsupportedSources, check_sources
from creg.plugins.manager import UnknownName, get_plugins
from creg.report import figures as fg
from creg.report.frames import read_run as _read

BoxLike = Any  # creg.Box or (x0, y0, x1, y1) in pixels
ObjectLike = Any  # (name, box)


class ApiError(ValueError):
    """Bad input to the Python API; the message says what and how to fix it."""


# -- loading a model ------------------------------------------------------------------------------------

def load(model: str = DEFAULT_MODEL, *, adapter: str | None = None, dtype: str | None = None,
         device: str | None = None, prompt: str | None = None, registry: Iterable[str | Path] = (),
         **options: Any) -> "Model":
    """Load a model for :meth:`Model.explain`.

    ``model``: a preset name (``creg list``), ``"none"`` (geometry-only sources), a local directory
    in ``save_pretrained`` layout or a hub id. ``adapter``: the adapter plugin for a directory or hub
    id (inferred from its ``config.json`` when omitted), or a preset whose settings to use with this
    ``model``. ``dtype``/``device``/``prompt`` override
    the preset's; every other keyword is an adapter option (``AdapterConfig.options``), e.g.
    ``device_map="auto", max_memory={0: "70GiB", 1: "70GiB", "cpu": "200GiB"}`` for a model larger
    than one GPU (adapters built on ``creg.hf.HFAdapter``; docs/distributed.md). The names resolve as
    ``creg run --adapter ADAPTER --model MODEL`` resolves them (:func:`creg.config.resolve.choose_adapter`).
    """

    plugins = get_plugins()
    registry = [str(p) for p in ([registry] if isinstance(registry, (str, Path)) else registry)]
    presets = load_registry(registry)
    if NO_MODEL in (model, adapter):
        adapter, model = NO_MODEL, None
    elif adapter is None and model in presets:  # a preset by its name
        adapter, model = model, None
    elif adapter is None and model in plugins.names("adapter"):
        raise ApiError(f"{model!r} is an adapter plugin, not a model: name the model too "
                       f"(creg.load(HUB_ID_OR_DIR, adapter={model!r}); creg: --adapter {model} --model HUB_ID_OR_DIR), "
                       "or use a preset (`creg list`)")
    placement = {k: options.pop(k) for k in ("device_map", "max_memory") if options.get(k) is not None}
    values = dict(adapter=adapter, model=model, dtype=dtype, device=device, prompt=prompt, adapter_options=options,
                  registry=registry, **placement)
    try:
        config = resolve_run_config(values, plugins, presets)
    except RunError as e:
        raise ApiError(str(e)) from None
    return load_config(config, plugins=plugins, presets=presets)


def load_config(config: RunConfig, *, plugins=None, presets=None) -> "Model":
    """The :class:`Model` of a run configuration's adapter (its ``adapter``, ``model``, ``dtype``, ``device``,
    ``prompt``, adapter options and placement), resolved as a run resolves it
    (:func:`creg.config.resolve.resolve_adapter`)."""
    plugins = plugins or get_plugins()
    presets = presets if presets is not None else load_registry(config.registry)
    cls, adapter_config = resolve_adapter(config, plugins, presets)
    name = config.model or config.adapter
    if cls is None:
        return Model(name, None)
    check_available(adapter_config.model)
    return Model(name, cls.load(adapter_config))


# -- explaining one image -------------------------------------------------------------------------------

#: How the hint of a box in the wrong layout names the switch (creg.core.box_formats.xywh_hint).
XYWH_SWITCH = "--box-format xywh (Python: box_format='xywh')"


def _box(value: BoxLike, what: str, box_format: str = "xyxy"):


    if isinstance(value, Box):
        return value
    try:
        x0, y0, x1, y1 = to_xyxy(value, box_format)
        return Box(x0=x0, y0=y0, x1=x1, y1=y1)
    except ValidationError as e:  # one line: the box's own rule, e.g. "x0 must be < x1"
        raise ApiError(f"{what}: {e.errors()[0]['msg'].removeprefix('Value error, ')}, got {value!r}"
                       f"{xywh_hint(value, box_format, flag=XYWH_SWITCH)}") from None
    except (BoxFormatError, TypeError, ValueError) as e:
        raise ApiError(f"{what}: expected a creg.Box or four numbers ({box_format}) in pixels, got {value!r} ({e})") from None


def _object(value: ObjectLike, what: str, box_format: str = "xyxy"):
    try:
        name, box = value
    except (TypeError, ValueError):
        raise ApiError(f"{what}: expected (name, box), got {value!r}") from None
    return str(name), _box(box, f"{what} box", box_format)


def _relation_check(ref, tgt, ref_box, tgt_box, relation: str, box_format: str) -> None:
    """ApiError when ``relation`` contradicts the boxes (creg.core.relation_check), with a hint when the
    numbers, read as x, y, w, h, would agree with it."""

    why = contradiction(ref_box, tgt_box, relation)
    if why is None:
        return
    hint = ""
    raw = [ref[1], tgt[1]]
    if box_format == "xyxy" and not any(isinstance(b, Box) for b in raw):
        try:
            if all(fits_xywh(b) for b in raw):
                alt = [Box(**dict(zip(("x0", "y0", "x1", "y1"), to_xyxy(b, "xywh")))) for b in raw]
                if contradiction(alt[0], alt[1], relation) is None:
                    hint = f"; read as x, y, w, h (COCO's layout) they agree with it: {XYWH_SWITCH}"
        except (TypeError, ValueError):
            pass
    raise ApiError(f"{why}: check the relation (--relation) and the boxes (x0, y0, x1, y1 in pixels){hint}; "
                   "leave the relation out to take it from the boxes")



@dataclass
class Explanation:
    """An image explained by one or more sources (:meth:`Model.explain`); ``ex["creg"]`` is a
    :class:`SourceExplanation`. ``logits``: ``(4,)`` class logits (left, right, above, below) or
    None without a model; ``answer``: the model's answer (their argmax)."""

    sample: Any
    image: Any
    relation: str
    relation_given: bool
    sources: dict[str, SourceExplanation]
    logits: np.ndarray | None = None
    answer: str | None = None
    correct: bool | None = None
    model: str = ""

    def __repr__(self) -> str:
        per = "; ".join(f"{n}: peak {s.peak}, DAE {s.dae:.1f}°" if s.dae is not None else f"{n}: peak {s.peak}"
                        for n, s in self.sources.items())
        answer = f", answer {self.answer!r}" if self.answer else ""
        return f"Explanation({self.sample.tgt_name!r} vs {self.sample.ref_name!r}, true {self.relation}{answer}; {per})"

    def __getitem__(self, source: str) -> SourceExplanation:
        try:
            return self.sources[source]
        except KeyError:
            raise KeyError(f"{source!r} was not explained; this explanation has {list(self.sources)}") from None

    def __iter__(self):
        return iter(self.sources.values())

    @property
    def true_angle(self) -> float:
        """theta_true, the direction A -> B of the box centres (deg)."""
        return self.sample.angle

    @property
    def probs(self) -> dict[str, float] | None:
        """The model's answer distribution over the four relations (softmax of ``logits``)."""
        if self.logits is None:
            return None

        z = np.exp(self.logits - self.logits.max())
        return dict(zip(RELATIONS, map(float, z / z.sum())))

    def to_dict(self, *, maps: bool = False) -> dict[str, Any]:
        """A JSON-able dict (``creg explain --json``); ``maps=True`` adds each relevance map."""
        return {"sample": self.sample.summary(), "relation": self.relation, "relation_given": self.relation_given,
                "true_angle": self.true_angle, "model": self.model or None, "answer": self.answer,
                "correct": self.correct, "logits": None if self.logits is None else list(map(float, self.logits)),
                "probs": self.probs, "sources": {n: s.to_dict(maps=maps) for n, s in self.sources.items()}}

    def __str__(self) -> str:
        return "\n\n".join(format_explanation(self, s) for s in self.sources.values())

    def plot(self, path: str | Path | None = None, *, sources: Sequence[str] | None = None, dpi: int | None = None):
        """The figure: per source, the relevance heatmap over the image with boxes and arrows, beside
        the compass rose. Saved to ``path`` (png, pdf or svg by suffix) when given; returns the figure
        (or the path once saved)."""

        names = list(sources) if sources is not None else list(self.sources)
        rows = [{"source": n, "record": self[n].record.model_dump(), "relevance": self[n].relevance,
                 "cell_xy": self[n].cell_xy, "r_max": self[n].r_max or None, "grids": self[n].grids} for n in names]
        vlm = f" · VLM: {self.answer} ({max(self.probs.values()):.2f})" if self.answer else ""
        title = (f"Where is the {self.sample.tgt_name} relative to the {self.sample.ref_name}? "
                 f"true: {self.relation} ({self.true_angle:.0f}°){vlm}")
        fig = fg.explanation_figure(self.image, self.sample.summary(), rows, title=title,
                                    colours=fg.source_colours(self.sources))
        if path is None:  # detached from pyplot: a notebook shows the returned figure once, not twice
            fg.pyplot().close(fig)
            return fig
        return fg.save(fig, Path(path), dpi=dpi or fg.DEFAULT_DPI)


def format_explanation(ex: Explanation, s: SourceExplanation) -> str:
    """The text ``creg explain`` prints for one source: one bar per sector, the peak, the truth and
    the model's answer."""
    p = s.compass
    lines = [f"Where is the {ex.sample.tgt_name} relative to the {ex.sample.ref_name}?  (source {s.source}, K={p.size})"]
    for name, v in zip(s.sectors, p):
        lines.append(f"  {name:>4} {v:6.3f} {'█' * int(round(40 * v / max(p.max(), 1e-12)))}")
    lines.append(f"peak: {s.peak} (sector {s.peak_sector}), evidence points at {s.peak_angle:.1f}°")
    dae = f", DAE {s.dae:.1f}°" if s.dae is not None else ""
    lines.append(f"true A→B: {ex.true_angle:.1f}° ({ex.relation}){dae}")
    if ex.probs is not None:
        lines.append(f"model: {ex.answer}  (" + ", ".join(f"{r} {q:.2f}" for r, q in ex.probs.items()) + ")")
    else:
        lines.append("model: – (no model)")
    if s.flags:
        lines.append(f"flags: {', '.join(s.flags)}")
    return "\n".join(lines)


class Model:
    """A loaded model (or none) that explains images with any number of sources in one forward pass."""

    def __init__(self, name: str, adapter):
        self.name = name
        self.adapter = adapter

    def __repr__(self) -> str:
        return f"creg.Model({self.name!r}, adapter={type(self.adapter).__name__ if self.adapter else None})"

    def explain(self, image, ref: ObjectLike, tgt: ObjectLike, *, sources: Sequence[str] | str = DEFAULT_EXPLAIN_SOURCES,
                relation: str | None = None, source_options: Mapping[str, Mapping[str, Any]] | None = None,
                k: int = field_default("k"), sigma_r: float = field_default("sigma_r"),
                rho_r: float = field_default("rho_r"), seed: int = field_default("seed"), id: str | None = None,
                box_format: str = "xyxy") -> Explanation:
        """Explain where ``tgt`` lies relative to ``ref`` in ``image``.

        ``image``: a path or a PIL image; ``ref``/``tgt``: ``(name, box)`` with box a
        :class:`creg.Box` or ``(x0, y0, x1, y1)`` in pixels. ``sources``: source names (``creg
        list``); all share one forward pass. ``relation``: the ground truth (left/right/above/below)
        that gt-targeted sources and ``correct`` need; by default the dominant axis of the boxes; one
        that contradicts the boxes (creg.core.relation_check) is an ApiError. ``box_format``: the layout of
        box tuples, ``xyxy`` (default), ``xywh`` (COCO) or ``cxcywh`` (creg.core.box_formats).
        """

        ref_name, ref_box = _object(ref, "ref", box_format)
        tgt_name, tgt_box = _object(tgt, "tgt", box_format)
        names = [s.strip() for s in sources.split(",")] if isinstance(sources, str) else list(sources)
        if not names:
            raise ApiError("sources: name at least one source (see `creg list`)")
        pil, path = _image(image)
        given = relation is not None
        if given and relation in RELATIONS:
            _relation_check(ref, tgt, ref_box, tgt_box, relation, box_format)
        if relation is None:
            dx = tgt_box.center[0] - ref_box.center[0]
            relation = relation_from_boxes(ref_box, tgt_box, ratio=1.0) or ("right" if dx >= 0 else "left")
        sample_id = id or (path.stem if path is not None else "image")
        try:
            sample = make_sample(id=sample_id, image=path if path is not None else pil, image_size=pil.size,
                                 ref_name=ref_name, ref_box=ref_box, tgt_name=tgt_name, tgt_box=tgt_box, relation=relation)
        except InvalidSample as e:

            hint = next((h for who, obj in (("ref_box", ref), ("tgt_box", tgt)) if who in str(e)
                         for h in [xywh_hint(obj[1], box_format, pil.size, flag=XYWH_SWITCH)] if h), "")
            raise ApiError(f"{e}{hint}") from None
        built = _build_sources(names, dict(source_options or {}), self.adapter is not None)
        _check_capabilities(self.name, self.adapter, built)
        try:
            results, logits = explain_samples([sample], built, self.adapter, k=k, sigma_r=sigma_r, rho_r=rho_r, seed=seed)
        except InvalidSample as e:  # e.g. a name holding the tokenizer's special tokens (creg.hf.plain_text)
            raise ApiError(str(e)) from None
        per = {name: results[name][0] for name in names}
        rec = next(iter(per.values())).record
        return Explanation(sample=sample, image=pil, relation=relation, relation_given=given, sources=per,
                           logits=None if logits is None else logits[0], answer=rec.pred, correct=rec.correct,
                           model=self.name if self.adapter is not None else "")


def _image(image):
    """(RGB PIL image, path or None) of a path or a PIL image."""


    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ApiError(f"image file not found: {path}")
        try:  # the benchmarks' checks: a decompression bomb or an extreme aspect ratio is refused before decoding
            return open_rgb(path, what=f"image {path}"), path
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ApiError(f"cannot read image {path}: {e}") from None
    if hasattr(image, "convert") and hasattr(image, "size"):
        problem = size_problem(image.size)
        if problem:
            raise ApiError(f"image: {problem}: {image.size[0]}x{image.size[1]} pixels")
        return to_rgb(image), None
    raise ApiError(f"image: expected a path or a PIL image, got {type(image).__name__}")


def _build_sources(names: list[str], options: dict[str, dict[str, Any]], has_model: bool):

    try:
        return build_sources(RunConfig(sources=names, source_options=options), get_plugins(), has_model)
    except (UnknownName, RunError) as e:
        raise ApiError(str(e)) from None


def _check_capabilities(name: str, adapter, sources) -> None:
    """ApiError (one line) when a source needs what ``adapter`` does not provide (:mod:`creg.plugins.capabilities`)."""

    try:
        check_sources(name, type(adapter) if adapter is not None else None, sources, option=None)
    except UnsupportedSources as e:
        raise ApiError(str(e)) from None


# -- a run ------------------------------------------------------------------------------------------------

#: :func:`run`'s keywords that are not :class:`creg.config.run_config.RunConfig` fields: keyword -> default.
RUN_OPTIONS: dict[str, Any] = {
    "out": None,  # creg.config.defaults.default_out: runs/BENCH-ADAPTER-HASH
    "overwrite": False,
    "progress": False,
    "skip_unsupported": False,  # drop the sources the adapter cannot serve (creg.plugins.capabilities) instead of refusing
}
#: The defaults of :func:`run`, keyword -> value: RunConfig's fields' as every entry point defaults them
#: (:func:`creg.config.defaults.run_defaults`; ``adapter`` None: the toy model, or the adapter plugin ``model``'s
#: config.json names), then :data:`RUN_OPTIONS`. ``creg run``'s options take the same defaults.
RUN_DEFAULTS: dict[str, Any] = {**run_defaults(), **RUN_OPTIONS}


def _listed(value: Any) -> Any:
    """A comma-separated string as a list of its names (``sources``, ``controls``); anything else as is."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


def run(**options: Any) -> dict[str, Any]:
    """Run a benchmark like ``creg run`` (same keyword names as the long options, same defaults:
    :data:`RUN_DEFAULTS`) and return its summary (``summary.json``'s content) with ``out`` added.

    ``sources``: a list or a comma-separated string; ``source_options``: {source: {key: value}}
    (``--source-opt``); ``bench_options``: {key: value} (``--bench-opt``); ``limit`` is ``n``.

    Started by ``torchrun``, each process runs its rank of a data-parallel run (docs/distributed.md): rank 0
    returns the merged run's summary, the other ranks only ``{"out": ...}``.
    """

    if "limit" in options:
        options["n"] = options.pop("limit")
    unknown = set(options) - set(RUN_DEFAULTS)
    if unknown:
        raise ApiError(f"creg.run: unknown option(s) {sorted(unknown)}; the options are {sorted(RUN_DEFAULTS)}")
    opts = {**RUN_OPTIONS, **{k: options[k] for k in RUN_OPTIONS if k in options}}
    values = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    for key in ("sources", "controls"):
        if key in values:
            values[key] = _listed(values[key])
    if isinstance(values.get("registry"), (str, Path)):
        values["registry"] = [values["registry"]]
    if values.get("registry"):
        values["registry"] = [str(p) for p in values["registry"]]
    config = resolve_run_config(values, get_plugins())
    config.threads = apply_threads(config.threads)
    out = Path(opts["out"]) if opts["out"] else default_out(config)
    try:
        world = world_from_env()  # set by torchrun: this process is one rank of a data-parallel run
    except ValueError as e:
        raise ApiError(str(e)) from None
    runner = Runner(config, out, overwrite=opts["overwrite"], progress=opts["progress"], log=_log,
                    skip_unsupported=opts["skip_unsupported"])
    result = executor_for(world).run(runner)
    if result is None:  # a rank other than 0 of a torchrun launch: rank 0 merges and summarises
        return {"out": str(out)}
    return {**result.summary, "out": str(result.out)}


def _log(message: str) -> None:

    info(message)


# -- reading a run ------------------------------------------------------------------------------------------

def read_run(run_dir: str | Path):
    """A run's records as tidy pandas DataFrames (``pip install 'creg[frames]'``); see
    :func:`creg.report.frames.read_run`."""

    return _read(run_dir)
