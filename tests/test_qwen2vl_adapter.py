"""The Qwen2-VL adapter against the adapter contract, on a tiny random checkpoint."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract
from creg_qwen2vl.adapter import Qwen2VLAdapter


@pytest.fixture(scope="module")
def qwen2vl_adapter(tiny_qwen2vl_deep_dir):
    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir)))


class TestQwen2VLContract(AdapterContract):
    """Square, wide and tall images (the contract's default sizes); 6 decoder layers."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, qwen2vl_adapter):
        return qwen2vl_adapter

    @pytest.fixture(scope="class")
    @classmethod
    def reference_class_logits(cls, qwen2vl_adapter):
        """Plain ``model(**inputs)`` on one sample's processor inputs, no adapter machinery."""
        ad = qwen2vl_adapter
        tok = ad.inputs.tokenizer
        ids = tok.convert_tokens_to_ids(["1", "2", "3", "4"])

        def reference(samples):
            inputs = ad.encode(samples)
            with torch.no_grad():
                logits = ad.model(**inputs).logits
            return logits[:, -1, ids]

        return reference


class TestQwen2VLContractOddSizes(TestQwen2VLContract):
    """Sizes that are no multiple of 28 px (the resize changes the aspect ratio slightly)."""

    image_sizes = ((97, 97), (200, 70), (56, 196))
