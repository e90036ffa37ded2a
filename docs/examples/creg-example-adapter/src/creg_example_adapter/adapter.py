"""The creg adapter of the tiny VLM in :mod:`.model`: inputs and vision layout, the forward pass
(Hugging Face hidden-state indices; gradients from the earliest requested layer up), the replay.
It streams no attention maps and says so: ``provides`` leaves out ``attention_maps`` (so ``creg run``
refuses ``attention_rollout`` before it starts) and its test declares ``supports_attentions = False``."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from creg.plugins.adapter import AdapterConfig, ForwardOutput, ForwardRequest, VisionLayout, VLMAdapter
from creg.plugins.capabilities import Capability
from creg.core.compass import uniform_cell_xy
from creg.hf import load_images
from creg.core.prompts import OPTION_TOKENS, render_prompt
from creg.core.sample import Sample

from . import model as m


class ExampleTinyAdapter(VLMAdapter):
    """``AdapterConfig.model`` is ``"random"`` or ``"random:SEED"`` (the weights' seed)."""

    description = "example third-party adapter: a tiny random VLM in plain torch"
    provides = frozenset({Capability.LAYER_GRADIENTS, Capability.LAYER_REPLAY, Capability.VISION_ACTIVATIONS})

    def __init__(self, config: AdapterConfig, model: m.TinyVLM):
        super().__init__(config)
        self.model = model
        self.option_token_ids = tuple(m.OPTION_IDS[t] for t in OPTION_TOKENS)

    @classmethod
    def load(cls, config: AdapterConfig) -> "ExampleTinyAdapter":
        kind, _, seed = config.model.partition(":")
        if kind != "random":
            raise ValueError(f"model must be 'random' or 'random:SEED', got {config.model!r}")
        torch.manual_seed(int(seed or 0))
        return cls(config, m.TinyVLM().eval().requires_grad_(False).to("cpu" if config.device == "auto" else config.device))

    num_layers = property(lambda self: m.N_LAYERS)
    device = property(lambda self: self.model.head.weight.device)

    def _inputs(self, samples: Sequence[Sample], images: Sequence[Any] | None):  # ids (b, s), valid, patches, layouts
        patches = [m.to_patches(im, s.image_size).to(self.device) for s, im in zip(samples, load_images(samples, images))]
        grids = [(p.shape[0] // 2, p.shape[1] // 2) for p in patches]  # 2 x 2 patches per token
        ids = m.left_pad([m.sequence(g[0] * g[1], render_prompt(self.config.prompt, s.ref_name, s.tgt_name))
                          for g, s in zip(grids, samples)]).to(self.device)
        vision = [VisionLayout(token_index=(row == m.IMG).nonzero()[:, 0].cpu(), grid_hw=g, patch_hw=tuple(p.shape[:2]),
                               cell_xy=uniform_cell_xy(g, s.image_size)) for row, g, p, s in zip(ids, grids, patches, samples)]
        return ids, ids != m.PAD, patches, vision

    def _states(self, samples, images, root: int | None, from_vision: bool):
        ids, valid, patches, vision = self._inputs(samples, images)
        with torch.no_grad():
            acts = [self.model.patch(p).requires_grad_(from_vision) for p in patches]
        with torch.set_grad_enabled(from_vision):
            x = m.embed(self.model, ids, valid, acts)
        mask = m.attention_mask(valid)
        return m.hidden_states(self.model, x, mask, root, from_vision), mask, vision, acts, ids.shape[1]

    def forward(self, samples, request: ForwardRequest = ForwardRequest(), *, on_attention=None, images=None) -> ForwardOutput:
        if request.attentions:
            raise NotImplementedError("ExampleTinyAdapter does not stream attention maps")
        targets = {layer: self.layer_to_block(layer) for layer in request.layers}
        states, mask, vision, acts, seq = self._states(samples, images, min(targets.values(), default=None), request.vision_activations)
        with torch.set_grad_enabled(states[m.N_LAYERS].requires_grad):
            logits = self.model.head(states[m.N_LAYERS][:, -1:])[:, 0][:, list(self.option_token_ids)]
        return ForwardOutput(class_logits=logits.float(), hidden={layer: states[t] for layer, t in targets.items()},
                             vision=vision, vision_activations=acts if request.vision_activations else None,
                             answer_index=torch.full((len(samples),), seq - 1, dtype=torch.long), state=mask)

    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        mask, x = output.state.repeat(hidden.shape[0] // output.state.shape[0], 1, 1, 1), hidden
        for i in range(self.layer_to_block(layer), m.N_LAYERS):
            x = self.model.blocks[i](x, mask)
        x = self.model.norm(x) if self.layer_to_block(layer) < m.N_LAYERS else x
        return self.model.head(x[:, -1:])[:, 0][:, list(self.option_token_ids)].float()

    def next_token_logits(self, samples: Sequence[Sample]) -> torch.Tensor:
        """``(b, vocab)`` the model's own next-token logits at the answer position (no request)."""
        with torch.no_grad():
            return self.model.head(self._states(samples, None, None, False)[0][m.N_LAYERS][:, -1:])[:, 0].float()
