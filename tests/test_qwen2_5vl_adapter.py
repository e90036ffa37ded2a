"""The Qwen2.5-VL adapter: the contract on a tiny random checkpoint, and its window order."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.core.sample import make_sample
from creg.testing import AdapterContract, draw_image
from creg_qwen2_5vl.adapter import Qwen2_5VLAdapter


@pytest.fixture(scope="module")
def qwen2_5vl_adapter(tiny_qwen2_5vl_dir):
    return Qwen2_5VLAdapter.load(AdapterConfig(model=str(tiny_qwen2_5vl_dir)))


class TestQwen2_5VLContract(AdapterContract):
    """Square, wide and tall images; images above 56 px span several attention windows."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, qwen2_5vl_adapter):
        return qwen2_5vl_adapter


def _sample(size, seed=0):
    w, h = size
    return make_sample(id=f"s{seed}", image=draw_image(size, noise_seed=seed), image_size=size, ref_name="dog",
                       ref_box={"x0": 0, "y0": 0, "x1": w / 4, "y1": h / 4}, tgt_name="cat",
                       tgt_box={"x0": w / 2, "y0": h / 2, "x1": w, "y1": h}, relation="below")


def test_the_checkpoint_is_a_real_qwen2_5vl(qwen2_5vl_adapter):
    from transformers import Qwen2_5_VLForConditionalGeneration

    ad = qwen2_5vl_adapter
    assert isinstance(ad.model, Qwen2_5_VLForConditionalGeneration)
    visual = ad.model.model.visual
    assert visual.window_size == 56 and list(visual.fullatt_block_indexes) == [len(visual.blocks) - 1]
    assert ad.num_layers == 6 and ad.answer.prefix_ids == ()


def test_vision_activations_are_the_encoders_last_block_in_raster_order(qwen2_5vl_adapter):
    """Two images of several windows each: the hook's rasters are the last block's output with
    the window permutation undone, and the model's logits are unchanged by the hook."""
    from transformers.vision_utils import get_vision_window_index

    from creg.hf import windows_to_raster

    ad = qwen2_5vl_adapter
    samples = [_sample((168, 112), 1), _sample((112, 224), 2)]
    out = ad.forward(samples, ForwardRequest(vision_activations=True))
    batch = ad.encode(samples)
    seen = {}
    visual = ad.model.model.visual
    handle = visual.blocks[-1].register_forward_hook(lambda m, a, o: seen.setdefault("out", o.detach()))
    try:
        with torch.no_grad():
            plain = ad.model(**batch, use_cache=False).logits[:, -1, list(ad.option_token_ids)]
    finally:
        handle.remove()
    torch.testing.assert_close(out.class_logits.detach(), plain, atol=1e-5, rtol=0)
    window_index, _ = get_vision_window_index(batch["image_grid_thw"], spatial_merge_size=2,
                                              window_size=visual.window_size, patch_size=visual.patch_size)
    units = seen["out"].reshape(-1, 4, seen["out"].shape[-1])
    restored = torch.empty_like(units)
    restored[window_index] = units  # position window_index[k] holds window-order unit k
    chunks = restored.reshape(-1, units.shape[-1]).split([h * w for h, w in (lay.patch_hw for lay in out.vision)])
    for act, chunk, lay in zip(out.vision_activations, chunks, out.vision):
        torch.testing.assert_close(act.detach(), windows_to_raster(chunk, lay.patch_hw, 2))
    assert not torch.equal(seen["out"], restored.reshape(seen["out"].shape)), "several windows: the order differs"
