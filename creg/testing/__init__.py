"""Test helpers shipped with creg for plugin authors.

Contract suites, one base class each, that a plugin's own test suite subclasses:
:class:`AdapterContract` (a :class:`creg.adapter.VLMAdapter`), :class:`SourceContract` (a
:class:`creg.relevance.RelevanceSource`) and :class:`BenchmarkContract` (a
:class:`creg.benchmark.Benchmark`); see each module's docstring. :class:`FakeVLMAdapter` is a
small real torch model behind the adapter contract, the model creg's own source tests use.
Importing this package needs pytest.
"""

from .adapter_contract import AdapterContract, draw_image
from .benchmark_contract import BenchmarkContract
from .fake_vlm import FakeVLMAdapter
from .source_contract import SourceContract, contract_samples

__all__ = ["AdapterContract", "BenchmarkContract", "FakeVLMAdapter", "SourceContract", "contract_samples", "draw_image"]
