"""The plugin hooks of creg: one per extension point.

A plugin is a module listed under the ``creg`` entry-point group of its distribution, e.g.::

    [project.entry-points.creg]
    creg_llava = "creg_llava"

that implements any of these hooks with ``@creg.hookimpl``. Each hook receives a ``register``
callable; call it with a name and either the class or a ``"module:attr"`` string (imported only
when the plugin is used, so ``creg list`` stays fast)::

    @creg.hookimpl
    def register_adapters(register):
        register("llava", "creg_llava.adapter:LlavaAdapter")

Name entry points and registered names after your distribution to avoid clashes; a name that
is registered twice is reported by ``creg list`` and the first registration wins.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("creg")
hookimpl = pluggy.HookimplMarker("creg")


@hookspec
def register_adapters(register):
    """Register VLM adapters: ``register(name, cls_or_"module:attr")``, a :class:`creg.adapter.VLMAdapter` subclass."""


@hookspec
def register_sources(register):
    """Register relevance sources: ``register(name, cls_or_"module:attr")``, a :class:`creg.relevance.RelevanceSource` subclass."""


@hookspec
def register_benchmarks(register):
    """Register benchmarks: ``register(name, cls_or_"module:attr")``, a :class:`creg.benchmark.Benchmark` subclass."""


@hookspec
def register_metrics(register):
    """Register metrics: ``register(name, compute, *, higher_is_better, aggregate=None, label=..., digits=...)``.

    ``compute(records) -> (n,)`` float64 per :class:`creg.records.SampleRecord` (NaN where undefined);
    ``aggregate`` reduces the last axis (default: the mean). summary.json, table.md, ``creg report``
    and the paired tests show every registered metric (:mod:`creg.scoring.registry`)."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``creg`` command line: ``cli.add_command(cmd)``."""
