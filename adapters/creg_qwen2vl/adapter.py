"""The Qwen2-VL adapter: Qwen2-VL-2B/7B-Instruct or any local Qwen2-VL checkpoint.

Options (``AdapterConfig.options``):

* ``processor``: ``"auto"`` (default; the checkpoint's ``Qwen2VLProcessor`` when it can be built,
  else tokenizer + image processor + chat template), ``"full"`` or ``"manual"`` -- see
  :mod:`creg_qwen2vl.inputs`;
* ``attn_implementation``: the attention kernel of ordinary passes (default ``"sdpa"``); passes
  with ``request.attentions`` switch to eager attention for their duration;
* ``min_pixels`` / ``max_pixels``: override the image processor's resize bounds;
* ``answer_only_replay``: (default true) :meth:`logits_from_layer` computes the last block for the
  answer position only (:mod:`creg_qwen2vl.last_position`); false runs the whole block.

The class logits are the next-token logits of "1".."4" at the last position of the
left-padded batch, after the chat template's generation prompt (``<|im_start|>assistant\\n``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Sequence

import torch

from creg.adapter import AdapterConfig, ForwardOutput, ForwardRequest, VLMAdapter
from creg.prompts import OPTION_TOKENS, render_prompt, resolve_template
from creg.sample import Sample

from .capture import ForwardCapture, ReplayState, repeat_batch
from .inputs import Qwen2VLInputs
from .last_position import last_position_block, supports_last_position
from .layout import vision_layouts

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_KNOWN_OPTIONS = {"processor", "attn_implementation", "min_pixels", "max_pixels", "answer_only_replay"}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


def option_token_ids(tokenizer, model_name: str) -> tuple[int, ...]:
    """The ids of the option tokens "1".."4"; a clear error if one is not a single token."""
    ids = []
    for token in OPTION_TOKENS:
        pieces = tokenizer.encode(token, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(
                f"option {token!r} is {len(pieces)} tokens {pieces} for the tokenizer of {model_name!r}; "
                "creg reads the class logits from single-token options 1..4"
            )
        ids.append(pieces[0])
    return tuple(ids)


class Qwen2VLAdapter(VLMAdapter):
    """Qwen2-VL through ``transformers`` (``Qwen2VLForConditionalGeneration``)."""

    description = "Qwen2-VL (2B/7B-Instruct or a local checkpoint) via transformers"

    def __init__(self, config: AdapterConfig, model, inputs: Qwen2VLInputs, option_ids: tuple[int, ...]):
        super().__init__(config)
        self.model = model
        self.inputs = inputs
        self.option_token_ids = option_ids
        self.answer_only_replay = bool(config.options.get("answer_only_replay", True))

    @classmethod
    def load(cls, config: AdapterConfig) -> "Qwen2VLAdapter":
        from transformers import Qwen2VLForConditionalGeneration

        resolve_template(config.prompt)  # fail before loading weights on a bad prompt
        unknown = set(config.options) - _KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"unknown Qwen2-VL adapter option(s) {sorted(unknown)}; known: {sorted(_KNOWN_OPTIONS)}")
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        inputs = Qwen2VLInputs.from_pretrained(
            config.model,
            config.options.get("processor", "auto"),
            **{k: config.options[k] for k in ("min_pixels", "max_pixels") if k in config.options},
        )
        option_ids = option_token_ids(inputs.tokenizer, config.model)
        model = Qwen2VLForConditionalGeneration.from_pretrained(
            config.model, dtype=dtype, attn_implementation=config.options.get("attn_implementation", "sdpa")
        )
        model.to(device).eval().requires_grad_(False)
        return cls(config, model, inputs, option_ids)

    # -- facts -----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.model.model.language_model.layers)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    # -- inputs ----------------------------------------------------------------------------
    def _images(self, samples: Sequence[Sample], images: Sequence[Any] | None) -> list[Any]:
        if images is not None and len(images) != len(samples):
            raise ValueError(f"got {len(images)} images for {len(samples)} samples")
        loaded = [s.load_image() for s in samples] if images is None else [im.convert("RGB") for im in images]
        for s, im in zip(samples, loaded):
            if tuple(im.size) != tuple(s.image_size):
                raise ValueError(
                    f"sample {s.id!r}: the image is {im.size[0]}x{im.size[1]} but image_size says "
                    f"{s.image_size[0]}x{s.image_size[1]}; boxes and cell centres would not match the pixels"
                )
        return loaded

    def encode(self, samples: Sequence[Sample], images: Sequence[Any] | None = None) -> dict[str, torch.Tensor]:
        """The model inputs for ``samples`` (left-padded; see :meth:`Qwen2VLInputs.encode`)."""
        if not samples:
            raise ValueError("forward needs at least one sample")
        loaded = self._images(samples, images)
        questions = [render_prompt(self.config.prompt, s.ref_name, s.tgt_name) for s in samples]
        batch = self.inputs.encode(questions, loaded)
        dtype = self.model.dtype
        return {k: (v.to(self.device, dtype) if k == "pixel_values" else v.to(self.device)) for k, v in batch.items()}

    @contextmanager
    def _attention_implementation(self, name: str | None):
        previous = self.model.config._attn_implementation
        if name is None or name == previous:
            yield
            return
        self.model.set_attn_implementation(name)
        try:
            yield
        finally:
            self.model.set_attn_implementation(previous)

    # -- the contract ----------------------------------------------------------------------
    def forward(
        self,
        samples: Sequence[Sample],
        request: ForwardRequest = ForwardRequest(),
        *,
        on_attention=None,
        images: Sequence[Any] | None = None,
    ) -> ForwardOutput:
        if request.attentions and on_attention is None:
            raise ValueError("request.attentions needs an on_attention callback")
        batch = self.encode(samples, images)
        layouts = vision_layouts(
            batch["input_ids"],
            batch["image_grid_thw"],
            [tuple(s.image_size) for s in samples],
            image_token_id=self.inputs.image_token_id,
            patch_size=self.inputs.patch_size,
            merge_size=self.inputs.merge_size,
        )
        hidden_blocks: dict[int, list[int]] = {}
        norm_layers: list[int] = []
        for layer in dict.fromkeys(request.layers):
            block = self.layer_to_block(layer)
            (norm_layers if block == self.num_layers else hidden_blocks.setdefault(block, [])).append(layer)
        capture = ForwardCapture(
            self.model,
            hidden_blocks=hidden_blocks,
            norm_layers=norm_layers,
            vision_patch_hw=[lay.patch_hw for lay in layouts] if request.vision_activations else None,
            merge_size=self.inputs.merge_size,
            on_attention=on_attention if request.attentions else None,
        )
        with self._attention_implementation("eager" if request.attentions else None):
            with capture, torch.no_grad():
                out = self.model(**batch, use_cache=False, logits_to_keep=1)
        capture.replay.batch_size = len(samples)
        seq = batch["input_ids"].shape[1]
        return ForwardOutput(
            class_logits=out.logits[:, -1, list(self.option_token_ids)].float(),
            hidden={layer: capture.hidden[layer] for layer in request.layers},
            vision=layouts,
            vision_activations=capture.vision_activations,
            answer_index=torch.full((len(samples),), seq - 1, dtype=torch.long, device=self.device),
            state=capture.replay,
        )

    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        state: ReplayState = output.state
        if not isinstance(state, ReplayState):
            raise TypeError("output was not produced by a Qwen2VLAdapter forward pass")
        block = self.layer_to_block(layer)
        if not any(self.layer_to_block(l) == block for l in output.hidden):
            raise KeyError(f"layer {layer} was not requested in the forward pass (have {sorted(output.hidden)})")
        b = state.batch_size
        ref = output.hidden[next(l for l in output.hidden if self.layer_to_block(l) == block)]
        if hidden.dim() != 3 or hidden.shape[0] % b or hidden.shape[1:] != ref.shape[1:]:
            raise ValueError(f"hidden must be (r*{b}, {ref.shape[1]}, {ref.shape[2]}), got {tuple(hidden.shape)}")
        r = hidden.shape[0] // b
        text = self.model.model.language_model
        h = hidden.to(ref.dtype)
        last = self.num_layers - 1
        for i in range(block, self.num_layers):
            kwargs = repeat_batch(state.block_kwargs[i], r, b)
            if i == last and self.answer_only_replay and supports_last_position(text.layers[i]):
                h = last_position_block(text.layers[i], h, kwargs)  # only the answer row is read
            else:
                h = text.layers[i](h, **kwargs)
        if block < self.num_layers:
            h = text.norm(h[:, -1:, :])
        logits = self.model.lm_head(h[:, -1:, :])[:, 0]
        return logits[:, list(self.option_token_ids)].float()

    # -- for checks ------------------------------------------------------------------------
    def next_token_logits(self, samples: Sequence[Sample], images: Sequence[Any] | None = None) -> torch.Tensor:
        """``(b, vocab)`` float32: the model's own next-token logits after the generation prompt,
        from a plain forward pass (no hooks) of ``samples`` batched together."""
        batch = self.encode(samples, images)
        with torch.no_grad():
            out = self.model(**batch, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].float()
