"""Training the toy Qwen2-VL (preset ``qwen2vl-toy``): resumable, on scenes and flipped copies.

A run starts from an existing checkpoint -- grown with :mod:`tools.creg_toy.growth` (``grow_from``)
or taken as it is (``init_from``) -- and trains every parameter on the ``synthetic``
benchmark's scenes. Every base scene comes with its flipped copies (``flips``: left-right,
top-bottom, both; relations mapped accordingly), so a model that decides from one side of the
image is wrong on half of its batch. Loss: cross-entropy over the next-token logits of
"1".."4" (left, right, above, below) at the answer position -- what the adapter reads.

Resumable: every ``save_every`` steps the run directory gets ``trainer_state.pt`` (weights,
optimiser state, step, curve; written to a temporary file, then renamed) and the weights as a
Hugging Face checkpoint. ``train`` on a directory holding a state with the same configuration
continues from its step; the scenes of step t come from their own seed, so an interrupted and
resumed run trains on the same data as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from creg.core.sample import RELATIONS, Sample

from .shaping import attention_weights, decoder_layers, knockout_loss, read_penalty
from .data import FLIP_RELATION, Batcher, check_inputs, flip_sample, load_adapter, scenes, train_seed

STATE = "trainer_state.pt"


@dataclass
class ToyConfig:
    """Everything that determines a training run (saved as ``training_config.json``)."""

    seed: int = 0
    steps: int = 1500
    #: samples per step, flipped copies included (base scenes = batch_size / (1 + len(flips))).
    batch_size: int = 24
    lr: float = 1e-3
    warmup: int = 50
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    flips: tuple[str, ...] = ("h", "v", "hv")
    #: options of the ``synthetic`` benchmark for training and held-out scenes.
    scene_options: dict[str, Any] = field(default_factory=lambda: {"layout": "disc"})
    #: start from this checkpoint grown to ``grow`` (text_layers, vision_depth, image_side) ...
    grow_from: str | None = None
    grow: dict[str, int] = field(default_factory=lambda: {"text_layers": 8, "vision_depth": 4, "image_side": 336})
    #: ... or from this checkpoint as it is.
    init_from: str | None = None
    eval_n: int = 64
    eval_seed: int = 0
    log_every: int = 25
    eval_every: int = 50
    save_every: int = 25
    #: torch CPU threads; 1 is faster than 2 on a shared 2-core machine (no OpenMP spin-waiting).
    threads: int = 1
    #: with ``init_from``: the image processor resizes images to this side (448: a 16x16 grid).
    image_side: int | None = None
    #: decoder blocks (first, last; inclusive) in which the text after the image may read vision
    #: tokens; ``read_weight`` times the attention mass read elsewhere is added to the loss
    #: (:mod:`tools.creg_toy.shaping`).
    read_window: tuple[int, int] | None = None
    read_weight: float = 0.0
    #: over the text queries: "mean" mass, or the "max" (the query that reads most)
    read_reduce: str = "mean"
    #: each step one block (``knockout_block``: the laggard) is knocked out on ``knockout_samples`` samples and
    #: ``knockout_weight * relu(knockout_margin - (CE_knocked - CE))`` is added to the loss.
    knockout_weight: float = 0.0
    knockout_margin: float = 0.3
    knockout_samples: int = 8
    #: with ``init_from``: decoder blocks whose output projections are re-initialised at the start
    #: (fan-in normal), so that blocks grown as identities join the computation.
    reinit_blocks: tuple[int, ...] = ()
    #: their std is ``reinit_scale / sqrt(fan-in)``: a block must write on the scale of the residual
    #: stream (RMS 10-20 in the toy) to matter; at scale 1 it adds RMS ~1 and stays negligible.
    reinit_scale: float = 1.0

    def comparable(self) -> dict[str, Any]:
        """The fields a resume must match (``steps`` may be extended)."""
        d = json.loads(json.dumps(asdict(self)))
        for k in ("steps", "threads", "eval_every", "log_every", "save_every"):
            d.pop(k)
        return d


def _from_json(d: dict[str, Any]) -> dict[str, Any]:
    d = {**d, "flips": tuple(d["flips"])}
    d["reinit_blocks"] = tuple(d.get("reinit_blocks", ()))
    if d.get("read_window") is not None:
        d["read_window"] = tuple(d["read_window"])
    return d


def option_logits(model, batch: dict[str, torch.Tensor], option_ids: Sequence[int]) -> torch.Tensor:
    """``(b, 4)``: next-token logits of the options at the last position (as the adapter)."""
    out = model(**batch, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1, list(option_ids)].float()


def knockout_block(ema: Sequence[float | None]) -> int:
    """The block to knock out next: each once in order, then always the one whose knockout has
    cost least lately (the laggard gets every step's signal until it catches up)."""
    fresh = [i for i, e in enumerate(ema) if e is None]
    return fresh[0] if fresh else min(range(len(ema)), key=lambda i: ema[i])


def with_flips(base: Sequence[Sample], flips: Sequence[str]) -> list[Sample]:
    return [v for s in base for v in (s, *(flip_sample(s, f) for f in flips))]


@torch.no_grad()
def predict(model, batcher: Batcher, option_ids, samples: Sequence[Sample], batch_size: int = 48) -> torch.Tensor:
    model.eval()
    out = [option_logits(model, batcher(samples[i : i + batch_size]), option_ids).argmax(-1)
           for i in range(0, len(samples), batch_size)]
    return torch.cat(out)


def flip_scores(pred: torch.Tensor, base: Sequence[Sample], flipped: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Accuracy, per class, and flip equivariance: the share of (scene, flipped scene) pairs whose
    answers correspond (answer on the flip == the flip of the answer on the original)."""
    gold = torch.tensor([s.option for s in base])
    res: dict[str, Any] = {"accuracy": float((pred == gold).float().mean()),
                           "per_class": {r: float((pred[gold == c] == c).float().mean())
                                         for c, r in enumerate(RELATIONS) if (gold == c).any()}}
    for how, fp in flipped.items():
        mapped = torch.tensor([RELATIONS.index(FLIP_RELATION[how][RELATIONS[int(p)]]) for p in pred])
        res[f"flip_{how}"] = float((fp == mapped).float().mean())
        res[f"accuracy_{how}"] = float((fp == torch.tensor([RELATIONS.index(FLIP_RELATION[how][s.relation]) for s in base])).float().mean())
    return res


def evaluate_model(model, batcher, option_ids, base: Sequence[Sample], flips: Sequence[str] = ("h", "v")) -> dict[str, Any]:
    pred = predict(model, batcher, option_ids, base)
    flipped = {f: predict(model, batcher, option_ids, [flip_sample(s, f) for s in base]) for f in flips}
    return flip_scores(pred, base, flipped)


def _save(out: Path, model, opt, step: int, history: list, cfg: ToyConfig, ko_ema: list) -> None:
    tmp = out / (STATE + ".tmp")
    torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "history": history,
                "knockout_ema": ko_ema,
                "config": asdict(cfg)}, tmp)
    os.replace(tmp, out / STATE)
    model.save_pretrained(out)
    (out / "generation_config.json").unlink(missing_ok=True)
    (out / "training_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    (out / "training_log.json").write_text(json.dumps(history, indent=1) + "\n")


def _start(cfg: ToyConfig, out: Path) -> None:
    """Fill a new run directory with the starting checkpoint."""
    if out.exists() and any(out.iterdir()):
        if not (out / "config.json").is_file():
            raise FileExistsError(f"{out} is not empty and is not a checkpoint directory; refusing to replace it")
        shutil.rmtree(out)
    if cfg.grow_from:
        from .growth import grow_checkpoint

        grow_checkpoint(cfg.grow_from, out, seed=cfg.seed, **cfg.grow)
    elif cfg.init_from:
        shutil.copytree(cfg.init_from, out, ignore=shutil.ignore_patterns("training_*", STATE))
        from .growth import reinit_outputs, set_image_side

        if cfg.image_side:
            set_image_side(out, cfg.image_side)
        if cfg.reinit_blocks:
            reinit_outputs(out, cfg.reinit_blocks, seed=cfg.seed, scale=cfg.reinit_scale)
    else:
        raise ValueError("a toy training run starts from a checkpoint: give grow_from or init_from")


def train(cfg: ToyConfig, out_dir: str | Path, log: Callable[[str], None] = print, stop_at: int | None = None) -> dict[str, Any]:
    """Train into ``out_dir`` (resuming a run with the same configuration found there) and return
    the curve. ``stop_at``: save and return after this step (the rest of the schedule is left
    for a later resume). Deterministic for a given config on a given machine (seeded growth and
    data): an interrupted and resumed run ends with the same weights as an uninterrupted one."""
    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    state = None
    if (out / STATE).is_file():
        state = torch.load(out / STATE, weights_only=False)
        theirs = ToyConfig(**_from_json(state["config"])).comparable()
        if theirs != cfg.comparable():
            raise ValueError(f"{out} holds a run with another configuration; use another --out (or remove it)")
        log(json.dumps({"resume": state["step"]}))
    else:
        _start(cfg, out)
    adapter = load_adapter(out)
    model = adapter.model
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    history: list[dict[str, Any]] = []
    start = 0
    n_layers = len(decoder_layers(model))
    #: running mean (EMA 0.8) of each block's knockout gap; None until the block was first knocked out
    ko_ema: list[float | None] = [None] * n_layers
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start = state["history"], state["step"]
        ko_ema = state.get("knockout_ema", ko_ema)
    option_ids = adapter.option_token_ids
    batcher = Batcher(adapter)
    held_out = list(scenes(cfg.eval_seed, cfg.eval_n, **cfg.scene_options))
    worst = check_inputs(batcher, held_out[:4] + [flip_sample(s, "h") for s in held_out[:2]])
    n_params = sum(p.numel() for p in model.parameters())
    log(json.dumps({"params": n_params, "pixel_check_max_abs_diff": worst, "config": asdict(cfg)}))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to min_lr_ratio
        warm = min(1.0, step / max(1, cfg.warmup))
        prog = min(1.0, step / max(1, cfg.steps))
        return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))

    n_base = max(1, cfg.batch_size // (1 + len(cfg.flips)))
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)
    run_loss = run_acc = run_read = 0.0
    n_run = 0
    ko_gaps: dict[int, list[float]] = defaultdict(list)
    z_zero = torch.zeros(())
    if start == 0:
        ev = evaluate_model(model, batcher, option_ids, held_out)
        history.append({"step": 0, "eval": ev, "seconds": round(time.time() - t0, 1)})
        log(json.dumps(history[-1]))
    for step in range(start + 1, cfg.steps + 1):
        model.train()
        samples = with_flips(list(scenes(train_seed(cfg.seed, step), n_base, **cfg.scene_options)), cfg.flips)
        y = torch.tensor([s.option for s in samples])
        batch = batcher(samples)
        if cfg.read_window is not None and cfg.read_weight:
            with attention_weights(model) as att:
                z = option_logits(model, batch, option_ids)
            read = read_penalty(att, batch["input_ids"], batcher.adapter.inputs.image_token_id, cfg.read_window,
                                cfg.read_reduce)
        else:
            z, read = option_logits(model, batch, option_ids), z_zero
        ce = F.cross_entropy(z, y)
        loss = ce + cfg.read_weight * read
        if cfg.knockout_weight:
            k = min(cfg.knockout_samples, len(samples))
            sub = {key: (v[:k] if key != "pixel_values" else v[: k * v.shape[0] // len(samples)])
                   for key, v in batch.items()}
            block = knockout_block(ko_ema)
            ko, gap = knockout_loss(lambda b: option_logits(model, b, option_ids), model, sub, y[:k], block,
                                    F.cross_entropy(z[:k], y[:k]), cfg.knockout_margin)
            loss = loss + cfg.knockout_weight * ko
            ko_gaps[block].append(float(gap))
            ko_ema[block] = float(gap) if ko_ema[block] is None else 0.8 * ko_ema[block] + 0.2 * float(gap)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        run_loss += ce.item()
        run_read += float(read.detach())
        run_acc += (z.argmax(-1) == y).float().mean().item()
        n_run += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec: dict[str, Any] = {"step": step, "lr": lr_at(step), "train_loss": run_loss / n_run,
                                   "train_acc": run_acc / n_run}
            if cfg.read_window is not None and cfg.read_weight:
                rec["read_outside"] = run_read / n_run
            if cfg.knockout_weight:
                rec["knockout_gap"] = {str(b): round(sum(g) / len(g), 3) for b, g in sorted(ko_gaps.items()) if g}
                ko_gaps.clear()
            if step % cfg.eval_every == 0 or step == cfg.steps:
                rec["eval"] = evaluate_model(model, batcher, option_ids, held_out)
            rec["seconds"] = round(time.time() - t0, 1)
            history.append(rec)
            log(json.dumps(rec))
            run_loss = run_acc = run_read = 0.0
            n_run = 0
        if step % cfg.save_every == 0 or step == cfg.steps or step == stop_at:
            _save(out, model, opt, step, history, cfg, ko_ema)
        if step == stop_at:
            break
    model.eval().requires_grad_(False)
    return {"history": history, "params": n_params, "seconds": time.time() - t0}


def evaluate_dir(model_dir: str | Path, n: int = 200, seed: int = 0, batch_size: int = 50,
                 flips: Sequence[str] = ("h", "v"), **scene_options: Any) -> dict[str, Any]:
    """Accuracy and flip equivariance of a checkpoint on scenes 0..n-1 of ``seed``, through the
    adapter's own ``forward`` (its encoding, its answer)."""
    adapter = load_adapter(model_dir)
    base = list(scenes(seed, n, **scene_options))

    def preds(samples):
        return torch.cat([adapter.forward(samples[i : i + batch_size]).predictions.cpu()
                          for i in range(0, len(samples), batch_size)])

    pred = preds(base)
    res = flip_scores(pred, base, {f: preds([flip_sample(s, f) for s in base]) for f in flips})
    return {"n": n, "seed": seed, "scene_options": scene_options, **res}
