"""Every relevance source end to end on the fake VLM (creg.testing.fake_vlm): a real torch model."""

import pytest
import torch

from creg.testing.fake_vlm import FakeVLMAdapter

from creg.explain.context import ExplainContext, contrastive_target  # noqa: E402
from creg.sources.attention_rollout import AttentionRolloutSource  # noqa: E402
from creg.sources.contrastive_multilayer import CregGtSource, CregSource  # noqa: E402
from creg.sources.gradcam import GradCamSource, gradcam_map  # noqa: E402
from creg.sources.gradient_norm import GradientNormSource  # noqa: E402
from creg.sources.gradxact import GradXActSource  # noqa: E402
from creg.sources.integrated_gradients import IntegratedGradientsSource, layer_integrated_gradients  # noqa: E402
from creg.sources.random_reference import RandomReferenceSource  # noqa: E402
from creg.sources.target_box import TargetBoxSource  # noqa: E402
from creg_synthetic.scenes import scene_sample  # noqa: E402
from creg.plugins.adapter import ForwardRequest  # noqa: E402

torch.set_num_threads(1)

ALL = [CregSource, CregGtSource, GradXActSource, GradientNormSource, GradCamSource,
       IntegratedGradientsSource, AttentionRolloutSource, TargetBoxSource, RandomReferenceSource]


@pytest.fixture(scope="module")
def adapter():
    return FakeVLMAdapter(d=32, dv=16, heads=4, num_layers=5, seed=3)


@pytest.fixture(scope="module")
def samples():
    # two image sizes: different grids, so the batch is left-padded
    return [scene_sample(0, i, (224, 160)) for i in range(3)] + [scene_sample(0, 3, (160, 256))]


def make_ctx(adapter, samples, sources, **kw):
    return ExplainContext.for_sources(samples, adapter, sources, **kw)


def test_all_sources_share_one_gradient_pass_and_return_grid_maps(adapter, samples, monkeypatch):
    """All sources: one pass (the fake VLM streams attention maps without changing the pass, so
    the rollout's maps come with the gradient pass), one backward per target (pred_contrastive,
    gt_contrastive, gt)."""
    sources = [cls() for cls in ALL]
    before = adapter.forward_calls
    ctx = make_ctx(adapter, samples, sources)
    grad_enabled = []
    real_forward = adapter.forward
    monkeypatch.setattr(adapter, "forward", lambda *a, **k: grad_enabled.append(torch.is_grad_enabled()) or real_forward(*a, **k))
    for src in sources:
        maps = src.explain(ctx)
        assert len(maps) == len(samples)
        for i, m in enumerate(maps):
            layout = ctx.layout(i)
            assert tuple(m.values.shape) == layout.grid_hw, src.name
            assert torch.isfinite(m.values).all() and (m.values >= 0).all(), src.name
            assert m.values.sum() > 0, src.name
            assert torch.equal(m.cell_xy, layout.cell_xy)
    assert adapter.forward_calls == before + 1 and grad_enabled == [True]
    assert ctx.backward_passes == 3


def test_eq1_eq2_eq3_creg_matches_direct_autograd_per_sample(adapter, samples):
    """CREG on the batch equals Eq. 1-3 computed by hand on each sample alone (no padding, no cache).

    Layers -3..-5: at -2 the vision tokens' Grad x Act is round-off (see the next test), so batched
    and single-sample runs legitimately differ there.
    """
    layers = (-3, -4, -5)
    src = CregSource(layers=layers)
    maps = src.explain(make_ctx(adapter, samples, [src]))
    for s, m in zip(samples, maps):
        out = adapter.forward([s], ForwardRequest(layers=layers))
        pred = out.class_logits.argmax(1)
        tau = contrastive_target(out.class_logits, pred).sum()  # Eq. 1
        grads = torch.autograd.grad(tau, [out.hidden[l] for l in layers])
        idx = out.vision[0].token_index
        raw = torch.stack([(g[0, idx] * out.hidden[l][0, idx]).sum(-1).abs()  # Eq. 2
                           for g, l in zip(grads, layers)])
        w = torch.softmax(raw.max(dim=1).values, 0)  # Eq. 3 on the raw maxima
        r = (w[:, None] * raw / raw.max(dim=1, keepdim=True).values).sum(0)
        assert torch.allclose(m.values.flatten(), r.detach(), rtol=1e-4, atol=1e-6)


def test_eq2_at_the_last_block_input_cancels_for_vision_tokens(adapter, samples):
    """Eq. 2 at layer -2 (the last block's input) is ~0 at vision tokens in a pre-norm transformer.

    A vision token reaches the answer logit only through the last block's keys/values of
    norm(h_j), and a (Layer/RMS)Norm is scale-invariant up to eps, so g_j . h_j = 0 up to an
    eps / mean(h_j^2) fraction of sum_d |g h| -- float32 round-off. One layer lower the residual
    stream carries h_j forward and the sum does not cancel. (This also pins the layer convention:
    hidden index -2 must be the *input* of the last block.)
    """
    ctx = make_ctx(adapter, samples, [CregSource(contrastive=False)])
    grads = ctx.gradients("pred", [-2, -3])
    for i in range(len(samples)):
        idx = ctx.layout(i).token_index
        ratio = {}
        for l in (-2, -3):
            prod = grads[l][i, idx] * ctx.output.hidden[l][i, idx].detach()
            ratio[l] = float(prod.sum(-1).abs().max() / prod.abs().sum(-1).max())
        assert ratio[-2] < 1e-4 < 1e-2 < ratio[-3]


def test_eq3_weights_sum_to_one_and_favour_the_strongest_layer(adapter, samples):
    src = CregSource()
    ctx = make_ctx(adapter, samples, [src])
    grads = ctx.gradients(src.target, src.layers)
    for i, (r, w) in enumerate(src.vision_relevance(ctx)):
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
        idx = ctx.layout(i).token_index
        maxima = torch.stack([(grads[l][i, idx] * ctx.output.hidden[l][i, idx]).sum(-1).abs().max() for l in src.layers])
        assert int(w.argmax()) == int(maxima.argmax())


def test_table5_no_contrastive_single_layer_is_normalised_gradxact(adapter, samples):
    """Table 5 ablations: creg(layers=-3, contrastive=false) = gradxact(layer=-3, target=pred) / max."""
    creg = CregSource(layers="-3", contrastive="false")
    gxa = GradXActSource(layer=-3, target="pred")
    ctx = make_ctx(adapter, samples, [creg, gxa])
    for a, b in zip(creg.explain(ctx), gxa.explain(ctx)):
        assert torch.allclose(a.values, b.values / b.values.max(), atol=1e-6)


def test_creg_and_creg_gt_coincide_exactly_when_the_prediction_is_correct(adapter, samples):
    """§5.3: when c_hat = gt both modes are identical. By Eq. 1 and the |.| of Eq. 2 they are also
    identical when gt is the runner-up (tau_gt = z_gt - z_pred = -tau_pred); otherwise they differ."""
    creg, creg_gt = CregSource(), CregGtSource()
    ctx = make_ctx(adapter, samples, [creg, creg_gt])
    rank = ctx.output.class_logits.detach().argsort(dim=1, descending=True)
    gt = torch.tensor([s.option for s in samples])
    gt_rank = (rank == gt[:, None]).float().argmax(dim=1).tolist()
    assert 0 in gt_rank and any(r >= 2 for r in gt_rank)
    for r, a, b in zip(gt_rank, creg.explain(ctx), creg_gt.explain(ctx)):
        assert torch.equal(a.values, b.values) == (r <= 1)


def test_gt_baselines_and_gradcam_share_one_backward(adapter, samples, monkeypatch):
    sources = [GradCamSource(), GradientNormSource(), GradXActSource()]
    ctx = make_ctx(adapter, samples, sources)
    ctx.output  # noqa: B018
    calls = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real_grad(*a, **k))
    for src in sources:
        src.explain(ctx)
    assert len(calls) == 1


def test_gradcam_end_to_end_matches_manual(adapter, samples):
    src = GradCamSource()
    maps = src.explain(make_ctx(adapter, samples, [src]))
    out = adapter.forward(samples, ForwardRequest(vision_activations=True))
    z_gt = out.class_logits.gather(1, torch.tensor([[s.option] for s in samples])).sum()
    grads = torch.autograd.grad(z_gt, out.vision_activations)
    for i, m in enumerate(maps):
        a, g = out.vision_activations[i].detach(), grads[i]
        alpha = g.mean(dim=(0, 1))
        cam = torch.relu((a * alpha).sum(-1))  # (H_p, W_p) = 2x the token grid
        expected = cam.view(cam.shape[0] // 2, 2, cam.shape[1] // 2, 2).mean(dim=(1, 3))
        assert torch.allclose(m.values, expected, rtol=1e-4, atol=1e-7)
        assert torch.allclose(m.values, gradcam_map(a, g, out.vision[i].grid_hw))


def test_rollout_matches_product_of_streamed_attentions_and_fans_out(adapter, samples):
    seen = []
    src = AttentionRolloutSource()
    ctx = make_ctx(adapter, samples, [src], on_attention=lambda i, a: seen.append(a.clone()))
    maps = src.explain(ctx)
    assert len(seen) == adapter.num_layers  # the runner's own callback still gets every layer
    s = seen[0].shape[-1]
    product = torch.eye(s).expand(len(samples), s, s)
    for a in seen:
        m = a.mean(1) + torch.eye(s)
        product = (m / m.sum(-1, keepdim=True)) @ product
    for i, m in enumerate(maps):
        row = product[i, int(ctx.output.answer_index[i])]
        assert torch.allclose(m.values.flatten(), row[ctx.layout(i).token_index], atol=1e-6)


def test_ig_completeness_and_chunking(adapter, samples):
    """Sundararajan et al.: sum of IG attributions = z(h) - z(0); chunking changes nothing.

    Completeness is checked at 200 Gauss-Legendre steps: on the straight path alpha * h the
    norm layers switch from eps-dominated to scale-invariant around alpha ~ sqrt(eps / mean h^2)
    (~1e-3), a kink that 50 nodes under-resolve (a completeness gap of up to ~80 % of
    z(h) - z(0) on this model); 200 nodes close it to ~1e-6.
    """
    out = adapter.forward(samples, ForwardRequest(layers=(-2,)))
    gt = torch.tensor([s.option for s in samples])
    attr = layer_integrated_gradients(adapter, out, -2, gt, steps=200, chunk=100)
    with torch.no_grad():
        h = out.hidden[-2].detach()
        z_h = adapter.logits_from_layer(out, -2, h).gather(1, gt[:, None])[:, 0]
        z_0 = adapter.logits_from_layer(out, -2, torch.zeros_like(h)).gather(1, gt[:, None])[:, 0]
    assert torch.allclose(attr.sum(dim=(1, 2)), z_h - z_0, atol=1e-4)
    one_chunk = layer_integrated_gradients(adapter, out, -2, gt, steps=50, chunk=50)
    chunked = layer_integrated_gradients(adapter, out, -2, gt, steps=50, chunk=7)
    assert torch.allclose(one_chunk, chunked, rtol=1e-4, atol=1e-7)
    assert torch.allclose(z_h, out.class_logits.gather(1, gt[:, None])[:, 0], atol=1e-5)


def test_gradxact_and_ig_match_captum_on_fake_vlm(adapter, samples):
    """Captum on the same model: LayerGradientXActivation on the last block's input through the
    whole decoder; LayerIntegratedGradients (50 Gauss-Legendre steps, zero baseline *at the
    layer*: Captum derives the layer baseline by running its forward function on the input
    baseline, so its forward function starts at the layer). Elementwise g * h and IG terms are
    compared, tolerances relative to the largest term (float32, same operations)."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    gt = torch.tensor([s.option for s in samples])
    last_block = adapter.model.blocks[-1]
    src = GradXActSource()
    ctx = make_ctx(adapter, samples, [src])
    out = ctx.output
    ours = ctx.gradients("gt", [-2])[-2] * out.hidden[-2].detach()

    embeddings = adapter.forward(samples, ForwardRequest(layers=(0,))).hidden[0].detach()
    ref = LayerGradientXActivation(lambda e: adapter.logits_from_embeddings(out, e), last_block).attribute(
        embeddings, target=gt, attribute_to_layer_input=True)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.detach().abs().max()))

    h = out.hidden[-2].detach()
    lig = LayerIntegratedGradients(lambda x: adapter.logits_from_layer(out, -2, x), last_block)
    ig_ref = lig.attribute(h, baselines=torch.zeros_like(h), target=gt, n_steps=50, method="gausslegendre",
                           attribute_to_layer_input=True)
    ig_ours = layer_integrated_gradients(adapter, out, -2, gt, steps=50)
    assert torch.allclose(ig_ours, ig_ref, rtol=1e-4, atol=1e-6 * float(ig_ref.abs().max()))


def test_random_ref_moves_the_centre_not_the_relevance(adapter, samples):
    creg, rr = CregSource(), RandomReferenceSource()
    ctx = make_ctx(adapter, samples, [creg, rr], seed=0)
    a, b = creg.explain(ctx), rr.explain(ctx)
    again = rr.explain(make_ctx(adapter, samples, [rr], seed=0))
    other = rr.explain(make_ctx(adapter, samples, [rr], seed=1))
    for s, ma, mb, mc, md in zip(samples, a, b, again, other):
        assert torch.equal(ma.values, mb.values) and ma.ref_box is None
        assert mb.ref_box != s.ref_box
        assert mb.ref_box.width == pytest.approx(s.ref_box.width) and mb.ref_box.height == pytest.approx(s.ref_box.height)
        assert mb.ref_box == mc.ref_box and mb.ref_box != md.ref_box
        w, h = s.image_size
        cx, cy = mb.ref_box.center
        assert 0 <= cx <= w and 0 <= cy <= h


def test_target_box_without_a_model_uses_the_default_grid(samples):
    ctx = ExplainContext(samples, None)
    for s, m in zip(samples, TargetBoxSource().explain(ctx)):
        assert m.values.sum() >= 1
        xy = m.cell_xy[m.values > 0]
        inside = ((xy[:, 0] >= s.tgt_box.x0) & (xy[:, 0] <= s.tgt_box.x1) &
                  (xy[:, 1] >= s.tgt_box.y0) & (xy[:, 1] <= s.tgt_box.y1))
        if not inside.all():  # B holds no cell centre (smaller than a cell): the cell nearest its centre
            cx, cy = s.tgt_box.center
            d = ((m.cell_xy[..., 0] - cx) ** 2 + (m.cell_xy[..., 1] - cy) ** 2).flatten()
            assert m.values.sum() == 1 and m.values.flatten()[d.argmin()] == 1


def test_bad_options_and_unrequested_layers_fail_clearly(adapter, samples):
    with pytest.raises(ValueError, match="bogus"):
        CregSource(bogus=1)
    with pytest.raises(ValueError):
        GradXActSource(layer="-2,-3")
    with pytest.raises(ValueError):
        IntegratedGradientsSource(method="simpson")
    ctx = make_ctx(adapter, samples, [GradXActSource()])
    with pytest.raises(KeyError):
        CregSource().explain(ctx)
