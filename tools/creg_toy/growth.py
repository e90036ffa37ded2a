"""Growing a trained toy Qwen2-VL into a deeper one without losing what it knows.

* Depth: new decoder layers and vision blocks are inserted *identity-initialised*: their
  output projections (``o_proj``, ``down_proj``; vision ``attn.proj``, ``mlp.fc2``) and biases
  are zero, so each new block adds nothing to the residual stream and the grown model computes
  exactly what the old one did (on the same inputs). Their other weights keep a fresh fan-in
  initialisation, so gradients reach them once the output projections move. New blocks are
  interleaved: old layer i goes to position round(i * new / old).
* Token grid: Qwen2-VL has no learned position table (2D rotary in the vision encoder, M-RoPE
  in the language model), so a finer grid needs no interpolation: the image processor is set
  to resize images to ``image_side`` pixels (``min_pixels = max_pixels = image_side**2``) and
  the rotary positions extend to the larger grid. With patch 14 and merge 2, a 224x224 image
  resized to 336x336 gives 24x24 patches and a 12x12 grid of vision tokens (8x8 before).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

_ZERO_SUFFIXES = ("o_proj.weight", "down_proj.weight", "attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def layer_map(old: int, new: int) -> dict[int, int]:
    """Old index -> new index, spread evenly (old 4 -> new 8: 0->0, 1->2, 2->4, 3->6)."""
    if new < old:
        raise ValueError(f"cannot grow {old} layers into {new}")
    return {i: round(i * new / old) for i in range(old)}


def grown_config(conf: dict, text_layers: int, vision_depth: int) -> dict:
    conf = json.loads(json.dumps(conf))
    text = conf.get("text_config", conf)
    text["num_hidden_layers"] = text_layers
    if "layer_types" in text:
        text["layer_types"] = [text["layer_types"][0]] * text_layers
    conf["vision_config"]["depth"] = vision_depth
    return conf


def set_image_side(checkpoint: str | Path, image_side: int) -> None:
    """Make the checkpoint's image processor resize every image to ``image_side`` x ``image_side``."""
    f = Path(checkpoint) / "preprocessor_config.json"
    pp = json.loads(f.read_text())
    pp["min_pixels"] = pp["max_pixels"] = image_side * image_side
    pp["size"] = {"shortest_edge": image_side * image_side, "longest_edge": image_side * image_side}
    f.write_text(json.dumps(pp, indent=2, sort_keys=True) + "\n")


def reinit_outputs(checkpoint: str | Path, blocks, seed: int = 0, scale: float = 1.0) -> None:
    """Give decoder blocks ``blocks`` of a checkpoint fresh output projections (``o_proj``,
    ``down_proj``: normal, std scale/sqrt(fan-in)), in place: a block grown as an identity adds
    nothing to the residual stream and gets almost no gradient, so it stays inert in training."""
    from transformers import Qwen2VLForConditionalGeneration

    checkpoint = Path(checkpoint)
    model = Qwen2VLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    layers = model.model.language_model.layers
    with torch.no_grad():
        for b in blocks:
            for lin in (layers[b].self_attn.o_proj, layers[b].mlp.down_proj):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * scale / math.sqrt(lin.weight.shape[1]))
    model.save_pretrained(checkpoint)
    (checkpoint / "generation_config.json").unlink(missing_ok=True)


def grow_checkpoint(src: str | Path, dst: str | Path, *, text_layers: int, vision_depth: int,
                    image_side: int | None = None, seed: int = 0) -> dict[str, int]:
    """Write a grown copy of checkpoint ``src`` to ``dst`` (tokenizer, chat template and
    processor files copied; ``image_side`` sets the processor's resize). Returns the sizes."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    src, dst = Path(src), Path(dst)
    old = Qwen2VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    old_conf = json.loads((src / "config.json").read_text())
    text_old = old_conf.get("text_config", old_conf)["num_hidden_layers"]
    vis_old = old_conf["vision_config"]["depth"]
    conf = grown_config(old_conf, text_layers, vision_depth)

    torch.manual_seed(seed)
    new = Qwen2VLForConditionalGeneration(Qwen2VLConfig.from_dict(conf)).float()
    maps = {"model.language_model.layers.": layer_map(text_old, text_layers),
            "model.visual.blocks.": layer_map(vis_old, vision_depth)}
    old_sd = old.state_dict()
    new_sd = new.state_dict()
    placed: set[str] = set()
    for key, value in old_sd.items():
        target = key
        for prefix, mapping in maps.items():
            if key.startswith(prefix):
                idx, rest = key[len(prefix):].split(".", 1)
                target = f"{prefix}{mapping[int(idx)]}.{rest}"
        new_sd[target] = value.clone()
        placed.add(target)
    with torch.no_grad():
        for key, value in new_sd.items():
            if key in placed:
                continue
            if key.endswith(_ZERO_SUFFIXES):
                value.zero_()
            elif key.endswith(".bias"):
                value.zero_()
            elif value.dim() >= 2:
                value.normal_(0.0, 1.0 / math.sqrt(value[0].numel()))
            # norms keep their ones
    new.load_state_dict(new_sd)
    if dst.exists():
        shutil.rmtree(dst)
    new.save_pretrained(dst)
    (dst / "generation_config.json").unlink(missing_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in {"config.json", "model.safetensors", "generation_config.json"} \
                and not f.name.startswith("training_"):
            shutil.copy(f, dst / f.name)
    if image_side:
        set_image_side(dst, image_side)
    return {"text_layers": text_layers, "vision_depth": vision_depth,
            "params": sum(p.numel() for p in new.parameters())}
