"""The LLaVA adapter (LLaVA-1.5 and LLaVA-NeXT) against the adapter contract, on tiny random checkpoints."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.testing import AdapterContract
from creg_llava.adapter import LlavaAdapter
from preset_runs import run_with_local_preset


@pytest.fixture(scope="module")
def llava15_dir(tmp_path_factory):
    from creg_llava.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava15"), seed=0)


@pytest.fixture(scope="module")
def llava_next_dir(tmp_path_factory):
    from creg_llava.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_next"), next=True, seed=0)


@pytest.fixture(scope="module")
def llava15_padded(tmp_path_factory):
    from creg_llava.tiny import build_tiny_llava

    return LlavaAdapter.load(AdapterConfig(model=str(build_tiny_llava(tmp_path_factory.mktemp("tiny_llava15_pad"),
                                                                     pad_to_square=True, seed=0))))


@pytest.fixture(scope="module")
def llava15(llava15_dir):
    return LlavaAdapter.load(AdapterConfig(model=str(llava15_dir)))


@pytest.fixture(scope="module")
def llava_next(llava_next_dir):
    return LlavaAdapter.load(AdapterConfig(model=str(llava_next_dir)))


class TestLlava15Contract(AdapterContract):
    """The contract's square, wide and tall images: the wide and tall ones are centre-cropped."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, llava15):
        return llava15


class TestLlava15PadToSquareContract(AdapterContract):
    """A LlavaImageProcessor with do_pad: the cells over the padding are declared off the image."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, llava15_padded):
        return llava15_padded


def test_pad_to_square_cells_on_the_padding_are_off_the_image(llava15_padded, tmp_path):
    lay = llava15_padded.forward([_sample(tmp_path, (168, 84))]).vision[0]
    assert lay.grid_hw == (8, 8)
    # 168 x 84 padded to 168 x 168 (42 rows above and below), 21 px per cell: rows 0-1 and 6-7 are padding
    assert lay.cell_xy[:, 0, 1].tolist() == pytest.approx([-42 + 21 * (r + 0.5) for r in range(8)])
    assert lay.in_image[:, 0].tolist() == [False, False, True, True, True, True, False, False]


class TestLlavaNextContract(AdapterContract):
    """Base image + any-resolution tiles (with padding rows or columns unpadded away) + newlines."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, llava_next):
        return llava_next


def test_the_answer_is_the_space_piece_then_the_digit(llava15):
    """Llama's tokenizer continues "ASSISTANT:" with "▁" then "1": the prefix is fed, the digit is the option."""
    tok = llava15.tokenizer
    assert tok.convert_ids_to_tokens(list(llava15.answer.prefix_ids)) == ["▁"]
    assert tok.convert_ids_to_tokens(list(llava15.option_token_ids)) == ["1", "2", "3", "4"]


def _sample(tmp_path, size):
    from creg.core.sample import make_sample
    from creg.testing.adapter_contract import draw_image

    path = tmp_path / f"{size[0]}x{size[1]}.png"
    draw_image(size).save(path)
    return make_sample(id=path.stem, image=path, image_size=size, ref_name="dog", tgt_name="cat",
                       ref_box={"x0": 0, "y0": 0, "x1": 10, "y1": 10},
                       tgt_box={"x0": size[0] - 20, "y0": 0, "x1": size[0] - 5, "y1": 10}, relation="right")


def test_crop_layout_of_a_wide_image(llava15, tmp_path):
    lay = llava15.forward([_sample(tmp_path, (168, 84))]).vision[0]
    assert lay.grid_hw == (8, 8) and not lay.is_multi_grid
    # the crop keeps x in [42, 126] of the 168 px wide image (224 px resized, 56 px cut each side)
    assert lay.cell_xy[..., 0].min().item() == pytest.approx(47.25)
    assert lay.cell_xy[..., 0].max().item() == pytest.approx(120.75)
    assert lay.patch_xy is not None and torch.allclose(lay.patch_xy, lay.cell_xy.double())


def test_next_layout_has_base_grid_tiles_and_newlines(llava_next, tmp_path):
    out = llava_next.forward([_sample(tmp_path, (168, 84))], ForwardRequest(vision_activations=True))
    lay = out.vision[0]
    assert [g.name for g in lay.grids] == ["base", "anyres"]
    base, anyres = lay.grids
    assert base.grid_hw == (8, 8)
    r, c = anyres.grid_hw
    assert lay.non_spatial_index is not None and lay.non_spatial_index.numel() == r  # one newline per row
    # newline tokens sit right after each row of the any-resolution grid
    rows = anyres.token_index.reshape(r, c)
    assert torch.equal(lay.non_spatial_index, rows[:, -1] + 1)
    # GradCAM's activations: base + 2 tiles (112 x 224 canvas), 8 x 8 patches each, stacked along the height
    assert out.vision_activations[0].shape[:2] == (24, 8) == lay.patch_hw


SOURCES = "creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,random,oracle"


@pytest.mark.parametrize("which", ["llava15", "llava_next"])
def test_creg_run_on_the_synthetic_benchmark(which, request, tmp_path):
    """`creg run` with a local preset (the path the hub presets take), every paper source."""
    _, summary = run_with_local_preset(tmp_path, adapter="llava", checkpoint=request.getfixturevalue(f"{which}_dir"),
                                       sources=SOURCES, ig_steps=4)
    assert summary["sources"]["oracle"]["dae"] < 1e-9


def test_another_model_type_is_refused_before_its_weights_load(tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a 'qwen2' model; the llava adapter reads llava / llava_next"):
        LlavaAdapter.load(AdapterConfig(model=str(tmp_path)))


def test_gradcam_on_concatenated_feature_layers_is_refused_clearly(llava15, tmp_path):
    llava15.model.config.vision_feature_layer = [-2, -3]
    try:
        with pytest.raises(ValueError, match=r"GradCAM reads one vision layer; this checkpoint concatenates \[-2, -3\]"):
            llava15.forward([_sample(tmp_path, (112, 112))], ForwardRequest(vision_activations=True))
    finally:
        llava15.model.config.vision_feature_layer = -2
