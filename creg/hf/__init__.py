"""creg's toolkit for adapters of decoder-based Hugging Face VLMs (public API).

Subclass :class:`HFAdapter` and implement only what is model-specific -- loading the processor,
the chat text, encoding, and the vision layout; docs/adapter-guide.md walks through it. The pieces
are usable on their own: :func:`find_decoder`, :class:`ForwardCapture`, :func:`replay_decoder`,
:func:`answer_tokens`, :class:`AttentionStream`, :class:`ChatInputs`, the geometry helpers and
:class:`TiledImage` (tiles plus a global image).
"""

from creg.hf.adapter import HFAdapter
from creg.hf.answer import AnswerTokens, answer_tokens
from creg.hf.attention_stream import AttentionStream, attention_probabilities
from creg.hf.capture import ForwardCapture, ReplayState, VisionHook
from creg.hf.chat_inputs import ChatInputs
from creg.hf.decoder import DecoderParts, find_decoder, module_device
from creg.hf.geometry import (
    cells_in_image,
    centre_crop_region,
    pad_to_square_region,
    region_cell_xy,
    token_grid_layout,
)
from creg.hf.last_position import last_position_block
from creg.hf.loading import load_images, load_model, resolve_device, resolve_dtype
from creg.hf.patch_order import raster_to_windows, windows_to_raster
from creg.hf.replay import repeat_batch, replay_decoder
from creg.hf.tiles import Crop, TiledImage, even_tiles, strip_tiles

__all__ = [
    "AnswerTokens", "AttentionStream", "ChatInputs", "Crop", "DecoderParts", "TiledImage", "even_tiles", "strip_tiles", "ForwardCapture", "HFAdapter", "ReplayState", "VisionHook",
    "answer_tokens", "attention_probabilities", "cells_in_image", "centre_crop_region", "find_decoder", "last_position_block", "load_images",
    "load_model", "module_device", "pad_to_square_region", "raster_to_windows", "region_cell_xy", "replay_decoder",
    "repeat_batch", "resolve_device", "resolve_dtype", "token_grid_layout", "windows_to_raster",
]
