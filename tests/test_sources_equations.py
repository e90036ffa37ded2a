"""The math of the relevance sources on hand-made tensors (paper Eq. 1-3, §5.1 baselines)."""

import math

import numpy as np
import pytest
import torch

from creg.explain.context import contrastive_target, default_layout
from creg.sources.attention_rollout import AttentionRollout
from creg.core.sample import Box
from creg.sources.contrastive_multilayer import aggregate_layers, layer_weights, normalise_per_layer
from creg.sources.gradcam import gradcam_map
from creg.sources.gradient_norm import gradient_norm
from creg.sources.gradxact import grad_times_act
from creg.sources.integrated_gradients import integration_rule
from creg.plugins.options import parse_layers
from creg.sources.target_box import box_mask

torch.set_num_threads(1)


# -- Eq. 1: contrastive target -----------------------------------------------------------------

def test_eq1_target_is_prediction_subtracts_second_highest():
    logits = torch.tensor([[1.0, 4.0, 2.5, -1.0]])
    # target = the prediction (class 1): z_neg = z_2nd = 2.5
    assert contrastive_target(logits, torch.tensor([1])).item() == pytest.approx(4.0 - 2.5)


def test_eq1_wrong_gt_subtracts_prediction():
    logits = torch.tensor([[1.0, 4.0, 2.5, -1.0]])
    # gt = class 3 != prediction 1: z_neg = z_pred = 4.0 (negative tau)
    assert contrastive_target(logits, torch.tensor([3])).item() == pytest.approx(-1.0 - 4.0)
    # gt = class 2 (the second-highest) != prediction: still z_pred
    assert contrastive_target(logits, torch.tensor([2])).item() == pytest.approx(2.5 - 4.0)


def test_eq1_batch_and_ties():
    logits = torch.tensor([[0.0, 0.0, 3.0, 1.0], [2.0, 2.0, 0.0, 0.0]])
    tau = contrastive_target(logits, torch.tensor([2, 0]))
    assert tau.tolist() == pytest.approx([3.0 - 1.0, 0.0])  # a tie with the runner-up gives 0


# -- Eq. 2: Grad x Act ---------------------------------------------------------------------------

def test_eq2_grad_times_act_is_abs_of_sum_over_width():
    g = torch.tensor([[[1.0, -2.0], [0.5, 0.5]]])
    h = torch.tensor([[[3.0, 1.0], [-4.0, 2.0]]])
    # token 0: 1*3 - 2*1 = 1; token 1: -2 + 1 = -1 -> |.| = 1
    assert grad_times_act(g, h).tolist() == [[1.0, 1.0]]


# -- Eq. 3: layer weights and aggregation ----------------------------------------------------

def test_eq3_softmax_on_raw_maxima_and_max_normalisation():
    raw = torch.tensor([[0.0, 1.0, 2.0],    # layer a: max 2
                        [0.5, 0.25, 0.0]])  # layer b: max 0.5
    r, w = aggregate_layers(raw, "max")
    wa = math.exp(2.0) / (math.exp(2.0) + math.exp(0.5))
    assert w.tolist() == pytest.approx([wa, 1 - wa])
    expected = wa * np.array([0.0, 0.5, 1.0]) + (1 - wa) * np.array([1.0, 0.5, 0.0])
    assert r.tolist() == pytest.approx(expected.tolist())


def test_eq3_weights_are_not_uniform_unlike_softmax_of_normalised_maxima():
    raw = torch.tensor([[0.0, 3.0], [0.0, 0.1]])
    assert layer_weights(raw)[0] > 0.9
    # the normalised maxima are all 1, so softmax on them would be uniform: the reason we use raw maxima
    assert layer_weights(normalise_per_layer(raw)).tolist() == pytest.approx([0.5, 0.5])


def test_eq3_minmax_normalisation_and_all_zero_layer():
    raw = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert normalise_per_layer(raw, "minmax").tolist() == [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]
    assert torch.allclose(normalise_per_layer(raw, "max"), torch.tensor([[1 / 3, 2 / 3, 1.0], [0.0, 0.0, 0.0]]))
    r, w = aggregate_layers(raw)
    assert torch.isfinite(r).all() and (r >= 0).all()


def test_eq3_single_layer_is_the_normalised_layer():
    raw = torch.tensor([[2.0, 4.0, 1.0]])
    r, w = aggregate_layers(raw)
    assert w.tolist() == [1.0]
    assert r.tolist() == pytest.approx([0.5, 1.0, 0.25])


# -- baselines -------------------------------------------------------------------------------

def test_gradient_norm_is_l2_over_width():
    g = torch.tensor([[[3.0, 4.0], [0.0, -2.0]]])
    assert gradient_norm(g).tolist() == [[5.0, 2.0]]


def test_gradcam_known_activation_and_gradient():
    # 2 channels on a 2x2 patch grid; channel weights = mean gradients = (1, -0.5)
    acts = torch.tensor([[[1.0, 2.0], [3.0, 0.0]],
                         [[0.0, 4.0], [2.0, 2.0]]])
    grads = torch.tensor([[[1.0, 0.0], [1.0, -1.0]],
                          [[2.0, -1.0], [0.0, 0.0]]])
    cam = gradcam_map(acts, grads, (2, 2))
    # sum_c alpha_c A_c = 1*A_0 - 0.5*A_1 = [[0, 3], [-2, 1]] -> ReLU
    assert cam.tolist() == [[0.0, 3.0], [0.0, 1.0]]


def test_gradcam_bilinear_downsampling_by_two_is_block_mean():
    acts = torch.arange(16, dtype=torch.float32).view(4, 4, 1)
    grads = torch.ones(4, 4, 1)
    cam = gradcam_map(acts, grads, (2, 2))
    blocks = acts[..., 0].view(2, 2, 2, 2).permute(0, 2, 1, 3).mean(dim=(2, 3))
    assert torch.allclose(cam, blocks)


def test_rollout_two_layers_equals_direct_matrix_product():
    """Abnar & Zuidema: R = norm(mean_h A2 + I) @ norm(mean_h A1 + I)."""
    torch.manual_seed(0)
    b, heads, s = 2, 3, 5
    causal = torch.ones(s, s).tril().bool()
    a1, a2 = (torch.softmax(torch.randn(b, heads, s, s).masked_fill(~causal, -1e9), -1) for _ in range(2))
    roll = AttentionRollout()
    roll.update(0, a1)
    roll.update(1, a2)
    eye = torch.eye(s)
    m1, m2 = a1.mean(1) + eye, a2.mean(1) + eye
    m1, m2 = m1 / m1.sum(-1, keepdim=True), m2 / m2.sum(-1, keepdim=True)
    assert torch.allclose(roll.product(), m2 @ m1, atol=1e-6)
    # by hand for one entry: softmax rows sum to 1, so the normalisation is (A + I) / 2
    assert torch.allclose(m1, (a1.mean(1) + eye) / 2, atol=1e-6)
    assert torch.allclose(roll.product().sum(-1), torch.ones(b, s), atol=1e-5)  # rows stay stochastic
    # the answer row propagated from the top (vector-matrix products) is the product's row
    index = torch.tensor([s - 1, 2])
    assert torch.allclose(roll.rows(index), (m2 @ m1)[torch.arange(b), index], atol=1e-6)


def test_rollout_row_by_hand():
    """Two layers, two tokens, one head: A1 = [[1, 0], [.5, .5]], A2 = [[1, 0], [0, 1]].
    Â1 = [[1, 0], [.25, .75]], Â2 = [[1, 0], [0, 1]]; row 1 of Â2 Â1 = [.25, .75]."""
    roll = AttentionRollout()
    roll.update(0, torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]]))
    roll.update(1, torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]))
    assert roll.rows(torch.tensor([1])).tolist() == [[0.25, 0.75]]


def test_rollout_rejects_layers_out_of_order():
    roll = AttentionRollout()
    with pytest.raises(RuntimeError):
        roll.update(1, torch.ones(1, 1, 2, 2) / 2)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"])
def test_integration_rule_matches_captum(method):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    a, w = integration_rule(50, method)
    assert np.allclose(a.numpy(), np.asarray(alphas(50)), atol=1e-7)
    assert np.allclose(w.numpy(), np.asarray(step_sizes(50)), atol=1e-12)


def test_gauss_legendre_integrates_polynomials_exactly():
    a, w = integration_rule(50)
    assert float((w * a**7).sum()) == pytest.approx(1 / 8, rel=1e-12)


# -- controls --------------------------------------------------------------------------------

def test_target_box_mask_on_default_grid():
    layout = default_layout((112, 56), cell_px=28)  # 2 x 4 cells centred at x = 14, 42, 70, 98; y = 14, 42
    mask = box_mask(layout.cell_xy, Box(x0=30, y0=0, x1=75, y1=20))
    assert mask.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]


def test_target_box_smaller_than_a_cell_marks_the_nearest_cell():
    layout = default_layout((112, 56), cell_px=28)
    mask = box_mask(layout.cell_xy, Box(x0=90, y0=40, x1=92, y1=44))
    assert mask.sum() == 1 and mask[1, 3] == 1


# -- options ---------------------------------------------------------------------------------

def test_option_parsing():
    assert parse_layers("-2,-3,-4,-5") == (-2, -3, -4, -5)
    assert parse_layers([-2]) == (-2,)
    assert parse_layers(-2) == (-2,)
    assert parse_layers("[-2, -3]") == (-2, -3)
    with pytest.raises(ValueError):
        parse_layers("a,b")
