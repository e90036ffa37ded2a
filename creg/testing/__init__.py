"""Test helpers shipped with creg for plugin authors.

Contract suites, one base class each, that a plugin's own test suite subclasses:
:class:`AdapterContract` (a :class:`creg.plugins.adapter.VLMAdapter`), :class:`SourceContract` (a
:class:`creg.plugins.relevance.RelevanceSource`), :class:`BenchmarkContract` (a
:class:`creg.plugins.benchmark.Benchmark`) and :class:`MetricContract` (a :class:`creg.plugins.metric.Metric`,
on the records of a hand-built run, :func:`contract_records`); see each module's docstring. :class:`FakeVLMAdapter` is a
small real torch model behind the adapter contract, the model creg's own source tests use.
:mod:`creg.testing.tiny_tokenizers` builds tokenizers for tiny local test checkpoints.
The contract suites need pytest. The names below are imported when first used, so that the
tiny-checkpoint helpers (:mod:`creg.testing.tiny_tokenizers`, :mod:`creg.testing.tiny_configs`,
which the adapters' ``tiny`` builders and the benchmark scripts use) import neither pytest nor
the suites.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "AdapterContract": "adapter_contract",
    "draw_image": "adapter_contract",
    "BenchmarkContract": "benchmark_contract",
    "FakeVLMAdapter": "fake_vlm",
    "MetricContract": "metric_contract",
    "contract_records": "metric_contract",
    "SourceContract": "source_contract",
    "contract_samples": "source_contract",
}

__all__ = ["AdapterContract", "BenchmarkContract", "FakeVLMAdapter", "MetricContract", "SourceContract", "contract_records",
           "contract_samples", "draw_image"]

if TYPE_CHECKING:
    from creg.testing.adapter_contract import AdapterContract, draw_image
    from creg.testing.benchmark_contract import BenchmarkContract
    from creg.testing.fake_vlm import FakeVLMAdapter
    from creg.testing.metric_contract import MetricContract, contract_records
    from creg.testing.source_contract import SourceContract, contract_samples


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
