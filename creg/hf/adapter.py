"""``HFAdapter``: a creg adapter for a decoder-based Hugging Face VLM, minus what is model-specific.

A subclass says how its model is loaded and fed, and where the image lands:

* ``model_class``: the transformers class (or its name), e.g. ``"LlavaForConditionalGeneration"``;
* :meth:`load_processor`: an object with a ``tokenizer`` (``padding_side`` is set to "left");
* :meth:`chat`: the conversation text with one image placeholder, up to the generation prompt or
  with the assistant's answer;
* :meth:`encode_texts`: model inputs for conversation texts and images (left-padded, the image
  placeholder expanded);
* :meth:`vision_layouts`: one :class:`~creg.plugins.adapter.VisionLayout` per row of that batch;
* optionally :meth:`vision_hook` (GradCAM's activations; without it vision activations are
  refused clearly).

Everything else is here: loading (dtype, device, ``device_map``), the answer prefix and option
tokens (:mod:`creg.hf.answer`), the forward pass with the gradient leaf at the earliest requested
layer, block-input capture and streamed attention (:mod:`creg.hf.capture`), replay from a layer
(:mod:`creg.hf.replay`), causal occlusion's passes with the shared text prefix run once
(:mod:`creg.hf.shared_prefix`), and the references the contract checks against
(:meth:`next_token_logits`, :meth:`answer_logits`, :meth:`reference_hidden_states`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Any, ClassVar, Literal, Sequence

import torch
from PIL import Image
from pydantic import Field, model_validator

from creg.config.placement import DeviceMapField, MaxMemoryField
from creg.core.prompts import OPTION_TOKENS, render_prompt, resolve_template
from creg.core.sample import Box, Sample, make_sample
from creg.hf.answer import AnswerTokens, answer_tokens
from creg.hf.capture import ForwardCapture, ReplayState, VisionHook
from creg.hf.chat_inputs import ChatInputs, messages
from creg.hf.checkpoint_references import (
    checkpoint_chat_template,
    checkpoint_processor,
    module_input,
    processor_inputs,
)
from creg.hf.decoder import find_decoder, module_device
from creg.hf.explainable import check_layout_matches_placeholders, placeholder_token_id
from creg.hf.loading import load_images, load_model
from creg.hf.parts import hf_model_parts
from creg.hf.plain_text import check_plain_text, control_tokens
from creg.hf.replay import replay_decoder
from creg.hf.scaled_replay import scaled_last_block
from creg.hf.shared_prefix import PrefixMemo, SharedPrefix
from creg.hf.text_prefix import PrefixKeep
from creg.plugins.adapter import (
    AdapterConfig,
    ForwardOutput,
    ForwardRequest,
    OccludedImage,
    VisionLayout,
    VLMAdapter,
)
from creg.plugins.options import PluginOptions

#: A question used to find the answer tokens at load time (any prompt gives the same tokens).
_PROBE_QUESTION = render_prompt("A", "dog", "ball")


#: ``occluded_tokens_per_call=auto`` on a CPU: the occluded copies of a sample go to the model in
#: calls of at most this many tokens. On the 28-layer benchmark shape a row cost 0.78-0.82 FPU in
#: stacks of 7-14 rows at 64 vision tokens (about 950-1900 tokens), 0.99 in 7 rows and 1.09 in 14 at
#: 256 (2300 and 4600 tokens), 1.00 alone and 1.11 in 14 at 1024 (docs/speed.md).
AUTO_OCCLUDED_TOKENS_PER_CALL = 2400


class HFAdapter(VLMAdapter):
    """Base class of adapters for transformers VLMs (see module docstring)."""

    class Options(PluginOptions):
        attn_implementation: str = Field("sdpa", description="attention kernel of every pass; attention maps are "
                                          "computed beside it from the same query and key, the pass unchanged")
        answer_only_replay: bool = Field(True, description="logits_from_layer computes the last block for the "
                                         "answer position only (same result, cheaper)")
        answer_only_forward: bool = Field(True, description="the forward pass computes the last block for the "
                                          "answer position only when nothing reads its other rows (same result, cheaper)")
        cached_text_prefix: bool = Field(False, description="causal occlusion runs the text before the image once and "
                                         "gives its keys and values to every occluded copy (same result; only where "
                                         "the adapter declares caches_text_prefix; off: on creg's CPU benchmark it "
                                         "saved ~2% at 64 vision tokens and cost ~7% at 256, docs/speed.md)")
        occluded_tokens_per_call: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
            "auto", description="causal occlusion's forward calls take at most this many tokens (rows x sequence "
            "length; at least one row per call); auto: 2400 on a CPU, where a larger stack costs more per row "
            "(docs/speed.md), and no limit on an accelerator")
        text_prefix_once: bool = Field(False, description="the explained pass takes the text before the image (the "
                                       "same in every sample) from one computation per run, outside the autograd "
                                       "graph, when no source reads gradients there (creg.hf.text_prefix): logits and "
                                       "gradients equal within float round-off, but sources that read round-off "
                                       "(layer -2) move; off by default (docs/speed.md)")
        device_map: DeviceMapField = Field(
            None, description="accelerate's placement of the layers over several devices: auto, balanced, "
            "balanced_low_0, sequential or {module: device} (the config's device is then ignored; docs/distributed.md)")
        max_memory: MaxMemoryField = Field(
            None, description="with device_map: the most each device may hold, e.g. {\"0\": \"70GiB\", \"cpu\": "
            "\"200GiB\"} (or \"0=70GiB,cpu=200GiB\")")

        @model_validator(mode="after")
        def _max_memory_needs_map(self):
            if self.max_memory is not None and self.device_map is None:
                raise ValueError("max_memory caps what a device map puts on each device: set device_map too (e.g. auto)")
            return self

    #: the transformers model class or its name in ``transformers``.
    model_class: ClassVar[Any] = None

    #: attention maps are streamed from the pass that runs, its kernel and round-off unchanged
    #: (:mod:`creg.hf.attention_stream`), so the gradient pass serves attention sources too.
    attentions_preserve_numerics: ClassVar[bool] = True
    #: the decoder is causal (a position reads only the positions before it), so the occluded
    #: copies of one sample can share the keys and values of the leading positions they have in
    #: common, the text before the image (:mod:`creg.hf.shared_prefix`), and the explained pass can
    #: take that text from one computation per run (:mod:`creg.hf.text_prefix`). An adapter whose decoder
    #: lets a position read later ones (bidirectional image tokens, a prefix-LM) sets False. The
    #: contract compares :meth:`occluded_class_logits` with :meth:`forward`.
    caches_text_prefix: ClassVar[bool] = True

    def __init__(self, config: AdapterConfig, model, processor, options: "HFAdapter.Options"):
        super().__init__(config)
        self.model = model
        self.processor = processor
        self.options = options
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.decoder = find_decoder(model)
        self.answer: AnswerTokens = answer_tokens(
            self.tokenizer, self.chat(_PROBE_QUESTION), lambda o: self.chat(_PROBE_QUESTION, o), config.model
        )
        self.option_token_ids = self.answer.option_ids

    # -- what a subclass implements ------------------------------------------------------------
    @classmethod
    def load_processor(cls, config: AdapterConfig, options: "HFAdapter.Options") -> Any:
        """An object with ``.tokenizer`` (and whatever :meth:`encode_texts` uses)."""
        raise NotImplementedError

    def chat(self, question: str, answer: str | None = None) -> str:
        """The conversation text with one image placeholder (generation prompt last when no answer).
        Default: the processor's, when :meth:`load_processor` returned a :class:`~creg.hf.ChatInputs`."""
        if isinstance(self.processor, ChatInputs):
            return self.processor.chat(question, answer)
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Model inputs (CPU tensors): ``input_ids``/``attention_mask`` ``(b, seq)`` left-padded, pixels, ...
        Default: the processor's, when :meth:`load_processor` returned a :class:`~creg.hf.ChatInputs`."""
        if isinstance(self.processor, ChatInputs):
            return self.processor.encode(texts, images)
        raise NotImplementedError

    def vision_layouts(self, batch: dict[str, torch.Tensor], images: Sequence[Any]) -> list[VisionLayout]:
        """One layout per row of ``batch`` (CPU, from :meth:`encode_texts`); ``images``: the original PIL images."""
        raise NotImplementedError

    def model_parts(self):
        """The decoder blocks, the vision tower (:mod:`creg.hf.parts`) and the blocks' mask keyword."""

        return hf_model_parts(self.model, self.decoder.layers)

    def vision_hook(self, batch: dict[str, torch.Tensor], layouts: list[VisionLayout]) -> VisionHook:
        """Where GradCAM's vision activations come from (see :class:`creg.hf.capture.VisionHook`)."""
        raise NotImplementedError(f"{type(self).__name__} returns no vision-encoder activations")

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def parse_options(cls, config: AdapterConfig) -> "HFAdapter.Options":
        values = config.options if isinstance(config.options, dict) else config.options.model_dump()
        return cls.Options.model_validate(values)

    @classmethod
    def load(cls, config: AdapterConfig) -> "HFAdapter":
        resolve_template(config.prompt)  # fail before loading weights on a bad prompt
        options = cls.parse_options(config)
        processor = cls.load_processor(config, options)
        model = load_model(cls.model_class, config.model, device=config.device, dtype=config.dtype,
                           attn_implementation=options.attn_implementation, device_map=options.device_map,
                           max_memory=options.max_memory)
        adapter = cls(config, model, processor, options)
        adapter.check_placeholder_layout()
        return adapter

    def check_placeholder_layout(self) -> None:
        """Refuse (:class:`creg.hf.explainable.ModelNotExplainable`, one line) an adapter whose vision
        layout of a probe image does not name exactly the image placeholder run of its input ids.
        Nothing is checked when the model's config names no placeholder token (``image_token_id``)."""



        token = placeholder_token_id(self.model.config)
        if token is None:
            return
        image = Image.new("RGB", (320, 240), (128, 128, 128))
        probe = make_sample(id="layout-probe", image=image, image_size=image.size, ref_name="dog",
                            ref_box=Box(x0=20, y0=20, x1=100, y1=100), tgt_name="ball",
                            tgt_box=Box(x0=200, y0=120, x1=280, y1=200), relation="right")
        batch = self.encode_cpu([probe], [image])
        (layout,) = self.vision_layouts(batch, [image])
        check_layout_matches_placeholders(batch["input_ids"][0], layout, token, self.config.model)

    @property
    def num_layers(self) -> int:
        return len(self.decoder.layers)

    @property
    def device(self) -> torch.device:
        """Where the inputs go (the input embeddings' device)."""
        return module_device(self.model.get_input_embeddings())

    # -- inputs --------------------------------------------------------------------------------
    def encode_cpu(self, samples: Sequence[Sample], images: Sequence[Any] | None = None) -> dict[str, torch.Tensor]:
        """CPU model inputs of ``samples`` (their own images unless ``images`` are given, already
        loaded): the chat up to the generation prompt, then the answer prefix."""
        if not samples:
            raise ValueError("forward needs at least one sample")
        if images is None:
            images = load_images(samples, None)
        texts = [self.chat(self.question(s)) for s in samples]
        return self.append_tokens(self.encode_texts(texts, images), self.answer.prefix_ids)

    def question(self, sample: Sample) -> str:
        """The prompt of ``sample``; :class:`creg.hf.plain_text.SpecialTokenInName` if a name holds
        one of the tokenizer's special or added tokens (names are plain text, never control tokens)."""

        tokens = self.__dict__.get("_control_tokens")
        if tokens is None:
            tokens = self.__dict__["_control_tokens"] = control_tokens(self.tokenizer)
        check_plain_text(sample.ref_name, tokens, "reference name")
        check_plain_text(sample.tgt_name, tokens, "target name")
        return render_prompt(self.config.prompt, sample.ref_name, sample.tgt_name)

    def encode(self, samples: Sequence[Sample], images: Sequence[Any] | None = None) -> dict[str, torch.Tensor]:
        """:meth:`encode_cpu` on the model's device, ready for ``model(**inputs)``."""
        return self.to_model(self.encode_cpu(samples, images))

    @staticmethod
    def append_tokens(batch: dict[str, torch.Tensor], ids: Sequence[int]) -> dict[str, torch.Tensor]:
        """``batch`` with text tokens ``ids`` appended to every row: ``input_ids`` gets them,
        ``attention_mask`` ones, any other ``(b, seq)`` per-token tensor zeros."""
        if not ids:
            return batch
        b, seq = batch["input_ids"].shape
        tail = torch.tensor(list(ids), dtype=batch["input_ids"].dtype).expand(b, -1)
        out = {}
        for k, v in batch.items():
            if k == "input_ids":
                out[k] = torch.cat([v, tail], 1)
            elif isinstance(v, torch.Tensor) and v.dim() == 2 and tuple(v.shape) == (b, seq):
                fill = torch.ones if k == "attention_mask" else torch.zeros
                out[k] = torch.cat([v, fill(b, len(ids), dtype=v.dtype)], 1)
            else:
                out[k] = v
        return out

    def to_model(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` on the model's input device; floating tensors (pixels) in the model's dtype."""
        dtype = self.model.dtype
        return {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    @contextmanager
    def attention_implementation(self, name: str | None):
        """Switch the model's attention kernel for the duration (None: keep it)."""
        previous = self.model.config._attn_implementation
        if name is None or name == previous:
            yield
            return
        self.model.set_attn_implementation(name)
        try:
            yield
        finally:
            self.model.set_attn_implementation(previous)

    _attention_implementation = attention_implementation  # the 0.1 Qwen2-VL adapter's name for it

    # -- the contract --------------------------------------------------------------------------
    def forward(self, samples: Sequence[Sample], request: ForwardRequest = ForwardRequest(), *,
                on_attention=None, images: Sequence[Any] | None = None) -> ForwardOutput:
        if request.attentions and on_attention is None:
            raise ValueError("request.attentions needs an on_attention callback")
        self.check_layers(request.layers)
        loaded = load_images(samples, images)
        cpu_batch = self.encode_cpu(samples, loaded)
        layouts = self.vision_layouts(cpu_batch, loaded)
        hidden_blocks: dict[int, list[int]] = {}
        norm_layers: list[int] = []
        for layer in dict.fromkeys(request.layers):
            block = self.layer_to_block(layer)
            (norm_layers if block == self.num_layers else hidden_blocks.setdefault(block, [])).append(layer)
        capture = ForwardCapture(
            self.decoder, hidden_blocks=hidden_blocks, norm_layers=norm_layers,
            vision=self.vision_hook(cpu_batch, layouts) if request.vision_activations else None,
            on_attention=on_attention if request.attentions else None,
            answer_only=self.options.answer_only_forward,
            text_prefix=self._text_prefix(request, cpu_batch, layouts),
        )
        batch = self.to_model(cpu_batch)
        with capture, torch.no_grad():
            out = self.model(**batch, use_cache=False, logits_to_keep=1)
        capture.replay.batch_size = len(samples)
        seq = batch["input_ids"].shape[1]
        return ForwardOutput(  # class logits on the input device (the head may sit on another with a device map)
            class_logits=out.logits[:, -1, list(self.option_token_ids)].float().to(batch["input_ids"].device),
            hidden={layer: capture.hidden[layer] for layer in request.layers},
            vision=layouts,
            vision_activations=capture.vision_activations,
            answer_index=torch.full((len(samples),), seq - 1, dtype=torch.long),
            state=capture.replay,
        )

    def _text_prefix(self, request: ForwardRequest, batch: dict[str, torch.Tensor],
                     layouts: list[VisionLayout]) -> tuple[int, PrefixKeep] | None:
        """``(P, keep)`` when the pass may take the text before the image from ``keep``
        (:mod:`creg.hf.text_prefix`): nobody reads gradients there, the option and the decoder
        allow it, no row is padded, and every row's first image token is at ``P``."""
        if request.gradients_before_image or not (self.options.text_prefix_once and self.caches_text_prefix):
            return None
        mask = batch.get("attention_mask")
        if isinstance(mask, torch.Tensor) and not bool(mask.all()):
            return None
        firsts = {int(layout.token_index.min()) for layout in layouts if layout.token_index.numel()}
        if len(firsts) != 1 or len(layouts) != len(batch["input_ids"]):
            return None
        return firsts.pop(), self.__dict__.setdefault("_text_prefix_keep", PrefixKeep())

    def occluded_class_logits(self, samples: Sequence[Sample], images: Sequence[OccludedImage]) -> torch.Tensor:
        """The forward of the rendered images, in calls of at most ``occluded_tokens_per_call``
        tokens; the leading positions that all rows of a call share (one sample's text before the
        image) run once when ``cached_text_prefix`` and ``caches_text_prefix`` allow it
        (:class:`creg.hf.shared_prefix.SharedPrefix`)."""
        rendered = [im.render() for im in images]
        rows = self.occluded_rows_per_call(samples, rendered)
        return torch.cat([self._occluded_call(samples[i:i + rows], rendered[i:i + rows])
                          for i in range(0, len(rendered), rows)])

    def occluded_rows_per_call(self, samples: Sequence[Sample], rendered: Sequence[Any]) -> int:
        """How many occluded rows one forward call takes: ``occluded_tokens_per_call`` over the
        first row's sequence length (the rows of one call are copies of one sample), at least 1."""
        budget = self.options.occluded_tokens_per_call
        if budget == "auto":
            budget = AUTO_OCCLUDED_TOKENS_PER_CALL if self.device.type == "cpu" else None
        if budget is None or not rendered:
            return max(1, len(rendered))
        key = (self.question(samples[0]), rendered[0].size)
        lengths = self.__dict__.setdefault("_occluded_lengths", {})
        if key not in lengths:
            lengths[key] = int(self.encode_cpu(samples[:1], rendered[:1])["input_ids"].shape[1])
        return max(1, budget // lengths[key])

    def _occluded_call(self, samples: Sequence[Sample], rendered: Sequence[Any]) -> torch.Tensor:
        if not (self.options.cached_text_prefix and self.caches_text_prefix):
            with torch.inference_mode():
                return self.forward(samples, ForwardRequest(), images=rendered).class_logits
        memo = self.__dict__.setdefault("_text_prefix_memo", PrefixMemo())  # the same text before every image
        with torch.inference_mode(), SharedPrefix(self.model.get_decoder(), memo):
            return self.forward(samples, ForwardRequest(), images=rendered).class_logits

    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        state: ReplayState = output.state
        if not isinstance(state, ReplayState):
            raise TypeError(f"output was not produced by a {type(self).__name__} forward pass")
        block = self.layer_to_block(layer)
        same = [l for l in output.hidden if self.layer_to_block(l) == block]
        if not same:
            raise KeyError(f"layer {layer} was not requested in the forward pass (have {sorted(output.hidden)})")
        ref = output.hidden[same[0]]
        b = state.batch_size
        if hidden.dim() != 3 or hidden.shape[0] % b or hidden.shape[1:] != ref.shape[1:]:
            raise ValueError(f"hidden must be (r*{b}, {ref.shape[1]}, {ref.shape[2]}), got {tuple(hidden.shape)}")
        logits = replay_decoder(self.decoder, state, block, hidden.to(ref.dtype), answer_only=self.options.answer_only_replay)
        return logits[:, list(self.option_token_ids)].float().to(hidden.device)  # where the caller's tensors are

    def scaled_layer_replay(self, output: ForwardOutput, layer: int):
        """The last block's input (-2): keys and values once per batch (:mod:`creg.hf.scaled_replay`)
        when the block allows it and ``answer_only_replay`` is on; otherwise the generic replay."""
        state = output.state
        if (isinstance(state, ReplayState) and self.options.answer_only_replay and layer in output.hidden
                and self.layer_to_block(layer) == self.num_layers - 1):

            fast = scaled_last_block(self.decoder, state, output.hidden[layer], list(self.option_token_ids))
            if fast is not None:
                return lambda t: fast(t).float().to(t.device)
        return super().scaled_layer_replay(output, layer)

    # -- references for the contract ---------------------------------------------------------
    def next_token_logits(self, samples: Sequence[Sample], images: Sequence[Any] | None = None) -> torch.Tensor:
        """``(b, vocab)`` float32: the model's next-token logits after the prompt, plain forward, no hooks."""
        batch = self.encode(samples, load_images(samples, images))
        with torch.no_grad():
            return self.model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()

    #: dotted path (from the model) of the module whose input is what the model's own
    #: image-feature path reads from the vision tower (e.g. ``"model.multi_modal_projector"``);
    #: None: the vision check of the contract is skipped.
    image_features_module: ClassVar[str | None] = None

    def checkpoint_chat(self, question: str, answer: str | None = None) -> str:
        """The checkpoint's own chat template on one image + ``question`` (+ ``answer``): what
        :meth:`chat` must return. NotImplementedError when the checkpoint ships no template."""

        template = checkpoint_chat_template(self.config.model, self.tokenizer)
        if template is None:
            raise NotImplementedError(f"{self.config.model!r} ships no chat template")
        return self.tokenizer.apply_chat_template(messages(question, answer), chat_template=template, tokenize=False,
                                                  add_generation_prompt=answer is None)

    def reference_inputs(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Where the checkpoint's processor cannot be built here: an independent way to its
        ``input_ids`` (override; e.g. the processor's own expansion code called directly)."""
        raise NotImplementedError(f"{type(self).__name__} has no reference path to its processor's inputs")

    def checkpoint_inputs(self, texts: Sequence[str], images: Sequence[Any]) -> tuple[str, dict[str, torch.Tensor]]:
        """(which path, inputs): the checkpoint's processor on ``texts`` and ``images``, or where it
        cannot be built, :meth:`reference_inputs` -- the first item says which, and why."""

        try:
            processor = checkpoint_processor(self.config.model)
        except (ImportError, OSError, ValueError, TypeError) as e:
            why = " ".join(str(e).split()).split(". ")[0] or type(e).__name__
            return (f"{type(self).__name__}.reference_inputs (the checkpoint's processor cannot be built here: {why})",
                    self.reference_inputs(texts, images))
        inputs = self.processor
        return "the checkpoint's processor", processor_inputs(
            processor, texts, images, nested_images=getattr(inputs, "nested_images", False),
            call_kwargs=getattr(inputs, "image_call_kwargs", None))

    def reference_vision_activations(self, samples: Sequence[Sample]) -> list[torch.Tensor]:
        """What the model's image-feature path reads (the input of :attr:`image_features_module`
        in a plain forward), split into one ``(H_p, W_p, d)`` raster per sample as
        :meth:`vision_hook` splits its module's output."""

        if self.image_features_module is None:
            raise NotImplementedError(f"{type(self).__name__} names no image_features_module")
        loaded = load_images(samples, None)
        cpu_batch = self.encode_cpu(samples, loaded)
        batch = self.to_model(cpu_batch)
        read = module_input(self.model, self.model.get_submodule(self.image_features_module),
                            lambda: self.model(**batch, use_cache=False, logits_to_keep=1))
        return self.split_image_features(read, cpu_batch, self.vision_layouts(cpu_batch, loaded))

    def split_image_features(self, features: Any, batch: dict[str, torch.Tensor], layouts: list[VisionLayout]) -> list[torch.Tensor]:
        """The input of :attr:`image_features_module` as one ``(H_p, W_p, d)`` raster per sample;
        default: :meth:`vision_hook`'s ``split`` (override where the model drops rows first, e.g. a CLS)."""
        return self.vision_hook(batch, layouts).split(features)

    def reference_hidden_states(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, ...]:
        """transformers' own ``output_hidden_states`` of a plain forward (N + 1 entries ``(b, seq, d)``)."""
        batch = self.encode(samples)
        with torch.no_grad():
            return tuple(self.model(**batch, use_cache=False, output_hidden_states=True).hidden_states)

    def answer_logits(self, samples: Sequence[Sample]) -> torch.Tensor:
        """``(b, 4)`` teacher-forced: for each option, the conversation *with that answer* is
        tokenized from its text and run; the logit of the option's token is read at the position
        that predicts it. Raises if the option is not the single token there."""
        loaded = load_images(samples, None)
        questions = [self.question(s) for s in samples]
        columns = []
        for option, option_id in zip(OPTION_TOKENS, self.option_token_ids):
            texts = [self.chat(q, option) for q in questions]
            tails = []
            for q, text in zip(questions, texts):
                ids = self.tokenizer.encode(text, add_special_tokens=False)
                at = len(self.tokenizer.encode(self.chat(q), add_special_tokens=False)) + len(self.answer.prefix_ids)
                if ids[at] != option_id:
                    raise AssertionError(f"answer {option!r} is token {ids[at]} after the prompt, not {option_id}")
                tails.append(len(ids) - at)  # the option and what follows it
            batch = self.to_model(self.encode_texts(texts, loaded))
            with torch.no_grad():
                logits = self.model(**batch, use_cache=False).logits
            seq = batch["input_ids"].shape[1]
            rows = []
            for i, tail in enumerate(tails):
                if int(batch["input_ids"][i, seq - tail]) != option_id:
                    raise AssertionError(f"the encoded conversation does not hold answer {option!r} where its text puts it")
                rows.append(logits[i, seq - tail - 1, option_id])
            columns.append(torch.stack(rows))
        return torch.stack(columns, dim=1).float()
