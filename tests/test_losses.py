"""Scores, losses, scale, EMA and MDS against hand computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses.corr import corr_loss
from losses.distances import chord_from_cos, cosine
from losses.ema import ema_update
from losses.head import ClassHead
from losses.scale import dynamic_scale_objective, initial_scale, scale_residual
from losses.scores import LOG_EPS, scores
from utils.angle import ANGLE_SHRINK, angle_from_cos

# One embedding at 0, 60 and 90 degrees from three unit representatives.
F1 = torch.tensor([[2.0, 0.0]])
W3 = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 3.0]])  # last row not unit: scores normalise


def test_cosine_normalises_both_sides():
    assert torch.allclose(cosine(F1, W3), torch.tensor([[1.0, 0.5, 0.0]]), atol=1e-6)


def test_normface_euc_is_s_cos():
    z = scores("normface", F1, W3, s=10.0, distance="euc")
    assert torch.allclose(z, torch.tensor([[10.0, 5.0, 0.0]]), atol=1e-5)


def test_normface_arccos_is_minus_s_theta_squared():
    z = scores("normface", F1, W3, s=10.0, distance="arccos")
    # theta = 0 (the paper's angle gives acos(0.999999) = 1.4e-3 there), pi/3, pi/2
    expected = torch.tensor([[0.0, -10 * (math.pi / 3) ** 2, -10 * (math.pi / 2) ** 2]])
    assert torch.allclose(z, expected, atol=1e-4)


def test_proxydr_euc_is_minus_s_log_chord():
    z = scores("DR", F1, W3, s=10.0, distance="euc")
    # chords: 0 (the squared chord clipped to 1e-12: 1e-6), sqrt(2 - 1) = 1, sqrt 2
    expected = torch.tensor([[-10 * math.log(1e-6 + LOG_EPS), -10 * math.log(1 + LOG_EPS), -10 * math.log(math.sqrt(2) + LOG_EPS)]])
    assert expected[0, 0].item() == pytest.approx(131.22, abs=0.01)  # the target at distance 0 dominates but stays finite
    assert torch.allclose(z, expected, atol=1e-4)


def test_proxydr_arccos_is_minus_s_log_angle():
    z = scores("DR", F1, W3[1:], s=4.0, distance="arccos")
    expected = torch.tensor([[-4 * math.log(math.pi / 3 + LOG_EPS), -4 * math.log(math.pi / 2 + LOG_EPS)]])
    assert torch.allclose(z, expected, atol=1e-5)


def test_proxydr_probability_is_a_softmax_over_distance_ratios():
    torch.manual_seed(0)
    f, W = torch.randn(5, 8), torch.randn(4, 8)
    s = 7.0
    p = torch.softmax(scores("DR", f, W, s=s, distance="euc"), dim=1)
    d = torch.cdist(F.normalize(f), F.normalize(W))
    ratio = d.pow(-s) / d.pow(-s).sum(1, keepdim=True)
    assert torch.allclose(p, ratio, atol=1e-4)


def test_softmax_scores_are_linear_with_bias_and_prior():
    f = torch.tensor([[1.0, 2.0]])
    W = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    b = torch.tensor([0.5, 1.0])
    prior = torch.tensor([0.25, 0.75])
    z = scores("softmax", f, W, b=b, log_prior=torch.log(prior))
    assert torch.allclose(z, torch.tensor([[3.5 + math.log(0.25), -1.0 + math.log(0.75)]]))


def test_prior_shifts_every_method_by_log_prior():
    prior = torch.tensor([0.2, 0.3, 0.5])
    plain = scores("normface", F1, W3, s=10.0, distance="euc")
    with_prior = scores("normface", F1, W3, s=10.0, distance="euc", log_prior=torch.log(prior))
    assert torch.allclose(with_prior - plain, torch.log(prior)[None])


def test_no_nan_gradients_at_distance_zero_and_antipodes():
    f = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for method in ("normface", "DR"):
        for distance in ("euc", "arccos"):
            z = scores(method, f, W, s=10.0, distance=distance)
            (g,) = torch.autograd.grad(z.sum(), f)
            assert torch.isfinite(z).all() and torch.isfinite(g).all(), (method, distance)


def test_distances_from_cos():
    cos = torch.tensor([1.0, 0.0, -1.0, 0.5])
    assert torch.allclose(chord_from_cos(cos), torch.tensor([1e-6, math.sqrt(2), 2.0, 1.0]), atol=1e-6)
    # the paper's angle arccos(0.999999 clip(cos)): at cos = 1, acos(1 - u) = sqrt(2u) (1 + u / 12) with u = 1e-6;
    # pi/2 exactly at 0, pi minus that at -1, pi/3 + 0.5e-6 / sin(pi/3) at 0.5 (first order)
    end = math.sqrt(2e-6) * (1 + 1e-6 / 12)
    expected = torch.tensor([end, math.pi / 2, math.pi - end, math.pi / 3 + 0.5e-6 / math.sin(math.pi / 3)], dtype=torch.float64)
    assert torch.allclose(angle_from_cos(cos.double()), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(angle_from_cos(cos.double().numpy()), expected.numpy(), rtol=0, atol=1e-9)
    # beyond [-1, 1] (float rounding) the cosine is clipped first
    assert angle_from_cos(torch.tensor([1.0 + 1e-7], dtype=torch.float64)).item() == pytest.approx(end, abs=1e-9)


def test_proxydr_arccos_near_a_target_by_hand():
    # an embedding 0.05 rad from its target: the paper's angle acos(0.999999 cos 0.05) is, to first order
    # in 1e-6, 0.05 + 1e-6 cot(0.05) = 0.0500199833 (the second-order term is -4e-9)
    theta0, s = 0.05, 10.0
    cos = torch.tensor([[math.cos(theta0)]], dtype=torch.float64, requires_grad=True)
    theta = math.acos(ANGLE_SHRINK * math.cos(theta0))
    assert theta == pytest.approx(theta0 + 1e-6 / math.tan(theta0), abs=1e-8)
    z = scores("DR", None, None, s=s, distance="arccos", cos=cos)
    assert z.item() == pytest.approx(-s * math.log(theta + LOG_EPS), rel=1e-12)
    # arccos(cos) itself (the former clip to 1 - 1e-6 changes nothing at 0.05 rad) gives a score 4.0e-3 higher
    assert abs(z.item() + s * math.log(theta0 + LOG_EPS)) > 3e-3
    (g,) = torch.autograd.grad(z.sum(), cos)
    # dz/dcos = -s / (theta + eps) * dtheta/dcos,  dtheta/dcos = -0.999999 / sqrt(1 - (0.999999 cos)^2)
    dtheta = -ANGLE_SHRINK / math.sqrt(1 - (ANGLE_SHRINK * math.cos(theta0)) ** 2)
    assert g.item() == pytest.approx(-s / (theta + LOG_EPS) * dtheta, rel=1e-9)


def test_corr_loss_is_batch_sum_of_one_minus_cos():
    cos = torch.tensor([[0.9, 0.1], [0.2, 0.6], [1.0, -1.0]])
    labels = torch.tensor([0, 1, 1])
    assert corr_loss(cos, labels).item() == pytest.approx((1 - 0.9) + (1 - 0.6) + (1 + 1.0))


# ------------------------------------------------------------------ scale
@pytest.mark.parametrize(
    "method,distance,C,expected",
    [("DR", "euc", 100, 7.8989), ("DR", "arccos", 100, 7.0419), ("normface", "euc", 100, 5.7939),
     ("normface", "arccos", 100, 2.0248), ("DR", "euc", 109, 8.0335)],
)
def test_initial_scale_matches_the_paper(method, distance, C, expected):
    assert initial_scale(method, distance, C) == pytest.approx(expected, abs=1e-4)


def test_initial_scale_solves_the_spec_equations():
    C = 37
    s = initial_scale("DR", "euc", C)
    assert (C - 1) * 2 ** (-s / 2) * (s + 1) * (2 - math.sqrt(2)) ** (s / 2) - s + 1 == pytest.approx(0, abs=1e-9)
    s = initial_scale("normface", "arccos", 100)
    a, C = (math.pi / 4) ** 2, 100
    value = (C - 1) * math.exp(-s * (math.pi / 2) ** 2) * math.exp(2 * s * a) * (2 * s * a - 1) - math.exp(s * a) * (2 * s * a + 1)
    assert value == pytest.approx(0, abs=1e-9)
    s = initial_scale("normface", "euc", C)
    c = math.cos(math.pi / 4)
    value = c * (C - 1 + math.exp(s * c)) + s * 0.5 * (math.exp(s * c) - C + 1)
    assert value == pytest.approx(0, abs=1e-7)


def test_initial_scale_without_a_root_minimises_the_residual():
    # NormFace-arccos with C = 10: R < 0 for every s > 0 (no steepest point at pi/4)
    s = initial_scale("normface", "arccos", 10)
    def r(x):
        B = 9 * math.exp(-x * (math.pi / 2) ** 2)
        return abs(float(scale_residual(np.float64(x), B, math.pi / 4, "normface", "arccos")))
    assert r(s) <= min(r(x) for x in np.linspace(0.01, 20, 500)) + 1e-6


def test_scale_residual_torch_and_numpy_agree():
    for method in ("DR", "normface"):
        for distance in ("euc", "arccos"):
            r_np = scale_residual(np.float64(6.0), 3.0, 0.7, method, distance, p=0.4)
            r_t = scale_residual(torch.tensor(6.0, dtype=torch.float64), 3.0, torch.tensor(0.7, dtype=torch.float64), method, distance, p=0.4)
            assert float(r_t) == pytest.approx(float(r_np))


def test_dynamic_objective_by_hand():
    # DR-euc, two samples, non-target terms d^-s with s = 2: B = mean(0.25 + 1, 0.5) = 0.875
    log_s = torch.tensor(math.log(2.0), requires_grad=True)
    z_free = torch.log(torch.tensor([[0.0, 0.25, 1.0], [0.5, 0.0, 0.0]]))  # targets: log 0 = -inf
    cos_t = torch.tensor([math.cos(math.pi / 4), 0.0])  # angles pi/4 and pi/2 -> lower middle pi/4 = theta_m
    obj = dynamic_scale_objective(log_s, z_free, cos_t, None, "DR", "euc")
    d_m = math.sqrt(2 - math.sqrt(2))
    R = 0.875 * 3 * d_m**2 + (1 - 2)
    assert obj.item() == pytest.approx(R**2, rel=1e-6)
    obj.backward()
    assert log_s.grad is not None and math.isfinite(log_s.grad.item())


def test_dynamic_scale_moves_only_through_its_own_objective():
    torch.manual_seed(0)
    head = ClassHead(5, 8, method="DR", dynamic=True)
    scale_opt = torch.optim.Adam([head.log_s], lr=0.1)
    opt = torch.optim.Adam(head.main_parameters(), lr=0.1)
    assert all(p is not head.log_s for p in head.main_parameters())
    f = torch.randn(6, 8, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    s0 = head.log_s.item()
    loss, z, cos = head.loss(f, y)
    opt.zero_grad()
    loss.backward()
    assert head.log_s.grad is None  # the main loss sees a detached scale
    opt.step()
    assert head.log_s.item() == s0
    head.after_step(f.detach(), z, cos, y, scale_opt)
    assert head.log_s.item() != s0


# ------------------------------------------------------------------ EMA
def test_ema_first_sight_then_moving_average():
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    seen = torch.tensor([False, True, False])
    emb = torch.tensor([[0.0, 2.0], [0.0, 5.0], [3.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    ema_update(W, seen, emb, labels, alpha=0.1)
    assert torch.allclose(W[0], torch.tensor([0.0, 1.0]))  # first sight: normalised mean
    m = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    expected = F.normalize(0.1 * m + 0.9 * torch.tensor([0.0, 1.0]), dim=0)
    assert torch.allclose(W[1], expected)
    assert torch.equal(W[2], torch.tensor([1.0, 0.0]))  # absent class untouched
    assert seen.tolist() == [True, True, False]


def test_ema_head_gets_no_gradient():
    head = ClassHead(3, 4, method="DR", ema=True)
    assert "W" not in dict(head.named_parameters())
    f = torch.randn(2, 4, requires_grad=True)
    loss, _, _ = head.loss(f, torch.tensor([0, 1]))
    loss.backward()
    assert head.W.grad is None
