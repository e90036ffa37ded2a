"""The plugin hooks of creg: one per extension point.

A plugin is a module listed under the ``creg`` entry-point group of its distribution, e.g.::

    [project.entry-points.creg]
    my_vlm_creg = "my_vlm_creg"

that implements any of these hooks with ``@creg.hookimpl`` (a function without the marker is
never called). Each hook receives a ``register`` callable::

    register(name, target, *, description="", **metadata)

``target`` is the class or a ``"module:attr"`` string (imported only when the plugin is used);
``description`` and the metadata (``needs_model=False`` for a source that runs without a model,
``needs_data=True`` for a benchmark that needs ``--data-dir``) are what ``creg list`` and
``creg --help`` show without importing the plugin's code::

    @creg.hookimpl
    def register_adapters(register):
        register("my_vlm", "my_vlm_creg.adapter:MyVlmAdapter", description="MyVLM-7B (my-org checkpoints)")

The target must subclass :class:`creg.plugins.adapter.VLMAdapter`, :class:`creg.plugins.relevance.RelevanceSource`
or :class:`creg.plugins.benchmark.Benchmark` (a metric's target is its compute function); that is checked when it
is loaded. Name entry points and registered names after your distribution to avoid clashes: creg's own
names always win, a name registered twice keeps its first registration, and every clash (metrics'
included) is reported by ``creg list``, warned about by ``creg run`` and stored in the run's
``config.json`` (docs/plugins.md).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("creg")
hookimpl = pluggy.HookimplMarker("creg")


@hookspec
def register_adapters(register):
    """Register VLM adapters: ``register(name, cls_or_"module:attr", *, description="", **metadata)``, a :class:`creg.plugins.adapter.VLMAdapter` subclass."""


@hookspec
def register_sources(register):
    """Register relevance sources: ``register(name, cls_or_"module:attr", *, description="", needs_model=True)``, a :class:`creg.plugins.relevance.RelevanceSource` subclass."""


@hookspec
def register_benchmarks(register):
    """Register benchmarks: ``register(name, cls_or_"module:attr", *, description="", needs_data=False)``, a :class:`creg.plugins.benchmark.Benchmark` subclass."""


@hookspec
def register_metrics(register):
    """Register metrics: ``register(name, compute, *, higher_is_better, description="", aggregate=..., label=..., digits=...)``.

    ``compute`` (the function or ``"module:attr"``) maps records to ``(n,)`` float64, one per
    :class:`creg.core.records.SampleRecord` (NaN where undefined); ``aggregate`` reduces the last axis
    (default: the mean). Recorded like the other kinds' registrations (distribution, clashes, ``creg
    list``); summary.json, table.md, ``creg report`` and the paired tests show every registered metric
    (:mod:`creg.plugins.metric`; contract tests :class:`creg.testing.MetricContract`)."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``creg`` command line: ``cli.add_command(cmd)``.

    ``cli`` is a guard around the ``creg`` group: a name of a core command (``run``, ``list``, ...)
    or of a command another plugin added first is refused with a warning; ``cli.commands`` is a
    read-only view of the commands so far.
    """
