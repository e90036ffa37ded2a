"""Models larger than one device: ``--device-map`` / ``--max-memory`` (creg.config.placement).

Checked before a run directory exists (one-line errors), passed to the adapter as its options,
recorded in config.json (a resume must match), and a device-mapped model gives the records of
one on a single device. On the CPU the maps put every layer on "cpu" (explicitly, module by
module, or through ``auto`` with ``max_memory={"cpu": ...}``); accelerate's hooks and its
offloading (weights on the ``meta`` device, run elsewhere) are exercised by dispatching the
model by hand, and every decoder block is checked to receive its inputs on the device it runs
on. ``test_split_over_a_gpu_and_the_cpu`` does the same over two real devices when CUDA is there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.cli import cli
from creg.hf.decoder import find_decoder, module_device
from creg.config.placement import accelerate_max_memory, check_device_map, check_max_memory, parse_size
from creg.config.run_config import RunConfig
from creg.config.resolve import resolve_adapter
from creg.core.errors import RunError
from creg.execution.runner import Runner
from creg.core.sample import make_sample
from creg.store import RunStore
from creg.testing import draw_image
from creg_qwen2vl.adapter import Qwen2VLAdapter

SOURCES = ["creg", "gradcam", "integrated_gradients", "attention_rollout", "gradnorm"]


# -- parsing and checking ------------------------------------------------------------------
def test_device_maps_are_strategies_or_module_dicts():
    assert [check_device_map(s) for s in ("auto", "balanced", "balanced_low_0", "sequential")] == \
           ["auto", "balanced", "balanced_low_0", "sequential"]
    assert check_device_map('{"model.visual": 0, "model.language_model.layers.0": "1", "lm_head": "cpu"}') == \
           {"model.visual": 0, "model.language_model.layers.0": 1, "lm_head": "cpu"}
    assert check_device_map({"": "cuda:1"}) == {"": "cuda:1"} and check_device_map(None) is None
    for bad, message in [("everywhere", "expected auto, balanced, balanced_low_0, sequential or a JSON object"),
                         ('{"lm_head": "disk"}', "disk offload is not supported"),
                         ('{"lm_head": "gpu3"}', "'lm_head': unknown device 'gpu3'"),
                         ('{"lm_head": -1}', "unknown device -1"),
                         ('{"lm_head": true}', "expected a device"),
                         ("{}", "the device map is empty"), ("{nope", "not valid JSON"), ("[0]", "expected auto")]:
        with pytest.raises(ValueError, match=message):
            check_device_map(bad)


def test_max_memory_pairs_json_and_dicts_normalise_to_string_keys():
    assert check_max_memory("0=70GiB, 1=70GiB,cpu=200GiB") == {"0": "70GiB", "1": "70GiB", "cpu": "200GiB"}
    assert check_max_memory('{"0": "1GB", "cpu": 1000}') == {"0": "1GB", "cpu": 1000}
    assert check_max_memory({0: "1GiB", "cuda:1": "2 GiB", "mps": 5}) == {"0": "1GiB", "1": "2 GiB", "mps": 5}
    for bad, message in [("gpu0=1GiB", "unknown device 'gpu0'"), ("0=lots", "0: bad size 'lots'"),
                         ("0=0", "must be positive"), ("disk=10GiB", "disk offload is not supported"),
                         ("0=1GiB,cuda:0=2GiB", "device '0' given twice"), ("0", "expected DEVICE=SIZE"),
                         ("", "expected DEVICE=SIZE"), ("{}", "expected DEVICE=SIZE pairs")]:
        with pytest.raises(ValueError, match=message):
            check_max_memory(bad)


def test_sizes_are_bytes_as_accelerate_counts_them():
    from accelerate.utils import convert_file_size_to_int

    assert parse_size("70GiB") == 70 * 2**30 and parse_size("1.5GB") == 1_500_000_000
    assert parse_size("500 MiB") == 500 * 2**20 and parse_size("2TB") == 2 * 10**12 and parse_size("1024") == 1024
    for size in ("70GiB", "500MiB", "10KiB", "1.5GB", "300MB", "64KB"):
        assert parse_size(size) == convert_file_size_to_int(size), size
    assert accelerate_max_memory({"0": "70GiB", "cpu": "1.5GB", "1": 1000}) == \
           {0: 70 * 2**30, "cpu": 1_500_000_000, 1: 1000}


def test_torchrun_ranks_on_one_machine_share_its_gpus_out():
    from creg.config.placement import rank_max_memory

    def share(max_memory, rank, size=2, gpus=8):
        return rank_max_memory("auto", max_memory, local_rank=rank, local_size=size, n_gpus=gpus,
                               gpu_free=lambda g: 1000 + g, cpu_free=10_000)

    assert share(None, 0) == {"0": 1000, "1": 1001, "2": 1002, "3": 1003, "cpu": 4500}
    assert share(None, 1) == {"4": 1004, "5": 1005, "6": 1006, "7": 1007, "cpu": 4500}
    assert share(None, 2, size=3) == {"4": 1004, "5": 1005, "cpu": 3000}  # 8 // 3 = 2 GPUs each, GPUs 6, 7 idle
    capped = {"0": "70GiB", "1": "70GiB", "5": "60GiB", "cpu": "100GiB"}
    assert share(capped, 0) == {"0": "70GiB", "1": "70GiB", "cpu": "100GiB"}  # only the named GPUs of its share
    assert share(capped, 1) == {"5": "60GiB", "cpu": "100GiB"}
    assert share({"cpu": "8GiB"}, 1) == {"4": 1004, "5": 1005, "6": 1006, "7": 1007, "cpu": "8GiB"}
    assert share({"0": "1GiB"}, 0) == {"0": "1GiB"}  # no cpu named: no CPU offload, as accelerate reads it
    with pytest.raises(ValueError, match=r"names GPUs \[0\], none of them in this rank's share \[4, 5, 6, 7\]"):
        share({"0": "1GiB"}, 1)
    with pytest.raises(ValueError, match="4 ranks on this machine but 2 GPU"):
        share(None, 0, size=4, gpus=2)
    with pytest.raises(ValueError, match="explicit {module: device} map would put all 2 ranks"):
        rank_max_memory({"": 0}, None, local_rank=0, local_size=2, n_gpus=8, gpu_free=int, cpu_free=1)


def test_loading_under_torchrun_takes_this_ranks_share(monkeypatch):
    from creg.hf import loading

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    if not torch.cuda.is_available():  # the CPU: nothing to share out
        assert loading._this_ranks_share("auto", {"cpu": "1GiB"}) == {"cpu": "1GiB"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine of 4 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda g: (1000 * (g + 1), 5000))
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert loading._this_ranks_share("auto", {"cpu": "1GiB"}) == {"2": 3000, "3": 4000, "cpu": "1GiB"}
    assert current == [2]  # the rank's default CUDA device is its first GPU
    with pytest.raises(ValueError, match="explicit {module: device} map"):
        loading._this_ranks_share({"": 0}, None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert loading._this_ranks_share({"": 0}, None) is None


# -- the command line: one-line errors before the run directory exists ---------------------
BASE = ["run", "--adapter", "qwen2vl-toy", "--source", "creg", "--limit", "1", "--no-progress"]


@pytest.mark.parametrize("extra, message", [
    (["--device-map", "everywhere"], "creg: --device-map: expected auto, balanced, balanced_low_0, sequential or a "
                                     "JSON object {module: device}, got 'everywhere'"),
    (["--device-map", '{"lm_head": "disk"}'], "creg: --device-map: 'lm_head' -> disk: disk offload is not supported"),
    (["--device-map", "auto", "--max-memory", "gpu0=1GiB"], "creg: --max-memory: unknown device 'gpu0': use GPU "
                                                             "indices (0, 1, ...), cpu or mps"),
    (["--device-map", "auto", "--max-memory", "0=lots"], "creg: --max-memory: 0: bad size 'lots'"),
    (["--max-memory", "cpu=1GiB"], "creg: --max-memory caps what a device map puts on each device: give --device-map"),
    (["--device-map", "auto", "--device", "cuda:1"], "creg: --device cuda:1 and --device-map both given"),
    (["--device-map", "auto", "--adapter-opt", "device_map=auto"], "creg: --device-map and --adapter-opt "
                                                                    "device_map=... both given"),
    (["--adapter-opt", "max_memory=0=1GiB"], "creg: adapter 'qwen2vl': max_memory caps what a device map puts on "
                                             "each device: set device_map too"),
    (["--adapter", "none", "--device-map", "auto"], "creg: --device-map given but 'none' runs no model"),
])
def test_bad_placement_fails_in_one_line_before_the_run_directory_exists(tmp_path, extra, message):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, BASE + ["--out", str(out)] + extra)
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()


def test_every_model_command_takes_the_placement_flags():
    from creg.cli.analyze import ablation_cmd, prompts_cmd
    from creg.cli.explain import explain_cmd
    from creg.cli.run import run_cmd

    for cmd in (run_cmd, explain_cmd, ablation_cmd, prompts_cmd):
        assert {"--device-map", "--max-memory"} <= {o for p in cmd.params for o in p.opts}, cmd.name


def test_explain_takes_the_placement_flags(tmp_path):
    img = tmp_path / "i.png"
    draw_image((112, 84), noise_seed=3).save(img)
    base = ["explain", "--adapter", "qwen2vl-toy", "--image", str(img), "--ref", "a", "--ref-box", "0,0,30,20",
            "--tgt", "b", "--tgt-box", "60,40,110,80", "--source", "creg,attention_rollout", "--threads", "1",
            "--dtype", "float32", "--json"]
    plain = CliRunner().invoke(cli, base + ["--device", "cpu"])
    mapped = CliRunner().invoke(cli, base + ["--device-map", "auto", "--max-memory", "cpu=2GiB"])
    assert plain.exit_code == 0 and mapped.exit_code == 0, mapped.output
    def answer(res):
        return json.loads(res.stdout)

    assert answer(mapped) == answer(plain) and answer(plain)["sources"]
    res = CliRunner().invoke(cli, base + ["--max-memory", "cpu=2GiB"])
    assert res.exit_code == 2 and "--max-memory caps what a device map puts on each device" in res.output


def _opted_plugins():
    """The plugin table plus adapter 'opted' (its Options lack device_map) and a 0.1-style 'legacy' (no Options)."""
    import types

    from creg import hookimpl
    from creg.plugins.adapter import VLMAdapter
    from creg.plugins.options import PluginOptions
    from creg.plugins.manager import discover

    class Opted(VLMAdapter):
        class Options(PluginOptions):
            max_pixels: int = 1024

    class Legacy(VLMAdapter):
        pass

    plugin = types.ModuleType("placement_test_plugin")

    @hookimpl
    def register_adapters(register):
        register("opted", Opted, description="test adapter without device_map")
        register("legacy", Legacy, description="test adapter without Options")

    plugin.register_adapters = register_adapters
    plugins = discover()
    plugins.add_module(plugin)
    return plugins


@pytest.mark.parametrize("adapter, cls", [("opted", "Opted"), ("legacy", "Legacy")])
def test_an_adapter_without_the_option_is_named_in_one_line(adapter, cls):
    from creg.config.presets import Preset

    presets = {"p": Preset(adapter=adapter, model="m")}
    for field, value in (("device_map", "auto"), ("max_memory", "cpu=1GiB")):
        config = RunConfig(adapter="p", device_map="auto", **({field: value} if field == "max_memory" else {}))
        with pytest.raises(RunError, match=rf"^--device-map: adapter '{adapter}' \({cls}\) has no device_map option: "
                                           r"it loads its model on one device \(--device\)"):
            resolve_adapter(config, _opted_plugins(), presets)
    assert resolve_adapter(RunConfig(adapter="p"), _opted_plugins(), presets)[0].__name__ == cls


def test_a_missing_accelerate_is_named_before_loading(monkeypatch):
    import creg.config.placement
    from creg.plugins.manager import get_plugins
    from creg.config.presets import load_registry

    real = creg.config.placement.importlib.util.find_spec
    monkeypatch.setattr(creg.config.placement.importlib.util, "find_spec",
                        lambda name, *a: None if name == "accelerate" else real(name, *a))
    for config in (RunConfig(adapter="qwen2vl-toy", device_map="auto"),
                   RunConfig(adapter="qwen2vl-toy", adapter_options={"device_map": "auto"})):
        with pytest.raises(RunError, match=r"--device-map: a device map needs accelerate.*pip install 'creg\[big\]'"):
            resolve_adapter(config, get_plugins(), load_registry([]))


def test_the_flags_become_the_adapters_options_and_leave_the_run_identity_alone():
    from creg.plugins.manager import get_plugins
    from creg.config.presets import load_registry

    config = RunConfig(adapter="qwen2vl-toy", device_map="auto", max_memory="cpu=2GiB")
    _, cfg = resolve_adapter(config, get_plugins(), load_registry([]))
    assert cfg.options.device_map == "auto" and cfg.options.max_memory == {"cpu": "2GiB"}
    assert config.identity() == RunConfig(adapter="qwen2vl-toy").identity()  # same default run directory
    assert RunConfig(**json.loads(config.model_dump_json())) == config  # config.json round-trips it


# -- the records of a device-mapped model --------------------------------------------------
def every_module_on_cpu(model) -> dict[str, str]:
    """A device map naming each decoder block and every other part of ``model`` (built from its
    module names: the ancestors of the decoder blocks are split into their children), all "cpu"."""
    parts = find_decoder(model)
    names = {id(m): n for n, m in model.named_modules()}
    blocks = {names[id(layer)] for layer in parts.layers}
    ancestors = {b.rsplit(".", k)[0] for b in blocks for k in range(1, b.count(".") + 1)} | {""}
    out, todo = {}, [""]
    while todo:
        name = todo.pop()
        module = model.get_submodule(name)
        for child, _ in module.named_children():
            full = f"{name}.{child}" if name else child
            if full in ancestors:
                todo.append(full)
            else:
                out[full] = "cpu"
    return out


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    return {(r.sample_id, r.source): r.model_dump() for r in RunStore.read(out).records()}


@pytest.fixture(scope="module")
def toy_module_map():
    from creg.config.presets import load_registry

    preset = load_registry([])["qwen2vl-toy"]
    adapter = Qwen2VLAdapter.load(preset.adapter_config())
    return every_module_on_cpu(adapter.model), len(adapter.decoder.layers)


def test_device_mapped_toy_runs_write_the_records_of_a_plain_run(tmp_path, toy_module_map):
    device_map, n_layers = toy_module_map
    assert sum(k.startswith("model.language_model.layers.") for k in device_map) == n_layers
    assert {"lm_head", "model.visual", "model.language_model.norm"} <= set(device_map)

    def run(out, **placement):  # float32 throughout: on a GPU machine "auto" would mean bfloat16
        config = RunConfig(adapter="qwen2vl-toy", sources=SOURCES, n=3, dtype="float32", **placement)
        return Runner(config, tmp_path / out, progress=False, log=lambda m: None).run()

    run("plain", device="cpu")
    run("modules", device_map=device_map)
    res = CliRunner().invoke(cli, ["run", "--adapter", "qwen2vl-toy", "--source", ",".join(SOURCES), "--limit", "3",
                                   "--device-map", "auto", "--max-memory", "cpu=4GiB", "--threads", "1",
                                   "--dtype", "float32", "--out", str(tmp_path / "auto"), "--no-progress"])
    assert res.exit_code == 0, res.output
    plain = _rows(tmp_path / "plain")
    assert len(plain) == 3 * len(SOURCES)
    assert _rows(tmp_path / "modules") == plain and _rows(tmp_path / "auto") == plain
    stored = RunStore.read(tmp_path / "auto").config
    assert stored["run"]["device_map"] == "auto" and stored["run"]["max_memory"] == {"cpu": "4GiB"}
    assert stored["adapter"]["options"]["device_map"] == "auto"
    assert stored["adapter"]["options"]["max_memory"] == {"cpu": "4GiB"}

    # a resume must match the placement; the same command continues
    again = ["run", "--adapter", "qwen2vl-toy", "--source", ",".join(SOURCES), "--limit", "3", "--threads", "1",
             "--dtype", "float32", "--out", str(tmp_path / "auto"), "--no-progress", "--device-map", "auto"]
    res = CliRunner().invoke(cli, again + ["--max-memory", "cpu=8GiB"])
    assert res.exit_code == 2 and "adapter.options" in res.output and "8GiB" in res.output, res.output
    res = CliRunner().invoke(cli, again + ["--max-memory", "cpu=4GiB"])
    assert res.exit_code == 0, res.output
    # the run's own config.json as --config: the placement comes back from it
    res = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "auto" / "config.json"), "--out",
                                   str(tmp_path / "auto"), "--no-progress"])
    assert res.exit_code == 0, res.output


# -- hooks, leaf, replay and attention stream on accelerate's dispatched model --------------
def _sample(sid, size, ref="dog", seed=0):
    w, h = size
    return make_sample(id=sid, image=draw_image(size, noise_seed=seed), image_size=size, ref_name=ref,
                       ref_box={"x0": 0, "y0": 0, "x1": w / 4, "y1": h / 4}, tgt_name="cat",
                       tgt_box={"x0": w / 2, "y0": h / 2, "x1": w, "y1": h}, relation="below")


class InputDevices:
    """Records, where each decoder block and its first norm really run (inside accelerate's hook,
    which moves the inputs and loads offloaded weights), the devices of every tensor argument and
    of the norm's weight: the moved-tensor check. The norm is also what the replay's last-position
    block calls directly (:func:`creg.hf.last_position.last_position_block`), without the block's hook."""

    def __init__(self, layers):
        self.seen: list[tuple[int, str, set[str]]] = []
        for i, layer in enumerate(layers):
            for what, module in (("block", layer), ("norm", layer.input_layernorm)):
                name = "_old_forward" if hasattr(module, "_old_forward") else "forward"
                setattr(module, name, self._wrap(i, what, module, getattr(module, name)))

    def _wrap(self, i, what, module, forward):
        def run(*args, **kwargs):
            values = [*args, *kwargs.values()]
            tensors = [t for v in values for t in (v if isinstance(v, tuple) else (v,)) if isinstance(t, torch.Tensor)]
            if what == "norm":
                tensors.append(module.weight)
            self.seen.append((i, what, {str(t.device) for t in tensors}))
            return forward(*args, **kwargs)

        return run

    def check(self, layers) -> None:
        assert {what for _, what, _ in self.seen} == {"block", "norm"}, "no block ran"
        for i, what, devices in self.seen:
            assert devices == {str(module_device(layers[i]))}, (i, what, devices)


def _compare(placed, plain, samples):
    """Same logits, gradients at the leaf and the vision activations, replay and attention stream."""
    request = ForwardRequest(layers=(-2, -4), vision_activations=True)
    a, b = placed.forward(samples, request), plain.forward(samples, request)
    assert a.class_logits.device == placed.device
    torch.testing.assert_close(a.class_logits.cpu(), b.class_logits.cpu(), atol=1e-4, rtol=0)
    grads = [torch.autograd.grad(o.class_logits[:, 0].sum(), [o.hidden[-4], *o.vision_activations]) for o in (a, b)]
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga.cpu(), gb.cpu(), atol=1e-4, rtol=1e-3)
    h = a.hidden[-4].detach()
    replayed = placed.logits_from_layer(a, -4, torch.cat([h, 0.5 * h]))
    assert replayed.device == h.device
    h0 = b.hidden[-4].detach()
    torch.testing.assert_close(replayed.cpu(), plain.logits_from_layer(b, -4, torch.cat([h0, 0.5 * h0])).cpu(),
                               atol=1e-4, rtol=0)
    seen = []
    placed.forward(samples, ForwardRequest(attentions=True),
                   on_attention=lambda i, w: seen.append((i, w.device == module_device(placed.decoder.layers[i]))))
    assert seen == [(i, True) for i in range(placed.num_layers)]
    # every Table-1 source and COS, through the pipeline (rollout's maps and IG's targets cross devices)
    rows = [_pipeline_rows(adapter, samples) for adapter in (placed, plain)]
    assert len(rows[1]) == len(samples) * len(TABLE1)
    # across devices (CUDA's convolutions use TF32 by default): 5e-4 degrees of DAE seen on an H200
    _close(*rows, tol=1e-4 if placed.device == plain.device else 2e-3)


TABLE1 = ["creg", "creg_gt", "attention_rollout", "gradnorm", "integrated_gradients", "gradcam", "gradxact", "oracle"]


def _pipeline_rows(adapter, samples) -> dict:
    from creg.plugins.manager import get_plugins
    from creg.config.resolve import build_sources
    from creg.explain.pipeline import ScoringSettings, explain_batch

    sources = build_sources(RunConfig(sources=TABLE1, source_options={"integrated_gradients": {"steps": 8}}),
                            get_plugins(), True)
    result = explain_batch(samples, sources, adapter, ScoringSettings(cos=True), seed=0)
    assert not result.errors, result.errors
    return {(facts.id, row.source): row.model_dump() for facts, rows in result.scored for row in rows}


@pytest.fixture(scope="module")
def plain(tiny_qwen2vl_deep_dir):
    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir), device="cpu", dtype="float32"))


def test_offloaded_blocks_run_where_accelerate_executes_them(tiny_qwen2vl_deep_dir, plain, tmp_path):
    """The top blocks and the norm offloaded (weights on ``meta``, loaded for each call and run on
    the CPU): the replay and the attention stream find where each block runs, not ``meta``."""
    from accelerate import dispatch_model

    placed = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir), device="cpu", dtype="float32"))
    device_map = every_module_on_cpu(placed.model)
    for name in ("model.language_model.layers.4", "model.language_model.layers.5", "model.language_model.norm"):
        device_map[name] = "disk"
    dispatch_model(placed.model, device_map=device_map, main_device="cpu", offload_dir=str(tmp_path))
    top = placed.decoder.layers[5]
    assert top.self_attn.q_proj.weight.device.type == "meta" and module_device(top) == torch.device("cpu")
    assert module_device(placed.decoder.norm) == torch.device("cpu")
    devices = InputDevices(placed.decoder.layers)
    samples = [_sample("a", (112, 84), seed=1), _sample("b", (84, 112), ref="small brown dog", seed=2)]
    _compare(placed, plain, samples)
    devices.check(placed.decoder.layers)


def test_an_explicit_every_module_map_loads_through_from_pretrained(tiny_qwen2vl_deep_dir, plain):
    config = AdapterConfig(model=str(tiny_qwen2vl_deep_dir), dtype="float32",
                           options={"device_map": every_module_on_cpu(plain.model),
                                    "max_memory": {"cpu": "1GiB"}})
    placed = Qwen2VLAdapter.load(config)
    assert {p.device.type for p in placed.model.parameters()} == {"cpu"}  # one device: transformers adds no hooks
    devices = InputDevices(placed.decoder.layers)
    _compare(placed, plain, [_sample("a", (112, 84), seed=1)])
    devices.check(placed.decoder.layers)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: two devices for the split")
def test_split_over_a_gpu_and_the_cpu(tiny_qwen2vl_deep_dir, plain):
    """Vision, embeddings, blocks 0-2 and the head on the GPU, blocks 3-5 and the norm on the CPU:
    every block gets its inputs on its own device, and the results are the single-device ones."""
    from accelerate import dispatch_model

    placed = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir), device="cpu", dtype="float32"))
    device_map = {name: 0 for name in every_module_on_cpu(placed.model)}
    for name in ("model.language_model.layers.3", "model.language_model.layers.4", "model.language_model.layers.5",
                 "model.language_model.norm"):
        device_map[name] = "cpu"
    dispatch_model(placed.model, device_map=device_map, main_device="cpu")
    assert module_device(placed.decoder.layers[0]).type == "cuda" and module_device(placed.decoder.layers[5]).type == "cpu"
    assert placed.device.type == "cuda"
    devices = InputDevices(placed.decoder.layers)
    _compare(placed, plain, [_sample("a", (112, 84), seed=1), _sample("b", (84, 112), ref="small brown dog", seed=2)])
    devices.check(placed.decoder.layers)


def _close(a, b, path="", tol=1e-4) -> None:
    """``a == b`` with floats compared to ``tol`` (relative, absolute below 1)."""
    if isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= tol * max(1.0, abs(b)), (path, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}", tol)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]", tol)
    else:
        assert a == b, (path, a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: offloading to the CPU runs the layers there")
def test_auto_map_offloading_to_the_cpu_gives_the_records_of_the_gpu(tmp_path):
    """``--device-map auto --max-memory 0=...,cpu=...`` with too little GPU memory for the toy:
    accelerate keeps the rest on the CPU and runs it on the GPU (the 72B-on-fewer-GPUs case)."""
    def run(out, **placement):
        config = RunConfig(adapter="qwen2vl-toy", sources=SOURCES, n=4, dtype="float32", **placement)
        runner = Runner(config, tmp_path / out, progress=False, log=lambda m: None)
        runner.run()
        return runner

    run("gpu", device="cuda")
    # the toy's 2.7 MiB of float32 weights: the vision tower and the first blocks fit in 1500 KiB
    runner = run("offload", device_map="auto", max_memory={"0": "1500KiB", "cpu": "1GiB"})
    placed = runner.adapter.model.hf_device_map
    assert set(placed.values()) == {0, "cpu"}, placed
    top = runner.adapter.decoder.layers[-1]
    assert placed.get("model.language_model.layers.7", placed.get("model.language_model")) == "cpu"
    assert top.self_attn.q_proj.weight.device.type == "meta" and module_device(top).type == "cuda"
    stored = RunStore.read(tmp_path / "offload").config["adapter"]["options"]
    assert stored["max_memory"] == {"0": "1500KiB", "cpu": "1GiB"}
    gpu, offload = _rows(tmp_path / "gpu"), _rows(tmp_path / "offload")
    assert set(gpu) == set(offload) and len(gpu) == 4 * len(SOURCES)
    _close(offload, gpu)
