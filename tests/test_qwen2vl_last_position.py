"""The answer-only replay of the last block equals the full block's last row (used by IG)."""

import numpy as np
import pytest
import torch
from PIL import Image

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.core.sample import Box, make_sample
from creg_qwen2vl.adapter import Qwen2VLAdapter


def _sample(sid, size, seed):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w, h = size
    return make_sample(id=sid, image=img, image_size=size, ref_name="red circle",
                       ref_box=Box(x0=2, y0=2, x1=w / 4, y1=h / 4), tgt_name="blue square",
                       tgt_box=Box(x0=w / 2, y0=2, x1=w - 2, y1=h / 4), relation="right")


@pytest.mark.parametrize("layer", [-2, -3])
def test_answer_only_replay_equals_the_full_block(tiny_qwen2vl_dir, layer):
    fast = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir)))
    full = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), options={"answer_only_replay": False}))
    # different image sizes -> different lengths -> left padding and a real attention mask
    samples = [_sample("a", (112, 84), 0), _sample("b", (168, 168), 1)]
    out_fast = fast.forward(samples, ForwardRequest(layers=(layer,)))
    out_full = full.forward(samples, ForwardRequest(layers=(layer,)))
    h = out_fast.hidden[layer].detach()
    path = torch.cat([0.3 * h, 0.7 * h, h])  # three path points stacked along the batch axis
    a = fast.logits_from_layer(out_fast, layer, path)
    b = full.logits_from_layer(out_full, layer, path)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.allclose(a[-2:], out_fast.class_logits.detach(), atol=1e-5, rtol=1e-5)
    # and gradients through it agree too
    p1 = path.clone().requires_grad_(True)
    p2 = path.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(fast.logits_from_layer(out_fast, layer, p1)[:, 1].sum(), p1)
    (g2,) = torch.autograd.grad(full.logits_from_layer(out_full, layer, p2)[:, 1].sum(), p2)
    assert torch.allclose(g1, g2, atol=1e-6, rtol=1e-4)
