"""creg.hf, the toolkit under the Hugging Face adapters: the pieces on their own, and big-model
placement (accelerate's device map) on CPU."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest, LayerOutOfRange
from creg.hf import HFAdapter, find_decoder, repeat_batch
from creg.core.sample import make_sample
from creg.testing import draw_image
from creg_qwen2vl.adapter import Qwen2VLAdapter


def _sample(sid, size, ref="dog", seed=0):
    w, h = size
    return make_sample(id=sid, image=draw_image(size, noise_seed=seed), image_size=size, ref_name=ref,
                       ref_box={"x0": 0, "y0": 0, "x1": w / 4, "y1": h / 4}, tgt_name="cat",
                       tgt_box={"x0": w / 2, "y0": h / 2, "x1": w, "y1": h}, relation="below")


@pytest.fixture(scope="module")
def adapter(tiny_qwen2vl_deep_dir):
    # on the CPU in float32, as the CPU-mapped copy below (on a GPU machine "auto" means CUDA and bfloat16)
    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir), device="cpu", dtype="float32"))


def test_repeat_batch_stacks_batch_first_tensors_only():
    b = 2
    value = {"mask": torch.arange(6).reshape(2, 3), "cos_sin": (torch.ones(2, 4), torch.zeros(2, 4)),
             "shared": torch.arange(5), "flag": True}
    out = repeat_batch(value, 3, b)
    assert out["mask"].shape == (6, 3) and torch.equal(out["mask"][4], value["mask"][0])  # row i <- sample i % b
    assert out["cos_sin"][0].shape == (6, 4) and torch.equal(out["shared"], value["shared"]) and out["flag"] is True


def test_append_tokens_extends_every_per_token_tensor():
    batch = {"input_ids": torch.tensor([[0, 5, 6], [7, 8, 9]]), "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
             "mm_token_type_ids": torch.tensor([[0, 1, 0], [1, 0, 0]]), "pixel_values": torch.ones(4, 3)}
    out = HFAdapter.append_tokens(batch, [42])
    assert out["input_ids"][:, -1].tolist() == [42, 42] and out["attention_mask"][:, -1].tolist() == [1, 1]
    assert out["mm_token_type_ids"][:, -1].tolist() == [0, 0] and torch.equal(out["pixel_values"], batch["pixel_values"])
    assert HFAdapter.append_tokens(batch, []) is batch


def test_find_decoder_names_what_is_missing():
    class NoDecoder(torch.nn.Module):
        def get_decoder(self):
            return torch.nn.Linear(2, 2)

    with pytest.raises(TypeError, match="NoDecoder.get_decoder.*layers"):
        find_decoder(NoDecoder())


def test_decoder_parts_are_the_models(adapter):
    parts = find_decoder(adapter.model)
    assert parts.layers is adapter.model.model.language_model.layers and len(parts) == 6
    assert parts.norm is adapter.model.model.language_model.norm and parts.head is adapter.model.lm_head


def test_layers_beyond_the_model_are_one_clear_line(adapter):
    with pytest.raises(LayerOutOfRange, match=r"layer -8 is out of range: .* 6 decoder layers, so hidden-state indices run from -7 to 6"):
        adapter.forward([_sample("s", (56, 56))], ForwardRequest(layers=(-2, -8)))


def test_teacher_forced_answer_logits_are_the_class_logits(adapter):
    samples = [_sample("a", (112, 84)), _sample("b", (84, 112), ref="small brown dog")]
    torch.testing.assert_close(adapter.answer_logits(samples), adapter.forward(samples).class_logits, atol=1e-4, rtol=0)


def test_accelerate_device_map_on_cpu(tiny_qwen2vl_deep_dir, adapter):
    """Loaded with a device map and dispatched through accelerate's hooks (every block on "cpu"):
    the leaf, captured states, vision activations, replay and attention stream are unchanged."""
    from accelerate import dispatch_model

    device_map = {"model.visual": "cpu", "model.language_model.embed_tokens": "cpu",
                  "model.language_model.rotary_emb": "cpu", "model.language_model.norm": "cpu", "lm_head": "cpu",
                  **{f"model.language_model.layers.{i}": "cpu" for i in range(6)}}
    placed = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir), dtype="float32",
                                               options={"device_map": device_map}))
    dispatch_model(placed.model, device_map=device_map, force_hooks=True)  # as on several devices
    assert hasattr(placed.decoder.layers[0], "_hf_hook") and placed.device.type == "cpu"
    samples = [_sample("a", (112, 84), seed=1), _sample("b", (84, 112), ref="small brown dog", seed=2)]
    request = ForwardRequest(layers=(-2, -4), vision_activations=True)
    a, b = placed.forward(samples, request), adapter.forward(samples, request)
    torch.testing.assert_close(a.class_logits, b.class_logits, atol=1e-6, rtol=0)
    grads = [torch.autograd.grad(o.class_logits[:, 0].sum(), [o.hidden[-4], *o.vision_activations]) for o in (a, b)]
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-5)
    h = a.hidden[-4].detach()
    torch.testing.assert_close(placed.logits_from_layer(a, -4, torch.cat([h, 0.5 * h])),
                               adapter.logits_from_layer(b, -4, torch.cat([h, 0.5 * h])), atol=1e-5, rtol=0)
    seen = []
    placed.forward(samples, ForwardRequest(attentions=True), on_attention=lambda i, w: seen.append((i, w.device.type)))
    assert seen == [(i, "cpu") for i in range(6)]


@pytest.mark.parametrize("prepend", [False, True])
def test_the_hook_order_pitfall(adapter, prepend):
    """transformers 5 installs its output-capturing hooks the first time hidden states are asked
    for; a later forward hook that replaces a layer's output is seen by ``output_hidden_states``
    only when registered with ``prepend=True`` (docs/adapter-guide.md, the hook-order pitfall)."""
    batch = adapter.encode([_sample("s", (56, 56))])
    with torch.no_grad():
        adapter.model(**batch, use_cache=False, output_hidden_states=True)  # installs transformers' hooks
    kept = {}

    def replace(module, args, output):
        kept["new"] = (2 * output).detach().requires_grad_(True)
        return kept["new"]

    handle = adapter.decoder.layers[2].register_forward_hook(replace, prepend=prepend)
    try:
        with torch.no_grad():
            recorded = adapter.model(**batch, use_cache=False, output_hidden_states=True).hidden_states[3]
    finally:
        handle.remove()
    assert (recorded is kept["new"]) == prepend
