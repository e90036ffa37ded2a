"""The Idefics3 (SmolVLM) adapter against the adapter contract, on a tiny random checkpoint:
112 px tiles (3 x 3 for the square image, 3 x 2 for the wide one, 2 x 3 for the tall one) plus the global image."""

from __future__ import annotations

import pytest

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract
from creg_idefics3.adapter import Idefics3Adapter


@pytest.fixture(scope="module")
def idefics3_dir(tmp_path_factory):
    from creg_idefics3.tiny import build_tiny_idefics3

    return build_tiny_idefics3(tmp_path_factory.mktemp("tiny_idefics3"), seed=0)


@pytest.fixture(scope="module")
def idefics3(idefics3_dir):
    return Idefics3Adapter.load(AdapterConfig(model=str(idefics3_dir)))


class TestIdefics3Contract(AdapterContract):
    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, idefics3):
        return idefics3


def test_manual_inputs_are_the_processors(idefics3_dir):
    """processor=manual (tokenizer + image processor + the markers callback) gives the processor's inputs."""
    import torch

    from creg.testing.adapter_contract import CHECK_QUESTION, draw_image

    manual = Idefics3Adapter.load(AdapterConfig(model=str(idefics3_dir), options={"processor": "manual"}))
    assert manual.processor.mode == "manual"
    images = [draw_image(size, noise_seed=i) for i, size in enumerate(AdapterContract.marker_sizes())]
    texts = [manual.chat(CHECK_QUESTION)] * len(images)
    which, expected = manual.checkpoint_inputs(texts, images)
    got = manual.encode_texts(texts, images)
    assert which == "the checkpoint's processor"
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["pixel_values"], expected["pixel_values"])


def test_creg_run_through_a_local_preset_with_every_paper_source(idefics3_dir, tmp_path):
    from preset_runs import run_with_local_preset

    _, summary = run_with_local_preset(
        tmp_path, adapter="idefics3", checkpoint=idefics3_dir, ig_steps=2,
        sources="creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,random,oracle")
    assert summary["sources"]["oracle"]["dae"] < 1e-9
