"""A tiny, randomly initialised Qwen2.5-VL checkpoint built locally (no hub access).

:func:`build_tiny_qwen2_5vl` writes a directory laid out like a hub checkpoint of
Qwen2.5-VL-3B/7B-Instruct -- ``config.json`` (a real ``Qwen2_5_VLConfig``) + weights, a
``Qwen2Tokenizer`` with Qwen's special tokens, the chat template and ``preprocessor_config.json``
(``Qwen2VLImageProcessor``, as the released checkpoints name it) -- so it loads back through the
``from_pretrained`` calls a hub id takes. The vision encoder keeps Qwen2.5-VL's window attention
(``window_size`` 56 px = 2 x 2 merged cells per window, full attention in the last block) and its
RMSNorm/SwiGLU blocks; everything is shrunk to run in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .chat_template import QWEN2_5VL_CHAT_TEMPLATE

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)

#: Default sizes; every key can be overridden through ``build_tiny_qwen2_5vl(**config_overrides)``.
DEFAULTS: dict[str, Any] = {
    "text_hidden_size": 64,
    "text_layers": 6,
    "text_heads": 4,
    "text_kv_heads": 2,
    "text_intermediate_size": 128,
    "vision_depth": 3,
    "vision_hidden_size": 32,
    "vision_heads": 2,
    "vision_intermediate_size": 64,
    "window_size": 56,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "min_pixels": 56 * 56,
    "max_pixels": 224 * 224,
    "vocab_size": 1024,
}


def build_tiny_qwen2_5vl(out_dir: str | Path, *, seed: int = 0, **config_overrides: Any) -> Path:
    """Write a tiny random-init Qwen2.5-VL checkpoint to ``out_dir`` and return its path."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config
    from creg.hf.tiny_tokenizers import build_qwen2_tokenizer

    c = tiny_sizes(DEFAULTS, config_overrides, "Qwen2.5-VL")
    head_dim = c["text_hidden_size"] // c["text_heads"]
    half = head_dim // 2  # M-RoPE: (temporal, height, width) sections of the rotary frequencies
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer(SPECIAL_TOKENS, QWEN2_5VL_CHAT_TEMPLATE, vocab_size=c["vocab_size"])
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=tiny_text_config(
            c, vocab_size=padded_vocab_size(tokenizer),
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"]),
        vision_config={
            "depth": c["vision_depth"],
            "hidden_size": c["vision_hidden_size"],
            "intermediate_size": c["vision_intermediate_size"],
            "num_heads": c["vision_heads"],
            "out_hidden_size": c["text_hidden_size"],
            "patch_size": c["patch_size"],
            "spatial_merge_size": c["spatial_merge_size"],
            "temporal_patch_size": c["temporal_patch_size"],
            "window_size": c["window_size"],
            "fullatt_block_indexes": [c["vision_depth"] - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=c["min_pixels"], max_pixels=c["max_pixels"], patch_size=c["patch_size"],
                             temporal_patch_size=c["temporal_patch_size"], merge_size=c["spatial_merge_size"]).save_pretrained(out)
    pp_path = out / "preprocessor_config.json"
    pp = json.loads(pp_path.read_text())
    pp.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5_VLProcessor",
              min_pixels=c["min_pixels"], max_pixels=c["max_pixels"])
    pp_path.write_text(json.dumps(pp, indent=2, sort_keys=True) + "\n")
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2_5VL_CHAT_TEMPLATE}, indent=2) + "\n")
    return out
