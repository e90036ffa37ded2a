"""The Mistral3 (Pixtral vision) adapter against the adapter contract, on a tiny random checkpoint."""

from __future__ import annotations

import pytest

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract
from creg_mistral3.adapter import Mistral3Adapter


@pytest.fixture(scope="module")
def mistral3_dir(tmp_path_factory):
    from creg_mistral3.tiny import build_tiny_mistral3

    return build_tiny_mistral3(tmp_path_factory.mktemp("tiny_mistral3"), seed=0)


@pytest.fixture(scope="module")
def mistral3(mistral3_dir):
    return Mistral3Adapter.load(AdapterConfig(model=str(mistral3_dir)))


class TestMistral3Contract(AdapterContract):
    """Square, wide and tall images kept at their size (whole 28 px tokens); the contract's extra
    sizes are scaled down to the 224 px longest edge and rounded."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, mistral3):
        return mistral3


def test_creg_run_through_a_local_preset_with_every_paper_source(mistral3_dir, tmp_path):
    from preset_runs import run_with_local_preset

    _, summary = run_with_local_preset(
        tmp_path, adapter="mistral3", checkpoint=mistral3_dir, ig_steps=2,
        sources="creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,random,oracle")
    assert summary["sources"]["oracle"]["dae"] < 1e-9
