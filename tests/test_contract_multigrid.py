"""Multi-grid layouts (tiles + thumbnail) through the contract, the sources and the compass."""

from __future__ import annotations

import pytest
import torch

from creg.adapter import AdapterConfig, ForwardRequest
from creg.testing import AdapterContract
from contract_adapters import TiledExampleAdapter


class TestTiledAdapterContract(AdapterContract):
    supports_attentions = False

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls):
        return TiledExampleAdapter.load(AdapterConfig(model="random:0"))
