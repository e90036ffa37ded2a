"""The adapter contract must fail adapters with the bugs it exists to catch.

Each broken adapter below is a working adapter (the real Qwen2-VL adapter, or one of
tests/contract_adapters.py) with one classic mistake. The contract
class is run against it in a nested pytest session (as a third party's suite would run it), and
the tests that guard against that mistake must fail while unrelated ones still pass.
"""

from __future__ import annotations

import textwrap

import pytest
from creg.plugins.adapter import AdapterConfig, ForwardOutput, ForwardRequest, VisionLayout
from creg.core.compass import uniform_cell_xy
from creg.hf import AnswerTokens
from creg_qwen2vl.adapter import Qwen2VLAdapter
from contract_adapters import (CentreCropQwen2VLAdapter, LlamaStyleChatQwen2VLAdapter, MirroredThumbnailAdapter,
                               TiledExampleAdapter)


def _with_layouts(output: ForwardOutput, samples, fix) -> ForwardOutput:
    """``output`` with each sample's layout replaced by ``fix(layout, sample)``."""
    output.vision = [fix(lay, s) for lay, s in zip(output.vision, samples)]
    return output


class TransposedGridAdapter(Qwen2VLAdapter):
    """Reads the merged grid as (W_g, H_g): a square image hides it, a non-square one does not."""

    def forward(self, samples, request=ForwardRequest(), **kw):
        def fix(lay: VisionLayout, sample) -> VisionLayout:
            gw, gh = lay.grid_hw
            return lay.model_copy(update={"grid_hw": (gh, gw), "cell_xy": uniform_cell_xy((gh, gw), sample.image_size)})

        return _with_layouts(super().forward(samples, request, **kw), samples, fix)


class MirroredRowsAdapter(Qwen2VLAdapter):
    """Lists each row of vision tokens right to left (cell_xy still left to right)."""

    def forward(self, samples, request=ForwardRequest(), **kw):
        def fix(lay: VisionLayout, sample) -> VisionLayout:
            return lay.model_copy(update={"token_index": lay.token_index.reshape(lay.grid_hw).flip(1).reshape(-1)})

        return _with_layouts(super().forward(samples, request, **kw), samples, fix)


class ListIndexedLayersAdapter(Qwen2VLAdapter):
    """Resolves a negative hidden-state index like ``model.layers[l]``: -2..-5 land one block
    early (0 and -1 are still right), consistently in forward and replay."""

    def layer_to_block(self, layer):
        if layer < -1:
            return self.num_layers + layer
        return super().layer_to_block(layer)


class UnpaddedTokenIndexAdapter(Qwen2VLAdapter):
    """Gives token positions as if no row were left-padded."""

    def vision_layouts(self, batch, images):
        layouts = super().vision_layouts(batch, images)
        pads = (batch["attention_mask"] == 0).sum(dim=1).tolist()
        return [lay.model_copy(update={"token_index": lay.token_index - pad}) for lay, pad in zip(layouts, pads)]


class CropIgnoredAdapter(CentreCropQwen2VLAdapter):
    """Crops the image like the model's processor but spreads cell_xy over the whole image."""

    def crop_region(self, image):
        return (0, 0, *image.size)


class DroppedAnswerPrefixAdapter(LlamaStyleChatQwen2VLAdapter):
    """Reads the class logits right after ``ASSISTANT:``, where the model writes the space piece."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answer = AnswerTokens(prefix_ids=(), option_ids=self.answer.option_ids)


class StaleReplayAdapter(Qwen2VLAdapter):
    """``logits_from_layer`` returns the stored logits instead of running the decoder."""

    def logits_from_layer(self, output, layer, hidden):
        r = hidden.shape[0] // output.class_logits.shape[0]
        return output.class_logits.detach().repeat(r, 1)


CONTRACT_FILE = textwrap.dedent(
    """
    import pytest
    from creg.testing import AdapterContract

    class TestUnderContract(AdapterContract):
        @pytest.fixture(scope="class")
        @classmethod
        def adapter(cls, adapter_under_test):
            return adapter_under_test
    """
)


class _Runner:
    """A pytest plugin: provides ``adapter_under_test`` and records each test's outcome."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}

    @pytest.fixture(scope="session")
    def adapter_under_test(self):
        return self._adapter

    def pytest_runtest_logreport(self, report):
        name = report.nodeid.split("::")[-1]
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[name] = report.outcome
            self.messages[name] = str(report.longrepr or "")


def run_tests(source: str, adapter, tmp_path, selection: str) -> _Runner:
    """Run the tests of ``source`` matching ``selection`` (-k) in a nested pytest session."""
    path = tmp_path / f"test_contract_{tmp_path.name}.py"  # unique: earlier runs stay in sys.modules
    path.write_text(source)
    runner = _Runner(adapter)
    pytest.main(
        [str(path), "-q", "-k", selection, "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "--import-mode=importlib"],
        plugins=[runner],
    )
    assert runner.outcomes, "no contract test ran"
    return runner


def run_contract(adapter, tmp_path, selection: str) -> dict[str, str]:
    """Run the contract tests matching ``selection`` on ``adapter``; test name -> outcome."""
    return run_tests(CONTRACT_FILE, adapter, tmp_path, selection).outcomes


@pytest.fixture(scope="module")
def tiny_adapter(tiny_qwen2vl_deep_dir):
    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir)))


def _as(cls, adapter: Qwen2VLAdapter) -> Qwen2VLAdapter:
    """The same loaded model behind a (broken) adapter class."""
    return cls(adapter.config, adapter.model, adapter.processor, adapter.options)


def _markers(outcomes: dict[str, str], sizes: str) -> dict[str, str]:
    """The marker tests on images ``sizes`` ("0" square, "1" wide, "2" tall; e.g. "12")."""
    return {n: o for n, o in outcomes.items()
            if n.startswith("test_marker_lands_in_its_cell") and any(f"[{i}-" in n for i in sizes)}


GEOMETRY = "marker or shapes or batch"
REPLAY = "logits_from_layer"



def test_transposed_grid_fails_on_non_square_images(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(TransposedGridAdapter, tiny_adapter), tmp_path, GEOMETRY)
    non_square, square = _markers(outcomes, "12"), _markers(outcomes, "0")
    assert len(non_square) == 4 and set(non_square.values()) == {"failed"}, outcomes
    assert square and set(square.values()) == {"passed"}, outcomes


def test_mirrored_token_order_fails_the_marker_test(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(MirroredRowsAdapter, tiny_adapter), tmp_path, GEOMETRY)
    marker = {n: o for n, o in outcomes.items() if n.startswith("test_marker_lands_in_its_cell")}
    assert len(marker) == 10 and set(marker.values()) == {"failed"}, outcomes
    assert outcomes["test_output_shapes_and_dtypes"] == "passed"


def test_stale_replay_fails_the_replay_tests(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(StaleReplayAdapter, tiny_adapter), tmp_path, REPLAY)
    assert outcomes == {
        "test_logits_from_layer_reproduces_class_logits": "failed",
        "test_logits_from_layer_is_differentiable": "failed",
    }


def test_missing_adapter_fixture_says_what_to_provide(tmp_path):
    source = "from creg.testing import AdapterContract\n\nclass TestNoFixture(AdapterContract):\n    pass\n"
    runner = run_tests(source, None, tmp_path, "shapes")
    assert runner.outcomes == {"test_output_shapes_and_dtypes": "failed"}
    assert "NotImplementedError" in runner.messages["test_output_shapes_and_dtypes"]
    assert "must provide an `adapter` fixture" in runner.messages["test_output_shapes_and_dtypes"]


def test_list_indexed_negative_layers_fail_the_depth_check(tiny_adapter, tmp_path):
    broken = _as(ListIndexedLayersAdapter, tiny_adapter)
    outcomes = run_contract(broken, tmp_path, "hidden_state_indices or logits_from_layer_reproduces")
    assert outcomes == {
        "test_hidden_state_indices_are_the_models_own": "failed",
        # forward and replay agree with each other, so only the depth check can see it
        "test_logits_from_layer_reproduces_class_logits": "passed",
    }, outcomes
    assert run_contract(tiny_adapter, tmp_path, "hidden_state_indices") == {"test_hidden_state_indices_are_the_models_own": "passed"}


def test_token_index_ignoring_left_padding_fails_the_padding_check(tiny_adapter, tmp_path):
    outcomes = run_contract(_as(UnpaddedTokenIndexAdapter, tiny_adapter), tmp_path, "padding or marker")
    assert outcomes.pop("test_padding_changes_nothing") == "failed"
    # the marker tests batch images of one size and names: nothing is padded there
    assert set(outcomes.values()) == {"passed"}, outcomes


@pytest.fixture(scope="module")
def crop_adapter(tiny_qwen2vl_deep_dir):
    return CentreCropQwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir)))


def test_cell_xy_ignoring_the_crop_fails_every_marker_test_on_non_square_images(crop_adapter, tmp_path):
    assert set(run_contract(crop_adapter, tmp_path, "marker").values()) == {"passed"}, "the correct crop adapter passes"
    outcomes = run_contract(_as(CropIgnoredAdapter, crop_adapter), tmp_path, "marker")
    non_square, square = _markers(outcomes, "12"), _markers(outcomes, "0")
    assert len(non_square) == 4 and set(non_square.values()) == {"failed"}, outcomes
    assert len(square) == 2 and set(square.values()) == {"passed"}, "a square image is not cropped"


@pytest.fixture(scope="module")
def llama_chat_adapter(tiny_qwen2vl_deep_dir):
    return LlamaStyleChatQwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir)))


def test_answer_read_before_the_prefix_space_piece_fails_the_answer_check(llama_chat_adapter, tmp_path):
    ad = llama_chat_adapter
    assert [ad.tokenizer.decode([t]) for t in ad.answer.prefix_ids] == [" "], "the digit follows a space piece"
    selection = "answers_with or next_token_logits"
    assert run_contract(ad, tmp_path, selection) == {
        "test_class_logits_are_what_the_model_answers_with": "passed",
        "test_class_logits_are_the_models_next_token_logits": "passed",
    }
    outcomes = run_contract(_as(DroppedAnswerPrefixAdapter, ad), tmp_path, selection)
    assert outcomes == {
        "test_class_logits_are_what_the_model_answers_with": "failed",
        # its own next-token reference reads the same wrong position: only the new check sees it
        "test_class_logits_are_the_models_next_token_logits": "passed",
    }, outcomes


def test_mirrored_thumbnail_fails_the_multi_grid_marker_test(tmp_path):
    broken = MirroredThumbnailAdapter.load(AdapterConfig(model="random:0"))
    outcomes = run_contract(broken, tmp_path, "marker or shapes")
    marker = {n: o for n, o in outcomes.items() if n.startswith("test_marker_lands_in_its_cell")}
    assert len(marker) == 10 and set(marker.values()) == {"failed"}, outcomes
    assert outcomes["test_output_shapes_and_dtypes"] == "passed"
    assert set(run_contract(TiledExampleAdapter.load(AdapterConfig(model="random:0")), tmp_path, "marker").values()) == {"passed"}
