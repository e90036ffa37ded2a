"""Test helpers shipped with creg for plugin authors (they need pytest: the ``test`` extra).

Contract suites, one base class each, that a plugin's own test suite subclasses:
:class:`AdapterContract` (a :class:`creg.plugins.adapter.VLMAdapter`), :class:`SourceContract` (a
:class:`creg.plugins.relevance.RelevanceSource`), :class:`BenchmarkContract` (a
:class:`creg.plugins.benchmark.Benchmark`) and :class:`MetricContract` (a :class:`creg.plugins.metric.Metric`,
on the records of a hand-built run, :func:`contract_records`); see each module's docstring. :class:`FakeVLMAdapter` is a
small real torch model behind the adapter contract, the model creg's own source tests use.
The builders of tiny local checkpoints, which need no pytest, are :mod:`creg.hf.tiny_configs` and
:mod:`creg.hf.tiny_tokenizers`.
"""

from creg.testing.adapter_contract import AdapterContract, draw_image
from creg.testing.benchmark_contract import BenchmarkContract
from creg.testing.fake_vlm import FakeVLMAdapter
from creg.testing.metric_contract import MetricContract, contract_records
from creg.testing.source_contract import SourceContract, contract_samples

__all__ = ["AdapterContract", "BenchmarkContract", "FakeVLMAdapter", "MetricContract", "SourceContract", "contract_records",
           "contract_samples", "draw_image"]
