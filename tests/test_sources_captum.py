"""The relevance sources on a tiny random Qwen2-VL, cross-checked against Captum 0.9.

* ``gradxact`` vs ``captum.attr.LayerGradientXActivation`` on the last decoder block with
  ``attribute_to_layer_input=True`` (= hidden index -2), through the plain HF forward.
* ``integrated_gradients`` vs ``captum.attr.LayerIntegratedGradients`` on the same layer, 50
  steps, Gauss-Legendre (Captum's default and ours), zero baseline *at the layer*. Captum derives a
  layer baseline by running its forward function on the input baseline, so its forward function
  starts at the last block: it calls the HF block, final norm and lm_head itself, with the block
  arguments captured from a plain HF forward, one path point per call (internal_batch_size = b)
  -- independent of the adapter's replay.

Tolerances (float32): the elementwise terms g*h and h*avg_grad come from the same operations in
both implementations, so they agree to ~1e-6 of the largest term; we assert rtol 1e-4 with
atol 1e-6 x max|term| (IG: a sum of 50 gradients in a different order, still ~1e-7 relative).
The per-token relevance |sum_d term| is a cancelling sum at hidden index -2 (see
test_eq2_at_the_last_block_input_cancels_on_qwen), so there the bound is relative to the
sum's condition, sum_d |term|: |ours - captum| <= 1e-4 x sum_d |term_d| (+ float tiny).
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from creg.plugins.adapter import AdapterConfig, ForwardRequest  # noqa: E402
from creg.explain.context import ExplainContext, merge_requests  # noqa: E402
from creg.plugins.manager import get_plugins  # noqa: E402
from creg.sources.integrated_gradients import IntegratedGradientsSource, layer_integrated_gradients  # noqa: E402
from creg.sources.gradxact import GradXActSource  # noqa: E402
from creg_synthetic.scenes import scene_sample  # noqa: E402

torch.set_num_threads(1)

TABLE1 = ["creg", "creg_gt", "gradcam", "gradnorm", "integrated_gradients", "attention_rollout", "gradxact",
          "target_box", "random_ref"]


@pytest.fixture(scope="module")
def qwen(tiny_qwen2vl_dir):
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    return Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_dir), dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def samples():
    # two image sizes -> two vision grids -> a left-padded batch
    return [scene_sample(0, 0, (224, 168)), scene_sample(0, 1, (168, 224))]


def _gt(samples):
    return torch.tensor([s.option for s in samples])


def _plain_hf_call(qwen, samples):
    """The HF model's own forward on the adapter's inputs: (batch, option-logit function of input_ids)."""
    batch = qwen.encode(samples)
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    option_ids = list(qwen.option_token_ids)

    def forward(input_ids):
        out = qwen.model(input_ids=input_ids, **rest, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1, option_ids]

    return batch, forward


def _block_kwargs(qwen, batch, index):
    """The keyword arguments HF passes to decoder block ``index`` in a plain forward."""
    seen = {}

    def hook(module, args, kwargs):
        seen.update(kwargs)

    handle = qwen.model.model.language_model.layers[index].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            qwen.model(**batch, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    return seen


def _check_token_sums(ours_tokens, terms, what):
    """|ours - |sum_d terms|| <= 1e-4 sum_d |terms| (+ tiny) at every token."""
    ref = terms.sum(-1).abs()
    bound = 1e-4 * terms.abs().sum(-1) + 1e-12
    assert (ours_tokens - ref).abs().le(bound).all(), f"{what}: max excess {float(((ours_tokens - ref).abs() - bound).max())}"


def test_gradxact_matches_captum_layer_gradient_x_activation(qwen, samples):
    from captum.attr import LayerGradientXActivation

    src = GradXActSource()
    ctx = ExplainContext(samples, qwen, merge_requests([src.request()]))
    ours = ctx.gradients("gt", [-2])[-2] * ctx.output.hidden[-2].detach()  # b s d
    maps = src.explain(ctx)

    batch, forward = _plain_hf_call(qwen, samples)
    last_block = qwen.model.model.language_model.layers[-1]
    ref = LayerGradientXActivation(forward, last_block).attribute(
        batch["input_ids"], target=_gt(samples), attribute_to_layer_input=True).detach()
    assert ref.shape == ours.shape
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    for i, m in enumerate(maps):
        idx = ctx.layout(i).token_index
        _check_token_sums(m.values.flatten(), ref[i, idx], "gradxact -2")


def test_gradxact_one_layer_lower_matches_captum_to_1e4_relative(qwen, samples):
    """At hidden index -3 (input of the second-to-last block) the sums do not cancel: per-token
    relevance agrees with Captum to 1e-4 relative."""
    from captum.attr import LayerGradientXActivation

    src = GradXActSource(layer=-3)
    ctx = ExplainContext(samples, qwen, merge_requests([src.request()]))
    maps = src.explain(ctx)
    batch, forward = _plain_hf_call(qwen, samples)
    block = qwen.model.model.language_model.layers[-2]
    ref = LayerGradientXActivation(forward, block).attribute(
        batch["input_ids"], target=_gt(samples), attribute_to_layer_input=True).detach()
    for i, m in enumerate(maps):
        expected = ref[i, ctx.layout(i).token_index].sum(-1).abs()
        assert torch.allclose(m.values.flatten(), expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


def test_integrated_gradients_match_captum_layer_integrated_gradients(qwen, samples):
    from captum.attr import LayerIntegratedGradients

    src = IntegratedGradientsSource(steps=50, method="gausslegendre")  # Captum's rule and count
    ctx = ExplainContext(samples, qwen, merge_requests([src.request()]))
    maps = src.explain(ctx)
    ours = layer_integrated_gradients(qwen, ctx.output, -2, _gt(samples), steps=50)

    batch = qwen.encode(samples)
    text = qwen.model.model.language_model
    kwargs = _block_kwargs(qwen, batch, len(text.layers) - 1)
    option_ids = list(qwen.option_token_ids)

    def top_of_model(h):  # the last block, final norm and lm_head at the last position
        out = text.layers[-1](h, **kwargs)
        return qwen.model.lm_head(text.norm(out)[:, -1])[:, option_ids]

    h = ctx.output.hidden[-2].detach()
    b = len(samples)
    ref = LayerIntegratedGradients(top_of_model, text.layers[-1]).attribute(
        h, baselines=torch.zeros_like(h), target=_gt(samples), n_steps=50, method="gausslegendre",
        internal_batch_size=b, attribute_to_layer_input=True)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    for i, m in enumerate(maps):
        _check_token_sums(m.values.flatten(), ref[i, ctx.layout(i).token_index], "integrated_gradients")


def test_ig_replay_in_chunks_equals_one_point_at_a_time(qwen, samples):
    """The adapter's replay of r stacked path points (its batch repetition of masks and M-RoPE
    angles) gives the same gradients as replaying one path point per call."""
    out = qwen.forward(samples, ForwardRequest(layers=(-2,)))
    a = layer_integrated_gradients(qwen, out, -2, _gt(samples), steps=50, chunk=1)
    b = layer_integrated_gradients(qwen, out, -2, _gt(samples), steps=50, chunk=25)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max()))


def test_eq2_at_the_last_block_input_cancels_on_qwen(qwen, samples):
    """RMSNorm is scale-invariant up to eps, so at hidden index -2 (input of the last block) the
    vision tokens' g . h is ~eps/mean(h^2) of sum_d |g h|; at -3 it is not. Pins the layer
    convention and explains why gradxact/IG at -2 are near round-off on Qwen2-VL."""
    eps = qwen.model.model.language_model.layers[-1].input_layernorm.variance_epsilon
    ctx = ExplainContext(samples, qwen, ForwardRequest(layers=(-2, -3)))
    grads = ctx.gradients("gt", [-2, -3])
    for i in range(len(samples)):
        idx = ctx.layout(i).token_index
        ratio = {}
        for l in (-2, -3):
            h = ctx.output.hidden[l][i, idx].detach()
            prod = grads[l][i, idx] * h
            ratio[l] = prod.sum(-1).abs() / prod.abs().sum(-1)  # n_vis
        mean_sq = ctx.output.hidden[-2][i, idx].detach().pow(2).mean(-1)
        # random init: mean h^2 ~ 4e-4, so eps / mean h^2 ~ 3e-3 here (orders smaller in a trained model)
        assert (ratio[-2] <= 2 * eps / mean_sq + 1e-5).all(), ratio[-2].max()
        assert ratio[-2].max() * 10 < ratio[-3].max()


def test_rollout_on_qwen_matches_the_product_of_hf_attentions(qwen, samples):
    src = get_plugins().load("source", "attention_rollout")()
    ctx = ExplainContext(samples, qwen, merge_requests([src.request()]))
    maps = src.explain(ctx)
    batch = qwen.encode(samples)
    with qwen._attention_implementation("eager"), torch.no_grad():
        attns = qwen.model(**batch, use_cache=False, logits_to_keep=1, output_attentions=True).attentions
    s = batch["input_ids"].shape[1]
    product = torch.eye(s).expand(len(samples), s, s)
    for a in attns:
        m = torch.nan_to_num(a.float().mean(1)) + torch.eye(s)
        product = (m / m.sum(-1, keepdim=True)) @ product
    for i, m in enumerate(maps):
        expected = product[i, -1, ctx.layout(i).token_index]
        assert torch.allclose(m.values.flatten(), expected, rtol=1e-4, atol=1e-7)


def test_all_sources_on_qwen_from_one_forward(qwen, samples, monkeypatch):
    plugins = get_plugins()
    sources = [plugins.load("source", n)() for n in TABLE1]
    calls = []
    real_forward = qwen.forward
    monkeypatch.setattr(qwen, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    ctx = ExplainContext.for_sources(samples, qwen, sources)
    for src in sources:
        for i, m in enumerate(src.explain(ctx)):
            assert tuple(m.values.shape) == ctx.layout(i).grid_hw, src.name
            assert torch.isfinite(m.values).all() and (m.values >= 0).all() and m.values.sum() > 0, src.name
    assert len(calls) == 1  # the gradient pass streams the rollout's attention maps too
