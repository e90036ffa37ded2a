"""The InternVL adapter against the adapter contract, on a tiny random checkpoint with tiling on."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.testing import AdapterContract
from creg_internvl.adapter import InternVLAdapter
from preset_runs import run_with_local_preset


@pytest.fixture(scope="module")
def internvl_dir(tmp_path_factory):
    from creg_internvl.tiny import build_tiny_internvl

    return build_tiny_internvl(tmp_path_factory.mktemp("tiny_internvl"), seed=0)


@pytest.fixture(scope="module")
def internvl(internvl_dir):
    return InternVLAdapter.load(AdapterConfig(model=str(internvl_dir)))


class TestInternVLContract(AdapterContract):
    """Square (1 tile, no thumbnail), wide (2 x 1 tiles + thumbnail), tall (1 x 2 tiles + thumbnail)."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, internvl):
        return internvl


class TestInternVLContractOddSizes(TestInternVLContract):
    """Aspect ratios between tile arrangements (1 x 3, 3 x 1 tiles), stretched onto the canvas."""

    image_sizes = ((61, 203), (300, 97))


def _sample(tmp_path, size):
    from creg.core.sample import make_sample
    from creg.testing.adapter_contract import draw_image

    path = tmp_path / f"{size[0]}x{size[1]}.png"
    draw_image(size).save(path)
    w, h = size
    return make_sample(id=path.stem, image=path, image_size=size, ref_name="dog", tgt_name="cat",
                       ref_box={"x0": 0, "y0": 0, "x1": w / 4, "y1": h / 4},
                       tgt_box={"x0": w / 2, "y0": h / 2, "x1": w, "y1": h}, relation="below")


def test_tiles_and_thumbnail_by_default(internvl, tmp_path):
    out = internvl.forward([_sample(tmp_path, (168, 84))], ForwardRequest(vision_activations=True))
    lay = out.vision[0]
    assert [g.name for g in lay.grids] == ["tile0", "tile1", "thumbnail"]
    assert all(g.grid_hw == (4, 4) for g in lay.grids)  # 112 px tiles, 14 px patches, 2 x 2 pixel shuffle
    # <img> and </img> bracket the run of <IMG_CONTEXT> tokens, which the grids share out in order
    ids = internvl.encode([_sample(tmp_path, (168, 84))])["input_ids"][0]
    run = torch.cat([g.token_index for g in lay.grids])
    assert torch.equal(run, torch.arange(run[0], run[0] + 48))
    tok = internvl.tokenizer
    assert ids[run[0] - 1] == tok.start_image_token_id and ids[run[-1] + 1] == tok.end_image_token_id
    # the thumbnail covers the whole image, each tile half of it
    assert lay.grids[2].cell_xy[0, :, 0].tolist() == pytest.approx([21, 63, 105, 147])
    assert lay.grids[0].cell_xy[0, :, 0].tolist() == pytest.approx([10.5, 31.5, 52.5, 73.5])
    assert lay.grids[1].cell_xy[0, :, 0].tolist() == pytest.approx([94.5, 115.5, 136.5, 157.5])
    assert out.vision_activations[0].shape[:2] == (24, 8) == lay.patch_hw


def test_tiling_can_be_switched_off(internvl_dir, tmp_path):
    adapter = InternVLAdapter.load(AdapterConfig(model=str(internvl_dir), options={"tiling": False}))
    lay = adapter.forward([_sample(tmp_path, (168, 84))]).vision[0]
    assert not lay.is_multi_grid and lay.grid_hw == (4, 4)
    assert lay.cell_xy[0, 0].tolist() == pytest.approx([168 / 8, 84 / 8])


def test_the_option_is_the_digit_itself(internvl):
    tok = internvl.tokenizer
    assert internvl.answer.prefix_ids == ()
    assert tok.convert_ids_to_tokens(list(internvl.option_token_ids)) == ["1", "2", "3", "4"]


def test_creg_run_on_the_synthetic_benchmark(internvl_dir, tmp_path):
    """`creg run` with a local preset (the path the hub presets take), every paper source."""
    _, summary = run_with_local_preset(
        tmp_path, adapter="internvl", checkpoint=internvl_dir, ig_steps=4,
        sources="creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,random,oracle")
    assert summary["sources"]["oracle"]["dae"] < 1e-9


def test_inputs_are_the_processors_own(internvl_dir):
    """The adapter's inputs equal InternVLProcessor's (its default crop_to_patches=True: tiles + thumbnail)."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer

    from creg.testing.adapter_contract import draw_image
    from creg_internvl.reference import processor_without_video

    adapter = InternVLAdapter.load(AdapterConfig(model=str(internvl_dir)))
    tokenizer = AutoTokenizer.from_pretrained(internvl_dir)
    tokenizer.padding_side = "left"
    processor = processor_without_video(tokenizer, AutoImageProcessor.from_pretrained(internvl_dir), adapter.tokens_per_tile)
    images = [draw_image(size, "top_right", noise_seed=i) for i, size in enumerate([(112, 112), (168, 84), (84, 168), (300, 97)])]
    texts = [adapter.chat(q) for q in ("Where is the dog?", "Is the red ball left of the cat?", "a", "b")]
    ours = adapter.encode_texts(texts, images)
    theirs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert set(ours) == {"input_ids", "attention_mask", "pixel_values"}
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert isinstance(images[0], Image.Image) and ours["pixel_values"].shape[0] == 1 + 3 + 3 + 4
