"""Training the toy Qwen2-VL that ships as preset ``qwen2vl-toy``.

The model is a real ``Qwen2VLForConditionalGeneration`` built by
:func:`creg_qwen2vl.tiny.build_tiny_qwen2vl` (its tokenizer, chat template and image processor),
with three config changes that make a model this small able to learn the task (see
docs/toy-model.md): low rotary bases for the text M-RoPE and the vision 2D RoPE, so that the
rotary frequencies resolve an 8x8 (text) / 16x16 (vision) grid, and an M-RoPE split that gives
height and width more frequencies. Weights are re-initialised with a fan-in scaled normal
(std 1/sqrt(fan_in)) instead of Qwen2's fixed std 0.02.

Inputs are exactly what :class:`creg_qwen2vl.adapter.Qwen2VLAdapter` builds at inference: the
training loop loads the freshly built directory through ``Qwen2VLAdapter.load`` and encodes the
question of every (reference, target) name pair with ``adapter.encode`` (chat template, prompt
A, tokenizer). Pixel values come from :func:`patchify`, a vectorised copy of the image
processor for images whose sides are multiples of 28 (no resize); :func:`check_inputs` asserts
that both give identical tensors before training starts.

Data: ``scene_sample(seed, index)`` of :mod:`creg_synthetic.scenes` (224x224 -> 16x16 patches
-> 8x8 merged vision tokens), seeds >= 1000 for training, a fresh scene for every example.
Curriculum: first a single fixed pair of colours (the reference is always red, the target
green; a scene drawn the other way round gets its names swapped and its label mirrored), then
all colours and shapes. Loss: cross-entropy over the next-token logits of "1".."4" at the
answer position.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from creg.prompts import render_prompt
from creg.sample import RELATIONS, Sample

#: relation of A relative to B when B is ``r`` relative to A (left <-> right, above <-> below).
_MIRROR = {"left": "right", "right": "left", "above": "below", "below": "above"}

#: The image processor's normalisation (OpenAI CLIP mean/std, as in Qwen2-VL's preprocessor).
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ToyConfig:
    """Everything that determines a training run (saved as ``training_config.json``)."""

    seed: int = 0
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: steps of the fixed-pair stage (reference red, target green) before the full task.
    curriculum_steps: int = 150
    image_size: int = 224
    #: build_tiny_qwen2vl overrides.
    model: dict[str, Any] = field(
        default_factory=lambda: {
            "text_hidden_size": 64,
            "text_layers": 4,
            "text_heads": 4,
            "text_kv_heads": 4,
            "text_intermediate_size": 256,
            "vision_depth": 2,
            "vision_embed_dim": 32,
            "vision_heads": 2,
        }
    )
    #: config.json changes applied after build_tiny_qwen2vl (it fixes these).
    text_rope_theta: float = 10.0
    mrope_section: tuple[int, int, int] = (2, 3, 3)
    vision_rope_theta: float = 100.0
    init: str = "fan_in"  # "fan_in" (std 1/sqrt(fan_in)) or "default" (Qwen2's std 0.02)
    #: a colour pair to over-sample in the full stage (``focus_fraction`` of every batch).
    focus_colours: tuple[str, ...] | None = None
    focus_fraction: float = 0.0
    #: continue from the weights of this checkpoint directory instead of a fresh init.
    init_from: str | None = None
    eval_n: int = 256
    eval_seed: int = 0
    log_every: int = 25
    #: also write the weights and the log so far every this many steps (0: only at the end).
    save_every: int = 100
    #: torch CPU threads; 1 is faster than 2 on a shared 2-core machine (no OpenMP spin-waiting).
    threads: int = 1


# -- data ----------------------------------------------------------------------------------
def scene(seed: int, index: int, size: int, stage: str, focus: Sequence[str] | None = None) -> Sample:
    """Scene ``index`` of ``seed``; in stage ``"pair"`` only red and green, red the reference;
    in stage ``"focus"`` only the colours ``focus`` (either role)."""
    from creg_synthetic.scenes import scene_sample

    if stage == "full":
        return scene_sample(seed, index, (size, size))
    if stage == "focus":
        return scene_sample(seed, index, (size, size), colours=tuple(focus))
    s = scene_sample(seed, index, (size, size), colours=("red", "green"))
    if s.ref_name.startswith("red"):
        return s
    return s.model_copy(
        update=dict(ref_name=s.tgt_name, ref_box=s.tgt_box, tgt_name=s.ref_name, tgt_box=s.ref_box,
                    relation=_MIRROR[s.relation])
    )


def patchify(image, patch: int = 14, merge: int = 2, temporal: int = 2) -> torch.Tensor:
    """``(h*w, 3*temporal*patch*patch)`` pixel values in Qwen2-VL's merge-window order, as the
    image processor gives them for an RGB image whose sides are multiples of ``patch*merge``."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(_MEAN).view(3, 1, 1)) / torch.tensor(_STD).view(3, 1, 1)
    x = x.unsqueeze(0).expand(temporal, -1, -1, -1)
    t, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(1, t, c, gh // merge, merge, patch, gw // merge, merge, patch).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gh * gw, c * t * patch * patch)


class Batcher:
    """Builds model inputs for samples: token ids from the adapter (cached per name pair),
    pixel values from :func:`patchify`."""

    def __init__(self, adapter):
        self.adapter = adapter
        self._ids: dict[tuple[str, str], torch.Tensor] = {}

    def token_ids(self, s: Sample) -> torch.Tensor:
        key = (s.ref_name, s.tgt_name)
        if key not in self._ids:
            enc = self.adapter.encode([s])
            self._ids[key] = enc["input_ids"][0]
            self._grid = enc["image_grid_thw"][0]
        return self._ids[key]

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        ids = [self.token_ids(s) for s in samples]
        if len({len(i) for i in ids}) != 1:  # names of different token lengths: use the adapter
            return self.adapter.encode(samples)
        input_ids = torch.stack(ids)
        image_token = self.adapter.inputs.image_token_id
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": (input_ids == image_token).long(),
            "pixel_values": torch.cat([patchify(s.load_image()) for s in samples]),
            "image_grid_thw": self._grid.unsqueeze(0).repeat(len(samples), 1),
        }


def check_inputs(batcher: Batcher, samples: Sequence[Sample]) -> None:
    """Fail unless the fast batch equals the adapter's own encoding of ``samples``."""
    fast, ref = batcher(samples), batcher.adapter.encode(samples)
    for k, v in ref.items():
        got = fast[k].to(v.dtype)
        if got.shape != v.shape or not torch.equal(got, v):
            raise AssertionError(f"training input {k!r} differs from the adapter's encoding")


# -- model ---------------------------------------------------------------------------------
def build_model_dir(out: Path, cfg: ToyConfig) -> Path:
    """A fresh tiny Qwen2-VL directory with this run's rotary settings (random weights)."""
    from creg_qwen2vl.tiny import build_tiny_qwen2vl

    build_tiny_qwen2vl(out, seed=cfg.seed, **cfg.model)
    path = out / "config.json"
    conf = json.loads(path.read_text())
    text = conf.get("text_config", conf)
    text["rope_parameters"]["rope_theta"] = cfg.text_rope_theta
    text["rope_parameters"]["mrope_section"] = list(cfg.mrope_section)
    if "rope_parameters" in conf and conf is not text:
        conf["rope_parameters"] = dict(text["rope_parameters"])
    conf["vision_config"]["rope_parameters"] = {"rope_type": "axial", "rope_theta": cfg.vision_rope_theta}
    path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    return out


@torch.no_grad()
def init_weights(model: torch.nn.Module, cfg: ToyConfig) -> None:
    """Fan-in scaled normal init (token embeddings: std 1/sqrt(hidden); lm_head: std 0.02);
    residual output projections scaled by 1/sqrt(2 * layers)."""
    if cfg.init == "default":
        return
    torch.manual_seed(cfg.seed)
    n_layers = cfg.model["text_layers"]
    for name, p in model.named_parameters():
        if p.dim() >= 2 and "embed_tokens" not in name:
            fan_in = p[0].numel()
            p.normal_(0.0, 1.0 / math.sqrt(fan_in))
            if name == "lm_head.weight":  # small readout: the first loss is ~ln 4
                p.normal_(0.0, 0.02)
            elif name.endswith(("o_proj.weight", "down_proj.weight", "attn.proj.weight", "mlp.fc2.weight")):
                p.mul_(1.0 / math.sqrt(2 * n_layers))
        elif "embed_tokens" in name:
            p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
        elif name.endswith(".bias"):
            p.zero_()


def option_logits(model, batch: dict[str, torch.Tensor], option_ids: Sequence[int]) -> torch.Tensor:
    """``(b, 4)``: next-token logits of the options at the last position (as the adapter)."""
    out = model(**batch, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1, list(option_ids)].float()


# -- training ------------------------------------------------------------------------------
def evaluate(model, batcher: Batcher, option_ids, samples: Sequence[Sample], batch_size: int = 64) -> dict[str, Any]:
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            preds.append(option_logits(model, batcher(chunk), option_ids).argmax(-1))
    pred = torch.cat(preds)
    gold = torch.tensor([s.option for s in samples])
    per = {r: float((pred[gold == c] == c).float().mean()) for c, r in enumerate(RELATIONS) if (gold == c).any()}
    return {"accuracy": float((pred == gold).float().mean()), "per_class": per}


def train(cfg: ToyConfig, out_dir: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a toy model into ``out_dir`` (a Hugging Face checkpoint directory) and return the
    history. Deterministic for a given config on a given machine (seeded init and data)."""
    from creg.adapter import AdapterConfig
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / "config.json").is_file():
            raise FileExistsError(f"{out} is not empty and is not a checkpoint directory; refusing to replace it")
        shutil.rmtree(out)
    build_model_dir(out, cfg)
    adapter = Qwen2VLAdapter.load(AdapterConfig(model=str(out), dtype="float32", device="cpu"))
    model = adapter.model
    if cfg.init_from:
        from transformers import Qwen2VLForConditionalGeneration

        previous = Qwen2VLForConditionalGeneration.from_pretrained(cfg.init_from, dtype=torch.float32)
        model.load_state_dict(previous.state_dict())  # strict: the same architecture
    else:
        init_weights(model, cfg)
    model.requires_grad_(True)
    option_ids = adapter.option_token_ids
    batcher = Batcher(adapter)

    eval_samples = [scene(cfg.eval_seed, i, cfg.image_size, "full") for i in range(cfg.eval_n)]
    check_inputs(batcher, eval_samples[:8])
    n_params = sum(p.numel() for p in model.parameters())
    log(json.dumps({"params": n_params, "config": asdict(cfg)}))

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to min_lr_ratio
        warm = min(1.0, step / max(1, cfg.warmup))
        prog = min(1.0, step / max(1, cfg.steps))
        return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))

    history: list[dict[str, Any]] = []
    t0 = time.time()
    run_loss = run_acc = 0.0
    train_seed = 1000 + cfg.seed
    for step in range(1, cfg.steps + 1):
        model.train()
        stage = "pair" if step <= cfg.curriculum_steps else "full"
        n_focus = round(cfg.focus_fraction * cfg.batch_size) if cfg.focus_colours and stage == "full" else 0
        samples = [
            scene(train_seed, (step - 1) * cfg.batch_size + j, cfg.image_size, "focus" if j < n_focus else stage, cfg.focus_colours)
            for j in range(cfg.batch_size)
        ]
        y = torch.tensor([s.option for s in samples])
        z = option_logits(model, batcher(samples), option_ids)
        loss = F.cross_entropy(z, y)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        run_loss += loss.item()
        run_acc += (z.argmax(-1) == y).float().mean().item()
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = step - (history[-1]["step"] if history else 0)
            ev = evaluate(model, batcher, option_ids, eval_samples)
            rec = {"step": step, "stage": stage, "lr": lr_at(step), "train_loss": run_loss / n,
                   "train_acc": run_acc / n, "eval_acc": ev["accuracy"], "eval_per_class": ev["per_class"],
                   "seconds": round(time.time() - t0, 1)}
            history.append(rec)
            log(json.dumps(rec))
            run_loss = run_acc = 0.0
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:  # a resumable snapshot
                model.save_pretrained(out)
                (out / "training_log.json").write_text(json.dumps(history, indent=1) + "\n")

    model.eval().requires_grad_(False)
    model.save_pretrained(out)
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)
    (out / "training_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    (out / "training_log.json").write_text(json.dumps(history, indent=1) + "\n")
    return {"history": history, "params": n_params, "seconds": time.time() - t0}


def evaluate_dir(model_dir: str | Path, n: int = 200, seed: int = 0, batch_size: int = 50) -> dict[str, Any]:
    """Accuracy of a checkpoint on scenes 0..n-1 of ``seed``, through ``Qwen2VLAdapter.forward``."""
    from creg.adapter import AdapterConfig
    from creg_qwen2vl.adapter import Qwen2VLAdapter
    from creg_synthetic.scenes import scene_sample

    adapter = Qwen2VLAdapter.load(AdapterConfig(model=str(model_dir), dtype="float32", device="cpu"))
    samples = [scene_sample(seed, i) for i in range(n)]
    pred = torch.cat([adapter.forward(samples[i : i + batch_size]).predictions.cpu() for i in range(0, n, batch_size)])
    gold = torch.tensor([s.option for s in samples])
    per = {r: float((pred[gold == c] == c).float().mean()) for c, r in enumerate(RELATIONS) if (gold == c).any()}
    return {"n": n, "seed": seed, "accuracy": float((pred == gold).float().mean()), "per_class": per}


def plot_history(history: Sequence[dict[str, Any]], png: str | Path, title: str = "toy Qwen2-VL") -> None:
    """Loss and accuracy against step (needs matplotlib). Records may carry ``"phase"``
    (several runs chained with ``--init-from``, steps counted on): phase starts get a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(steps, [h["train_loss"] for h in history], label="train loss (running)")
    a1.axhline(math.log(4), ls=":", c="gray", label="chance (ln 4)")
    a1.set_xlabel("step"); a1.set_ylabel("cross-entropy"); a1.legend()
    a2.plot(steps, [h["train_acc"] for h in history], label="train acc (running)")
    a2.plot(steps, [h["eval_acc"] for h in history], label="held-out acc (seed 0, 256 scenes)")
    a2.axhline(0.25, ls=":", c="gray")
    a2.set_ylim(0, 1.02); a2.set_xlabel("step"); a2.set_ylabel("accuracy"); a2.legend(loc="lower right")
    curr = [h["step"] for h in history if h.get("stage") == "pair"]
    starts = [b["step"] for a, b in zip(history, history[1:]) if a.get("phase") != b.get("phase")]
    for ax in (a1, a2):
        if curr:
            ax.axvspan(0, max(curr), color="orange", alpha=0.12, label=None)
        for x in starts:
            ax.axvline(x, color="purple", ls="--", lw=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
