"""The contract compares an adapter with its checkpoint, not with itself: each check here is
shown catching the realistic bug it exists for (issue 19), planted in a working first-party
adapter on a tiny checkpoint, while the older checks -- which compare the adapter with its own
chat, inputs and hooked module -- let the same bug through.
"""

from __future__ import annotations

import copy
import textwrap

import pytest

from creg.plugins.adapter import AdapterConfig
from creg.hf import token_grid_layout
from creg.testing.adapter_contract import draw_image
from creg_gemma3.adapter import Gemma3Adapter
from creg_idefics3.adapter import Idefics3Adapter
from creg_mistral3.adapter import Mistral3Adapter
from test_contract_catches_broken_adapter import CONTRACT_FILE, run_contract, run_tests


@pytest.fixture(scope="module")
def mistral3(tmp_path_factory):
    from creg_mistral3.tiny import build_tiny_mistral3

    return Mistral3Adapter.load(AdapterConfig(model=str(build_tiny_mistral3(tmp_path_factory.mktemp("m3")))))


@pytest.fixture(scope="module")
def idefics3(tmp_path_factory):
    from creg_idefics3.tiny import build_tiny_idefics3

    return Idefics3Adapter.load(AdapterConfig(model=str(build_tiny_idefics3(tmp_path_factory.mktemp("i3")))))


def _as(cls, adapter):
    """The same loaded model behind a (broken) adapter class."""
    return cls(adapter.config, adapter.model, adapter.processor, adapter.options)


# -- chat(): the checkpoint's template -------------------------------------------------------
class HandWrittenChatIdefics3(Idefics3Adapter):
    """SmolVLM's chat written out by hand, as its template renders it: the answer after a space."""

    def chat(self, question, answer=None):
        text = f"<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:"
        return text if answer is None else f"{text} {answer}<end_of_utterance>\n"


class SpaceDroppedChatIdefics3(HandWrittenChatIdefics3):
    """Drops the space before the answer: the option is read one token early (where the model writes the space)."""

    def chat(self, question, answer=None):
        return super().chat(question, answer).replace("Assistant: ", "Assistant:")


def test_chat_without_the_space_before_the_answer_fails_the_template_check(idefics3, tmp_path):
    selection = "checkpoints_template or answers_with"
    assert set(run_contract(_as(HandWrittenChatIdefics3, idefics3), tmp_path, selection).values()) == {"passed"}
    outcomes = run_contract(_as(SpaceDroppedChatIdefics3, idefics3), tmp_path, selection)
    assert outcomes == {
        "test_chat_is_the_checkpoints_template": "failed",
        # the answer is read where this chat puts it, consistently: only the template check sees it
        "test_class_logits_are_what_the_model_answers_with": "passed",
    }, outcomes


# -- GradCAM's layer: what the projector reads -------------------------------------------------
class SecondToLastBlockMistral3(Mistral3Adapter):
    """GradCAM hooked on the second-to-last Pixtral block; the projector reads the last one."""

    def vision_hook(self, batch, layouts):
        hook = super().vision_hook(batch, layouts)
        hook.module = self.model.model.vision_tower.transformer.layers[-2]
        return hook


class BlockBeforeTheNormIdefics3(Idefics3Adapter):
    """GradCAM hooked on the last SigLIP block; the connector reads the post-layernorm output after it."""

    def vision_hook(self, batch, layouts):
        hook = super().vision_hook(batch, layouts)
        hook.module = self.model.model.vision_model.encoder.layers[-1]
        return hook


@pytest.mark.parametrize("broken, fixture", [(SecondToLastBlockMistral3, "mistral3"), (BlockBeforeTheNormIdefics3, "idefics3")])
def test_gradcam_on_a_neighbouring_layer_fails_the_vision_check(broken, fixture, request, tmp_path):
    adapter = request.getfixturevalue(fixture)
    selection = "test_vision_activations"
    assert set(run_contract(adapter, tmp_path, selection).values()) == {"passed"}
    outcomes = run_contract(_as(broken, adapter), tmp_path, selection)
    assert outcomes == {
        "test_vision_activations_are_what_the_model_reads": "failed",
        # shapes, gradients and the marker's patch all look right on the neighbouring layer
        "test_vision_activations": "passed",
    }, outcomes


# -- cell_xy over the original image, on an image the processor resizes -------------------------
class ResizedCanvasMistral3(Mistral3Adapter):
    """Lays ``cell_xy`` over the resized canvas (``image_sizes``) instead of the original image."""

    def vision_layouts(self, batch, images):
        px, m = self.processor.image_call_kwargs["patch_size"], self.model.config.spatial_merge_size
        return [token_grid_layout(row, self.processor.image_token_id, (h // px, w // px), (0, 0, w, h), (w, h),
                                  patch_hw=(h * m // px, w * m // px))
                for row, (h, w) in zip(batch["input_ids"], batch["image_sizes"].tolist())]


def test_canvas_cell_xy_fails_on_images_the_processor_shrinks(mistral3, tmp_path):
    # (the test's name must not contain the selection: -k also matches the nested file's name)
    outcomes = run_contract(_as(ResizedCanvasMistral3, mistral3), tmp_path, "marker or resized")
    # 112x112, 168x84 and 84x168 are whole 28 px tokens: Pixtral keeps them as they are; the
    # contract's 450x270 and 336x224 exceed the tiny checkpoint's 224 px longest edge
    assert {n for n, o in outcomes.items() if o == "failed"} == {
        *(f"test_marker_lands_in_its_cell[{i}-{where}]" for i in (3, 4) for where in ("bottom_left", "top_right")),
        "test_some_test_image_is_resized"}, outcomes
    assert len(outcomes) == 11, outcomes


NOT_RESIZED = textwrap.dedent(
    """
    import pytest
    from creg.testing import AdapterContract

    class TestUnderContract(AdapterContract):
        extra_marker_sizes = ()  # only 112x112, 168x84, 84x168: whole Pixtral tokens, never resized

        @pytest.fixture(scope="class")
        @classmethod
        def adapter(cls, adapter_under_test):
            return adapter_under_test
    """
)


def test_the_contract_fails_when_no_test_image_is_resized(mistral3, tmp_path):
    runner = run_tests(NOT_RESIZED, mistral3, tmp_path, "resized")
    assert runner.outcomes == {"test_some_test_image_is_resized": "failed"}
    assert "no test image is resized" in runner.messages["test_some_test_image_is_resized"]


# -- encode(): the checkpoint's processor (here its reference path) ----------------------------
def _extra_break(inputs, vision, i):
    """[IMG_BREAK] after every row, the last one too, then [IMG_END]."""
    h, w = (int(v) // inputs.image_call_kwargs["patch_size"] for v in vision["image_sizes"][i])
    return ("[IMG]" * w + "[IMG_BREAK]") * h + "[IMG_END]"


def test_an_extra_image_break_fails_the_input_check(mistral3, tmp_path):
    broken = _as(Mistral3Adapter, mistral3)
    broken.processor = copy.copy(mistral3.processor)
    broken.processor.image_text = _extra_break
    runner = run_tests(CONTRACT_FILE, broken, tmp_path, "checkpoints_processor or marker")
    failed = {n for n, o in runner.outcomes.items() if o == "failed"}
    assert failed == {"test_inputs_are_the_checkpoints_processor"}, runner.outcomes
    message = runner.messages["test_inputs_are_the_checkpoints_processor"]
    assert "Mistral3Adapter.reference_inputs (the checkpoint's processor cannot be built here" in message


# -- a second BOS: the chat text starts with it and the tokenizer adds one ----------------------
class DoubleBosGemma3(Gemma3Adapter):
    """Feeds the rendered chat to the processor as is: Gemma's tokenizer adds BOS before the template's."""

    def encode_texts(self, texts, images):
        return dict(self.processor.processor(text=list(texts), images=[[im] for im in images], padding=True,
                                             return_tensors="pt").items())


def test_a_second_bos_token_fails_the_input_check(tmp_path_factory, tmp_path):
    from creg_gemma3.tiny import build_tiny_gemma3

    gemma3 = Gemma3Adapter.load(AdapterConfig(model=str(build_tiny_gemma3(tmp_path_factory.mktemp("g3")))))
    bos = gemma3.tokenizer.bos_token_id
    assert gemma3.encode_texts([gemma3.chat("q")], [draw_image((112, 112))])["input_ids"][0].tolist().count(bos) == 1
    outcomes = run_contract(_as(DoubleBosGemma3, gemma3), tmp_path, "checkpoints_processor or answers_with")
    assert outcomes == {
        "test_inputs_are_the_checkpoints_processor": "failed",
        # the model answers after two BOS tokens just as consistently
        "test_class_logits_are_what_the_model_answers_with": "passed",
    }, outcomes
