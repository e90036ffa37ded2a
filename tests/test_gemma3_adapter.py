"""The Gemma 3 adapter against the adapter contract, on a tiny random checkpoint (112 px SigLIP,
4 x 4 pooled tokens): the whole image stretched to the square, and with pan-and-scan crops."""

from __future__ import annotations

import pytest

from creg.plugins.adapter import AdapterConfig
from creg.testing import AdapterContract
from creg_gemma3.adapter import Gemma3Adapter


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory):
    from creg_gemma3.tiny import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny_gemma3"), seed=0)


class TestGemma3Contract(AdapterContract):
    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, gemma3_dir):
        return Gemma3Adapter.load(AdapterConfig(model=str(gemma3_dir)))


class TestGemma3PanAndScanContract(AdapterContract):
    """Pan-and-scan crops need crops of >= 256 px (the processor's default): a square image (no
    crops), a wide one (global image + 1 x 2 crops), a tall one (global + 2 x 1). (With 3 crops the
    markers straddle crop edges, a sliver of a 4 x 4-token crop: too weak a signal in a random model.)"""

    image_sizes = ((560, 560), (640, 320), (300, 640))

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, gemma3_dir):
        return Gemma3Adapter.load(AdapterConfig(model=str(gemma3_dir), options={"pan_and_scan": True}))


def test_creg_run_through_a_local_preset_with_every_paper_source(gemma3_dir, tmp_path):
    from preset_runs import run_with_local_preset

    _, summary = run_with_local_preset(
        tmp_path, adapter="gemma3", checkpoint=gemma3_dir, ig_steps=2,
        sources="creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,random,oracle")
    assert summary["sources"]["oracle"]["dae"] < 1e-9
