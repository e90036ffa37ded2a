"""An adapter written against the 0.1 contract still passes the contract, unchanged.

``tests/adapter_0_1/frozen_example_adapter.py`` is the example adapter exactly as creg 0.1
shipped it (a tiny plain-torch VLM; single-grid ``VisionLayout``, no ``creg.hf``, no
``reference_hidden_states`` / ``answer_logits``). It is frozen here on purpose: do not edit it.
The checks that need what 0.1 adapters lack are skipped with their reason; everything else,
the new padding, marker and layer-range checks included, must pass.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract

_spec = importlib.util.spec_from_file_location("frozen_example_adapter_0_1", Path(__file__).parent / "adapter_0_1" / "frozen_example_adapter.py")
frozen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(frozen)


class TestFrozen01Adapter(AdapterContract):
    supports_attentions = False  # as its 0.1 test file declared

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls):
        return frozen.ExampleTinyAdapter.load(AdapterConfig(model="random:0"))
