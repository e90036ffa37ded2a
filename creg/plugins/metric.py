"""The metric registry: every number that summary.json, table.md, the report and the paired
tests show per source comes from a registered :class:`Metric`.

Plugins (creg's own included) add metrics through the ``register_metrics`` hook::

    @creg.hookimpl
    def register_metrics(register):
        register("dae", compute_dae, higher_is_better=False, label="DAE", digits=1, ci_digits=0)

``compute(records) -> (n,)`` float64 values, one per record (:class:`creg.core.records.SampleRecord`,
the sample's facts joined), NaN where the metric is undefined for that record (left out of the
aggregate). ``aggregate(values) -> ...`` reduces the last axis (``(..., n) -> (...)``; default: the
mean), so the bootstrap CI resamples it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from creg.core.measures import bootstrap_ci
from creg.plugins.manager import get_plugins

#: The module that registers creg's own metrics (through the ``creg_metrics`` entry point).
BUILTIN_MODULE = "creg.metrics.builtin"


def mean_last(values: np.ndarray) -> np.ndarray:
    """The default aggregate: the mean over the last axis."""
    return np.asarray(values, dtype=np.float64).mean(axis=-1)


@dataclass(frozen=True)
class Metric:
    """A per-record score and how a group of records is summarised."""

    name: str
    compute: Callable[[Sequence[Any]], np.ndarray]
    higher_is_better: bool
    aggregate: Callable[[np.ndarray], np.ndarray] = mean_last
    #: column / row label; ``{arrow}`` marks where ↑/↓ goes (appended when absent).
    label: str = ""
    description: str = ""
    digits: int = 3
    ci_digits: int | None = None
    signed: bool = False
    #: bootstrap CI in summary.json (``NAME_ci``) and, with ``table_ci``, in the table
    ci: bool = True
    table_ci: bool = True
    #: "always", "if_present" (a column once any source has a value) or "never"
    table: str = "if_present"
    #: a column of the report's per-class and correct-vs-incorrect tables (summary.json's
    #: ``by_class`` / ``by_correct`` hold every metric)
    breakdown: bool = True
    #: paired bootstrap test between every two sources
    paired: bool = True
    #: expected aggregate of a uniformly random compass peak for K sectors (a chance line), or None
    chance: Callable[[int], float] | None = None
    #: the plugin that registered it
    plugin: str = ""

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def heading(self) -> str:
        label = self.label or self.name.upper()
        return label.replace("{arrow}", self.arrow) if "{arrow}" in label else label + self.arrow

    def values(self, records: Sequence[Any]) -> np.ndarray:
        """``(n,)`` float64 per record, NaN where undefined (checked: a plugin bug is named)."""
        if not records:
            return np.zeros(0, dtype=np.float64)
        v = np.asarray(self.compute(records), dtype=np.float64)
        if v.shape != (len(records),):
            raise ValueError(f"metric {self.name!r} ({self.plugin}) returned shape {v.shape} for {len(records)} records")
        return v

    def summarize(self, records: Sequence[Any], *, seed: int = 0, ci: bool = True) -> tuple[float | None, list[float] | None]:
        """(aggregate, 95% bootstrap CI) over the records where the metric is defined."""
        v = self.values(records)
        v = v[~np.isnan(v)]
        if v.size == 0:
            return None, None
        value = float(self.aggregate(v))
        if not ci:
            return value, None
        stat = None if self.aggregate is mean_last else (lambda boots: self.aggregate(boots))
        interval = bootstrap_ci(v, stat, seed=seed)
        return value, (list(interval) if interval is not None else None)


class MetricsMissing(RuntimeError):
    """creg's own metrics are not registered: the installation's entry points are out of date."""


@dataclass
class MetricRegistry:
    """Registered metrics in registration order (creg's own first)."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    clashes: list[str] = field(default_factory=list)

    def register(self, name: str, compute: Callable, *, higher_is_better: bool, plugin: str = "", **options: Any) -> None:
        if not callable(compute):
            raise TypeError(f"metric {name!r}: compute must be callable, got {type(compute).__name__}")
        if name in self.metrics:
            self.clashes.append(f"metric {name!r} from {plugin or '?'} ignored: already registered by {self.metrics[name].plugin}")
            return
        self.metrics[name] = Metric(name=name, compute=compute, higher_is_better=bool(higher_is_better), plugin=plugin, **options)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.metrics.values())

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __contains__(self, name: str) -> bool:
        return name in self.metrics

    def names(self) -> list[str]:
        return list(self.metrics)


def collect_metrics(plugins) -> MetricRegistry:
    """Call every plugin's ``register_metrics`` hook (creg's built-ins first, then the others)."""
    reg = MetricRegistry()
    manager = plugins.manager
    impls = manager.hook.register_metrics.get_hookimpls()
    if not any(getattr(i.plugin, "__name__", "") == BUILTIN_MODULE for i in impls):
        raise MetricsMissing(
            f"creg's own metrics are not registered (entry point creg_metrics = {BUILTIN_MODULE} is missing): "
            "the installed creg metadata is stale; reinstall creg (`pip install -e .` in a clone)")
    # creg's own metrics come first (in the table, and they win a name clash); then the others in
    # the order their plugins were loaded
    ordered = sorted(impls, key=lambda i: (getattr(i.plugin, "__name__", "") != BUILTIN_MODULE, impls.index(i)))
    for impl in ordered:
        def register(name: str, compute: Callable, *, higher_is_better: bool, _p: str = impl.plugin_name, **opts: Any) -> None:
            reg.register(name, compute, higher_is_better=higher_is_better, plugin=_p, **opts)

        impl.function(register=register)
    return reg


def metric_registry(plugins=None) -> MetricRegistry:
    """The metrics that ``plugins`` (default: the installed plugins) register."""
    if plugins is None:

        plugins = get_plugins()
    return collect_metrics(plugins)
