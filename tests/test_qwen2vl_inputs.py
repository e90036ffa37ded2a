"""Qwen2-VL specifics beyond the contract: both input paths, load-time checks, geometry."""

from __future__ import annotations

import importlib.util
from unittest import mock

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.core.compass import uniform_cell_xy
from creg.core.sample import make_sample
from creg.testing import draw_image
from creg.hf import ChatInputs, answer_tokens
from creg_qwen2vl.adapter import IMAGE_TOKEN, Qwen2VLAdapter, merged_token_count

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def adapter(tiny_qwen2vl_dir):
    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir)))


def _sample(sid: str, size: tuple[int, int], tgt: str = "red ball", seed: int = 0):
    w, h = size
    return make_sample(
        id=sid, image=draw_image(size, noise_seed=seed), image_size=size, ref_name="dog",
        ref_box={"x0": 0, "y0": 0, "x1": w / 4, "y1": h / 4}, tgt_name=tgt,
        tgt_box={"x0": w / 2, "y0": h / 2, "x1": w, "y1": h}, relation="below",
    )


def simulated_processor(manual: ChatInputs):
    """A real ``Qwen2VLProcessor`` over the same tokenizer and image processor. transformers 5.x
    insists on a video processor, which needs torchvision; the class check is patched away, the
    processor's own text expansion and tokenisation run unchanged."""
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    with mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", lambda self, name, arg: type(arg)):
        return Qwen2VLProcessor(
            image_processor=manual.image_processor, tokenizer=manual.tokenizer,
            video_processor=None, chat_template=manual.chat_template,
        )


def test_processor_and_manual_paths_give_identical_inputs(adapter):
    manual = adapter.inputs
    assert manual.mode == ("full" if HAS_TORCHVISION else "manual")
    full = ChatInputs(manual.tokenizer, manual.image_processor, manual.chat_template, image_token=IMAGE_TOKEN,
                      image_token_count=merged_token_count, processor=simulated_processor(manual))
    assert full.mode == "full"
    questions = ["where is the cat?", "In this image, where is the red ball relative to the dog?"]
    texts = [adapter.chat(q) for q in questions]
    images = [draw_image((112, 84), noise_seed=1), draw_image((84, 196), noise_seed=2)]
    a = adapter.encode_texts(texts, images)
    adapter.processor = full
    try:
        b = adapter.encode_texts(texts, images)
    finally:
        adapter.processor = manual
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
        assert torch.equal(a[key], b[key]), key
    assert (a["attention_mask"][0] == 0).any(), "the shorter question is left-padded"


def test_auto_mode_uses_the_processor_when_it_loads(tiny_qwen2vl_dir, adapter):
    processor = simulated_processor(adapter.inputs)
    with mock.patch("transformers.AutoProcessor.from_pretrained", return_value=processor):
        via_processor = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir)))
    assert via_processor.inputs.mode == "full"
    manual = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), options={"processor": "manual"}))
    assert manual.inputs.mode == "manual"
    samples = [_sample("a", (112, 112)), _sample("b", (168, 84), tgt="cat")]
    assert torch.equal(via_processor.forward(samples).class_logits, manual.forward(samples).class_logits)


@pytest.mark.skipif(HAS_TORCHVISION, reason="the full processor loads when torchvision is installed")
def test_full_mode_without_torchvision_says_why(tiny_qwen2vl_dir):
    with pytest.raises(ImportError, match="cannot build the processor"):
        Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), options={"processor": "full"}))


def test_load_defaults_and_frozen_parameters(adapter):
    assert adapter.device.type == "cpu"
    assert adapter.model.dtype == torch.float32
    assert not any(p.requires_grad for p in adapter.model.parameters())
    assert adapter.num_layers == 4
    tok = adapter.inputs.tokenizer
    assert [tok.decode([i]) for i in adapter.option_token_ids] == ["1", "2", "3", "4"]
    assert adapter.answer.prefix_ids == (), "Qwen continues the generation prompt with the digit itself"


def test_bad_options_fail_before_loading(tiny_qwen2vl_dir):
    with pytest.raises(ValueError, match="procesor"):
        Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), options={"procesor": "manual"}))
    with pytest.raises(ValueError, match="processor"):
        Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), options={"processor": "fast"}))
    with pytest.raises(ValueError, match="unknown prompt"):
        Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), prompt="Z"))


class _CharTokenizer:
    """One token per character (ids = code points), except what ``pieces`` says."""

    def __init__(self, pieces=None):
        self.pieces = pieces or {}

    def encode(self, text, add_special_tokens=False):
        out = []
        for ch in text:
            out.extend(self.pieces.get(ch, [ord(ch)]))
        return out

    def decode(self, ids):
        inverse = {tuple(v): k for k, v in self.pieces.items()}
        return "".join(inverse.get((i,), chr(i) if i < 0x110000 else "") for i in ids)


def test_multi_token_option_is_refused():
    splits_three = _CharTokenizer({"3": [0x110001, 0x110002]})
    with pytest.raises(ValueError, match="answer '3' is not one token"):
        answer_tokens(splits_three, "Q: where? A:", lambda o: f"Q: where? A:{o}<end>", "some/model")


def test_prefix_space_piece_is_fed_and_the_digit_is_the_option():
    """Llama-style: "A: 1" is ... ":" "▁" "1" -- the space piece is the answer prefix."""
    tok = _CharTokenizer()
    found = answer_tokens(tok, "Q: where? A:", lambda o: f"Q: where? A: {o}</s>", "llama-like")
    assert found.prefix_ids == (ord(" "),)
    assert found.option_ids == tuple(ord(d) for d in "1234")
    plain = answer_tokens(tok, "Q: where? A:\n", lambda o: f"Q: where? A:\n{o}<end>", "qwen-like")
    assert plain.prefix_ids == () and plain.option_ids == tuple(ord(d) for d in "1234")


def test_answer_position_is_the_end_of_the_generation_prompt(adapter):
    samples = [_sample("short", (112, 112), tgt="cat"), _sample("long", (112, 112), tgt="big red ball on the table")]
    batch = adapter.encode(samples)
    tok = adapter.inputs.tokenizer
    prompt_end = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    for row in batch["input_ids"]:
        assert row[-len(prompt_end):].tolist() == prompt_end
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][0, 0]


@pytest.mark.parametrize("size", [(300, 200), (97, 233), (56, 56)])
def test_cell_centres_undo_the_resize(adapter, size):
    """Qwen resizes to multiples of 28 px (changing the aspect ratio slightly); cells still tile
    the original image uniformly."""
    out = adapter.forward([_sample("s", size)])
    lay = out.vision[0]
    torch.testing.assert_close(lay.cell_xy, uniform_cell_xy(lay.grid_hw, size))
    assert lay.patch_hw == (2 * lay.grid_hw[0], 2 * lay.grid_hw[1])


def test_attention_request_restores_the_attention_kernel(adapter):
    before = adapter.model.config._attn_implementation
    adapter.forward([_sample("s", (56, 56))], ForwardRequest(attentions=True), on_attention=lambda i, a: None)
    assert adapter.model.config._attn_implementation == before
    with pytest.raises(ValueError, match="on_attention"):
        adapter.forward([_sample("s", (56, 56))], ForwardRequest(attentions=True))


def test_images_must_match_the_samples(adapter):
    s = _sample("s", (112, 84))
    with pytest.raises(ValueError, match="2 images for 1 samples"):
        adapter.forward([s], images=[s.load_image(), s.load_image()])
    with pytest.raises(ValueError, match="'s'.*84x112"):
        adapter.forward([s], images=[draw_image((84, 112))])


def test_vision_activations_only_graph_starts_at_the_vision_encoder(adapter):
    out = adapter.forward([_sample("s", (112, 84))], ForwardRequest(layers=(-2,), vision_activations=True))
    act = out.vision_activations[0]
    assert act.grad_fn is None and act.requires_grad
    assert out.hidden[-2].grad_fn is not None, "with vision activations the decoder layers stay in the graph"
    g_act, g_h = torch.autograd.grad(out.class_logits[:, 2].sum(), [act, out.hidden[-2]])
    assert g_act.abs().sum() > 0 and g_h.abs().sum() > 0


def test_tiny_builder_overrides(tmp_path):
    from transformers import AutoTokenizer, Qwen2VLConfig

    from creg_qwen2vl.tiny import build_tiny_qwen2vl

    with pytest.raises(TypeError, match="unknown tiny Qwen2-VL option"):
        build_tiny_qwen2vl(tmp_path / "x", text_layer=3)
    path = build_tiny_qwen2vl(tmp_path / "small", seed=1, text_layers=2, vision_depth=1, text_hidden_size=32, vision_embed_dim=16)
    config = Qwen2VLConfig.from_pretrained(path)
    assert config.text_config.num_hidden_layers == 2 and config.text_config.hidden_size == 32
    assert config.vision_config.depth == 1 and config.vision_config.embed_dim == 16
    tok = AutoTokenizer.from_pretrained(path)
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|endoftext|>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    small = Qwen2VLAdapter.load(AdapterConfig(model=str(path)))
    assert small.num_layers == 2 and small.forward([_sample("s", (56, 84))]).class_logits.shape == (1, 4)
