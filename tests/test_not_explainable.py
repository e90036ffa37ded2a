"""Models creg cannot explain are refused at load in one line (creg.hf.explainable): a decoder that
cross-attends to the image (a tiny local Mllama checkpoint, saved and loaded through the same
``from_pretrained`` path as every adapter), and an adapter whose layout misses the placeholder run."""

from __future__ import annotations

import types

import pytest
import torch
from click.testing import CliRunner

import creg
import creg.plugins.manager
from creg.plugins.adapter import AdapterConfig
from creg.hf import HFAdapter
from creg.hf.explainable import (NOT_IN_SEQUENCE, ModelNotExplainable, check_layout_matches_placeholders,
                                 cross_attention_in_config)
from creg.hf.loading import load_model


@pytest.fixture(scope="module")
def tiny_mllama_dir(tmp_path_factory):
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    vision = dict(hidden_size=16, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=32,
                  vision_output_dim=32, image_size=28, patch_size=14, max_num_tiles=2, intermediate_layers_indices=[0],
                  supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = dict(vocab_size=300, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, cross_attention_layers=[1], bos_token_id=1, eos_token_id=2, pad_token_id=0,
                max_position_embeddings=256)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-mllama")
    MllamaForConditionalGeneration(MllamaConfig(vision_config=vision, text_config=text,
                                                image_token_index=299)).save_pretrained(out)
    return out


class MllamaAdapter(HFAdapter):
    """What a new author writes for Mllama: it never gets past loading."""

    model_class = "MllamaForConditionalGeneration"

    @classmethod
    def load_processor(cls, config, options):
        return types.SimpleNamespace(tokenizer=None)


def _one_line(message: str) -> None:
    assert "\n" not in message and NOT_IN_SEQUENCE in message


def test_load_model_refuses_a_cross_attention_decoder(tiny_mllama_dir):
    with pytest.raises(ModelNotExplainable, match="cross-attention") as e:
        load_model("MllamaForConditionalGeneration", str(tiny_mllama_dir), device="cpu", dtype="float32",
                   attn_implementation="sdpa")
    _one_line(str(e.value))
    assert "cross_attention_layers = [1]" in str(e.value)


def test_hf_adapter_load_refuses_mllama(tiny_mllama_dir):
    with pytest.raises(ModelNotExplainable) as e:
        MllamaAdapter.load(AdapterConfig(model=str(tiny_mllama_dir), device="cpu"))
    _one_line(str(e.value))


def test_the_loaded_modules_are_checked_too(tiny_mllama_dir):
    """A checkpoint whose config hides the cross-attention (custom code) is caught by its modules."""
    from transformers import MllamaForConditionalGeneration

    from creg.hf.explainable import refuse_cross_attention

    model = MllamaForConditionalGeneration.from_pretrained(str(tiny_mllama_dir))
    with pytest.raises(ModelNotExplainable, match="MllamaTextCrossAttention|MllamaCrossAttentionDecoderLayer"):
        refuse_cross_attention("m", model=model)


def test_self_attention_vlms_pass(tiny_qwen2vl_dir):
    from transformers import AutoConfig

    assert cross_attention_in_config(AutoConfig.from_pretrained(str(tiny_qwen2vl_dir))) == []


def test_creg_run_refuses_mllama_in_one_line(tiny_mllama_dir, tmp_path, monkeypatch):
    from creg.cli.main import cli

    plugin = types.ModuleType("mllama_creg")

    @creg.hookimpl
    def register_adapters(register):
        register("mllama", MllamaAdapter, description="a cross-attention VLM")

    plugin.register_adapters = register_adapters
    plugins = creg.plugins.manager.discover()
    plugins.add_module(plugin, dist="mllama-creg 0.0.1")
    monkeypatch.setattr(creg.plugins.manager, "_cached", plugins)
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "mllama", "--model", str(tiny_mllama_dir), "--device", "cpu",
                                   "--source", "creg,integrated_gradients", "--limit", "1", "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip() and not line.startswith("loading ")]
    assert len(lines) == 1 and NOT_IN_SEQUENCE in lines[0], res.output
    assert not (out / "records.jsonl").exists()


# -- the layout against the placeholder run ----------------------------------------------------------------

def _layout(positions, non_spatial=None):
    from creg.plugins.adapter import VisionLayout

    n = len(positions)
    return VisionLayout(token_index=torch.tensor(positions), grid_hw=(1, n), cell_xy=torch.zeros(1, n, 2),
                        non_spatial_index=None if non_spatial is None else torch.tensor(non_spatial))


IDS = torch.tensor([5, 9, 9, 9, 9, 7, 9, 6])  # placeholder 9 at 1-4 and 6


def test_a_layout_on_the_placeholder_run_passes():
    check_layout_matches_placeholders(IDS, _layout([1, 2, 3, 4, 6]), 9, "m")
    check_layout_matches_placeholders(IDS, _layout([1, 2, 3, 4], non_spatial=[6]), 9, "m")


@pytest.mark.parametrize("positions, non_spatial, why", [
    ([0, 1, 2, 3], [4, 6], "hold no image placeholder"),  # shifted by one
    ([1, 2, 3], None, "belong to no grid"),  # misses placeholders
    ([1, 1, 2, 3, 4, 6], None, "twice"),
])
def test_a_layout_off_the_placeholder_run_is_refused(positions, non_spatial, why):
    with pytest.raises(ModelNotExplainable, match=why) as e:
        check_layout_matches_placeholders(IDS, _layout(positions, non_spatial), 9, "m")
    _one_line(str(e.value))


def test_load_refuses_an_adapter_whose_layout_misses_the_placeholders(tiny_qwen2vl_dir):
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    class ShiftedLayout(Qwen2VLAdapter):  # planted bug: the grid read one token early
        def vision_layouts(self, batch, images):
            return [layout.model_copy(update={"token_index": layout.token_index - 1})
                    for layout in super().vision_layouts(batch, images)]

    Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), device="cpu"))  # the real one loads
    with pytest.raises(ModelNotExplainable, match="hold no image placeholder") as e:
        ShiftedLayout.load(AdapterConfig(model=str(tiny_qwen2vl_dir), device="cpu"))
    _one_line(str(e.value))
