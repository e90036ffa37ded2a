import pytest

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract
from creg_example_adapter.adapter import ExampleTinyAdapter


class TestExampleTinyAdapter(AdapterContract):
    supports_attentions = False  # declared: this adapter streams no attention maps

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls):
        return ExampleTinyAdapter.load(AdapterConfig(model="random:0"))
