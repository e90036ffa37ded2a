"""A tiny, randomly initialised Qwen2-VL checkpoint built locally (no hub access).

:func:`build_tiny_qwen2vl` writes a directory laid out like a hub checkpoint of
Qwen2-VL-2B/7B-Instruct -- ``config.json`` + weights, a ``Qwen2Tokenizer`` (byte-level BPE with
Qwen's pre-tokenizer and special tokens), the chat template and ``preprocessor_config.json`` --
so that it loads back through exactly the ``from_pretrained`` calls a hub id takes. It is for
tests and toy training: seconds to build, a few MB, CPU friendly.

The tokenizer is trained on the prompt templates, so the prompt words are single tokens or
short pieces; each option digit "1".."4" is one token (Qwen's pre-tokenizer splits digits).

Calling the model directly (not through the adapter): transformers 5.x needs
``mm_token_type_ids`` (1 at ``<|image_pad|>`` tokens, else 0) next to ``input_ids`` to compute
M-RoPE positions; ``Qwen2VLAdapter.encode`` returns complete inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .chat_template import QWEN2VL_CHAT_TEMPLATE

#: Special tokens of the Qwen2-VL tokenizer that the chat template and image processing use.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: Default sizes; every key can be overridden through ``build_tiny_qwen2vl(**config_overrides)``.
DEFAULTS: dict[str, Any] = {
    "text_hidden_size": 64,
    "text_layers": 4,
    "text_heads": 4,
    "text_kv_heads": 2,
    "text_intermediate_size": 128,
    "vision_depth": 2,
    "vision_embed_dim": 32,
    "vision_heads": 2,
    "vision_mlp_ratio": 2,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "min_pixels": 56 * 56,
    "max_pixels": 224 * 224,
    "vocab_size": 1024,
    # None: the tokenizer's length rounded up to 64; a full-size shape sets the released 152064
    "model_vocab_size": None,
    # None: head_dim/2 split into (temporal, height, width) as evenly as possible
    "mrope_section": None,
}

#: The shape of Qwen2-VL-7B-Instruct (its config.json): ``build_tiny_qwen2vl(out, **QWEN2VL_7B_SHAPE)``
#: writes a random-init model of that size (8.3 B parameters, ~16.6 GB in bfloat16) for speed and
#: memory measurements on a GPU (scripts/bench_throughput.py ``--shape 7b``); never for tests.
QWEN2VL_7B_SHAPE: dict[str, Any] = {
    "text_hidden_size": 3584,
    "text_layers": 28,
    "text_heads": 28,
    "text_kv_heads": 4,
    "text_intermediate_size": 18944,
    "vision_depth": 32,
    "vision_embed_dim": 1280,
    "vision_heads": 16,
    "vision_mlp_ratio": 4,
    "model_vocab_size": 152064,
    "mrope_section": [16, 24, 24],
    "min_pixels": 56 * 56,
    "max_pixels": 28 * 28 * 1280,
}


def build_tokenizer(vocab_size: int = DEFAULTS["vocab_size"]):
    """A ``Qwen2Tokenizer``: byte-level BPE trained on the prompt templates, Qwen's special tokens."""
    from creg.hf.tiny_tokenizers import build_qwen2_tokenizer

    return build_qwen2_tokenizer(SPECIAL_TOKENS, QWEN2VL_CHAT_TEMPLATE, vocab_size=vocab_size)


def build_tiny_qwen2vl(out_dir: str | Path, *, seed: int = 0, init_device: str | None = None,
                       dtype: str | None = None, **config_overrides: Any) -> Path:
    """Write a tiny random-init Qwen2-VL checkpoint to ``out_dir`` and return its path.

    ``config_overrides`` may set any key of :data:`DEFAULTS` (``text_hidden_size``,
    ``text_layers``, ``vision_depth``, ``vision_embed_dim``, ``min_pixels``, ...). Load it back
    with ``Qwen2VLForConditionalGeneration.from_pretrained(out_dir)``,
    ``AutoTokenizer.from_pretrained(out_dir)``, ``AutoImageProcessor.from_pretrained(out_dir)``
    or through ``Qwen2VLAdapter.load(AdapterConfig(model=str(out_dir)))``.

    ``init_device`` (e.g. ``"cuda"``) initialises the weights there, and ``dtype`` (e.g.
    ``"bfloat16"``) is the dtype they are created and saved in: for full-size shapes
    (:data:`QWEN2VL_7B_SHAPE`), whose random initialisation takes minutes on a CPU.
    """
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from creg.hf.tiny_configs import padded_vocab_size, tiny_sizes, tiny_text_config
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    c = tiny_sizes(DEFAULTS, config_overrides, "Qwen2-VL")
    head_dim = c["text_hidden_size"] // c["text_heads"]
    if head_dim % 2 or c["text_hidden_size"] % c["text_heads"]:
        raise ValueError(f"text_hidden_size {c['text_hidden_size']} must split into {c['text_heads']} even-sized heads")
    # M-RoPE splits head_dim/2 rotary frequencies into (temporal, height, width) sections.
    half = head_dim // 2
    mrope_section = c["mrope_section"] or [half - 2 * (half // 3), half // 3, half // 3]
    if sum(mrope_section) != half:
        raise ValueError(f"mrope_section {mrope_section} must add up to head_dim/2 = {half}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(c["vocab_size"])
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    vocab_size = c["model_vocab_size"] or padded_vocab_size(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"model_vocab_size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")

    config = Qwen2VLConfig(
        text_config=tiny_text_config(
            c, vocab_size=vocab_size,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"]),
        vision_config={
            "depth": c["vision_depth"],
            "embed_dim": c["vision_embed_dim"],
            "hidden_size": c["text_hidden_size"],
            "num_heads": c["vision_heads"],
            "mlp_ratio": c["vision_mlp_ratio"],
            "patch_size": c["patch_size"],
            "spatial_merge_size": c["spatial_merge_size"],
            "temporal_patch_size": c["temporal_patch_size"],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if init_device is None and dtype is None:
        model = Qwen2VLForConditionalGeneration(config).eval()
    else:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(getattr(torch, dtype or "float32"))
        try:
            with torch.device(init_device or "cpu"):
                model = Qwen2VLForConditionalGeneration(config).eval()
        finally:
            torch.set_default_dtype(previous)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=c["min_pixels"],
        max_pixels=c["max_pixels"],
        patch_size=c["patch_size"],
        temporal_patch_size=c["temporal_patch_size"],
        merge_size=c["spatial_merge_size"],
    )
    image_processor.save_pretrained(out)
    # The released checkpoints name the processor classes; AutoImageProcessor picks the PIL
    # backend of "Qwen2VLImageProcessor" when torchvision is absent.
    pp_path = out / "preprocessor_config.json"
    pp = json.loads(pp_path.read_text())
    pp["image_processor_type"] = "Qwen2VLImageProcessor"
    pp["processor_class"] = "Qwen2VLProcessor"
    pp["min_pixels"], pp["max_pixels"] = c["min_pixels"], c["max_pixels"]
    pp_path.write_text(json.dumps(pp, indent=2, sort_keys=True) + "\n")
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2VL_CHAT_TEMPLATE}, indent=2) + "\n")
    return out
