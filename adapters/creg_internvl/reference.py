"""``InternVLProcessor`` without its video processor: the contract's reference path for the
InternVL adapter's inputs. transformers 5 cannot build the processor without torchvision (its
``__init__`` builds a video processor); its ``__call__`` on text and images needs none of it, so
the processor's own code runs here with ``__init__`` bypassed."""

from __future__ import annotations

import re


def processor_without_video(tokenizer, image_processor, image_seq_length: int):
    """transformers' own ``InternVLProcessor`` over ``tokenizer`` and ``image_processor``
    (``image_seq_length`` tokens per tile), built without ``__init__``."""
    from transformers import InternVLProcessor

    p = InternVLProcessor.__new__(InternVLProcessor)
    p.image_processor, p.tokenizer, p.video_processor = image_processor, tokenizer, None
    p.chat_template, p.image_seq_length = tokenizer.chat_template, image_seq_length
    p.start_image_token, p.end_image_token = tokenizer.start_image_token, tokenizer.end_image_token
    p.start_image_token_id, p.end_image_token_id = tokenizer.start_image_token_id, tokenizer.end_image_token_id
    p.image_token, p.image_token_id = tokenizer.context_image_token, tokenizer.context_image_token_id
    p.video_token = tokenizer.video_token
    p.multimodal_pattern = re.compile(f"(?P<image>{re.escape(p.image_token)})|(?P<video>{re.escape(p.video_token)})")
    return p
