"""The metric registry: every number that summary.json, table.md, the report and the paired
tests show per source comes from a registered :class:`Metric`.

Plugins (creg's own included) add metrics through the ``register_metrics`` hook::

    @creg.hookimpl
    def register_metrics(register):
        register("dae", compute_dae, higher_is_better=False, label="DAE", digits=1, ci_digits=0)

``compute`` is the function or a ``"module:attr"`` string (imported when the metrics are collected);
``compute(records) -> (n,)`` float64 values, one per record (:class:`creg.core.records.SampleRecord`,
the sample's facts joined), NaN where the metric is undefined for that record (left out of the
aggregate). ``aggregate(values) -> ...`` reduces the last axis (``(..., n) -> (...)``; default: the
mean), so the bootstrap CI resamples it as it is.

A metric is a plugin like the others: the plugin manager records its registration (name, module,
distribution; a name registered twice keeps its first registration and the clash is reported with
the other kinds', :mod:`creg.plugins.manager`), ``creg list`` shows it, and :func:`metric_from` turns
a registration into a :class:`Metric`. :class:`creg.testing.MetricContract` checks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from creg.core.measures import bootstrap_ci
from creg.plugins.manager import OWN_DISTRIBUTION, PluginLoadError, Registration, get_plugins

#: The module that registers creg's own metrics (through the ``creg_metrics`` entry point).
BUILTIN_MODULE = "creg.metrics.builtin"
#: where a metric's column appears: always, once any source has a value, or never
TABLE_CHOICES = ("always", "if_present", "never")


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
    #: the plugin module that registered it, and its distribution ("name version")
    plugin: str = ""
    dist: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.higher_is_better, (bool, np.bool_)):
            raise TypeError(f"higher_is_better must be True or False, got {self.higher_is_better!r:.40}")
        object.__setattr__(self, "higher_is_better", bool(self.higher_is_better))
        if self.table not in TABLE_CHOICES:
            raise ValueError(f"table must be one of {', '.join(TABLE_CHOICES)}, got {self.table!r:.40}")
        for name in ("compute", "aggregate"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable, got {type(getattr(self, name)).__name__}")
        if self.chance is not None and not callable(self.chance):
            raise TypeError(f"chance must be a function of K or None, got {type(self.chance).__name__}")
        for name in ("digits", "ci_digits"):
            v = getattr(self, name)
            if not (v is None and name == "ci_digits") and not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 12):
                raise ValueError(f"{name} must be an integer from 0 to 12, got {v!r:.40}")

    @property
    def own(self) -> bool:
        """Registered by creg's own distribution (its names win a clash)."""
        return self.dist.split(" ")[0] == OWN_DISTRIBUTION

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

    def settings(self) -> dict[str, Any]:
        """What ``creg list`` shows of the metric: its functions by name, its table settings and whether it
        draws a chance line (JSON-safe)."""
        return {"higher_is_better": self.higher_is_better, "label": self.heading, "description": self.description,
                "compute": _callable_name(self.compute),
                "aggregate": "mean" if self.aggregate is mean_last else _callable_name(self.aggregate),
                "digits": self.digits, "ci_digits": self.ci_digits, "signed": self.signed, "ci": self.ci,
                "table_ci": self.table_ci, "table": self.table, "breakdown": self.breakdown, "paired": self.paired,
                "chance_line": self.chance is not None}


def _callable_name(fn: Callable) -> str:
    """``module:qualname`` of a function (of a callable object: of its class)."""
    owner = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(owner, '__module__', '?')}:{getattr(owner, '__qualname__', type(fn).__name__)}"


def metric_from(registration: Registration) -> Metric:
    """The :class:`Metric` that a ``register_metrics`` registration declares (its compute imported when given
    as ``"module:attr"``); :class:`PluginLoadError` naming the metric and its distribution when it cannot be one."""
    compute = registration.load()
    try:
        return Metric(name=registration.name, compute=compute, description=registration.description,
                      plugin=registration.plugin, dist=registration.dist, **registration.metadata)
    except (TypeError, ValueError) as e:
        raise PluginLoadError(f"metric {registration.name!r} ({registration.dist}, {registration.plugin}): {e}") from None


class MetricsMissing(PluginLoadError):
    """creg's own metrics are not registered: the installation's entry points are out of date."""


@dataclass
class MetricRegistry:
    """Registered metrics in registration order, creg's own first."""

    metrics: dict[str, Metric] = field(default_factory=dict)

    def add(self, metric: Metric) -> None:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name!r} is already in this registry")
        self.metrics[metric.name] = metric

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.metrics.values())

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __contains__(self, name: str) -> bool:
        return name in self.metrics

    def names(self) -> list[str]:
        return list(self.metrics)


def collect_metrics(plugins) -> MetricRegistry:
    """Every metric the plugins registered, as :class:`Metric` objects (name clashes were settled, and
    recorded in ``plugins.clashes``, when the plugins were discovered)."""
    # creg's own metrics come first in the table (their distribution is loaded first, so they also won
    # any clash), then the others in the order their plugins were loaded
    registrations = sorted(plugins.registered["metric"].values(), key=lambda r: r.plugin != BUILTIN_MODULE)
    if not any(r.plugin == BUILTIN_MODULE for r in registrations):
        raise MetricsMissing(
            f"creg's own metrics are not registered (entry point creg_metrics = {BUILTIN_MODULE} is missing): "
            "the installed creg metadata is stale; reinstall creg (`pip install -e .` in a clone)")
    reg = MetricRegistry()
    for registration in registrations:
        reg.add(metric_from(registration))
    return reg


def metric_registry(plugins=None) -> MetricRegistry:
    """The metrics that ``plugins`` (default: the installed plugins) register."""
    if plugins is None:
        plugins = get_plugins()
    return collect_metrics(plugins)
