"""The tiny Qwen2-VL builder's shape options: the ones scripts/bench_throughput.py uses to build
a model of Qwen2-VL-7B-Instruct's shape on a GPU (docs/speed.md), checked here on a small shape."""

import json

import pytest
import torch

from creg_qwen2vl.tiny import QWEN2VL_7B_SHAPE, build_tiny_qwen2vl


def test_7b_shape_matches_the_released_config():
    # Qwen2-VL-7B-Instruct's config.json: hidden 3584, 28 layers, 28 heads / 4 KV heads, MLP 18944,
    # vocab 152064, M-RoPE sections [16, 24, 24] (head_dim 128), vision tower depth 32, width 1280.
    s = QWEN2VL_7B_SHAPE
    assert (s["text_hidden_size"], s["text_layers"], s["text_heads"], s["text_kv_heads"]) == (3584, 28, 28, 4)
    assert (s["text_intermediate_size"], s["model_vocab_size"]) == (18944, 152064)
    assert sum(s["mrope_section"]) == s["text_hidden_size"] // s["text_heads"] // 2
    assert (s["vision_depth"], s["vision_embed_dim"], s["vision_heads"], s["vision_mlp_ratio"]) == (32, 1280, 16, 4)


def test_shape_options_reach_the_saved_config_and_weights(tmp_path):
    out = build_tiny_qwen2vl(tmp_path / "m", init_device="cpu", dtype="bfloat16", model_vocab_size=2048,
                             mrope_section=[2, 3, 3], vision_mlp_ratio=4)
    cfg = json.loads((out / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    assert text["vocab_size"] == 2048
    assert text["rope_parameters"]["mrope_section"] == [2, 3, 3]
    assert cfg["vision_config"]["mlp_ratio"] == 4
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(out, dtype="auto")
    assert model.get_output_embeddings().weight.dtype == torch.bfloat16
    assert model.get_output_embeddings().weight.shape[0] == 2048
    assert torch.get_default_dtype() == torch.float32  # the builder restores it


def test_bad_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="mrope_section"):
        build_tiny_qwen2vl(tmp_path / "a", mrope_section=[1, 2, 3])
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        build_tiny_qwen2vl(tmp_path / "b", model_vocab_size=64)


@pytest.mark.slow
def test_the_builder_needs_no_pytest(tmp_path):
    """The benchmark scripts build their random models where only creg's runtime is installed:
    the builder and its parts (creg.hf.tiny_configs, creg.hf.tiny_tokenizers) import neither pytest nor creg.testing."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['pytest'] = None  # as where pytest is not installed\n"
            "from creg_qwen2vl.tiny import build_tiny_qwen2vl\n"
            f"build_tiny_qwen2vl({str(tmp_path / 'm')!r}, seed=0)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['creg', 'testing']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "m" / "config.json").is_file()
