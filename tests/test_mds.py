"""``--mds_W``: the paper's MDS distances and stress by hand, and the fit."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses.head import ClassHead
from losses.mds import fit_mds, mds_distances, stress

# Rows of norm 1, 2, 3: the paper normalises v / (|v| + 1e-6).
V = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], dtype=torch.float64)
T = torch.tensor([[0.0, 1.2, 1.9], [1.2, 0.0, 1.3], [1.9, 1.3, 0.0]], dtype=torch.float64)


def _hand_cosines():
    a, b, c = 1 / (1 + 1e-6), 2 / (2 + 1e-6), 3 / (3 + 1e-6)  # the normalised rows' lengths
    return [[a * a, 0.0, -a * c], [0.0, b * b, 0.0], [-a * c, 0.0, c * c]]


def _hand_stress(D, diagonal=True):
    num = sum((T[i, j].item() - D[i][j]) ** 2 for i in range(3) for j in range(3) if diagonal or i != j)
    return math.sqrt(num) / math.sqrt(sum(T[i, j].item() ** 2 for i in range(3) for j in range(3)))


def test_mds_chord_and_stress_by_hand():
    D = [[math.sqrt(2 - 2 * c + 1e-12) for c in row] for row in _hand_cosines()]
    assert D[0][0] == pytest.approx(2e-3, rel=1e-5) and D[0][2] == pytest.approx(2.0, abs=1e-6)
    np.testing.assert_allclose(mds_distances(V, "euc").numpy(), D, rtol=1e-12, atol=1e-15)
    got = stress(T, V, "euc").item()
    assert got == pytest.approx(_hand_stress(D), rel=1e-12)
    # the diagonal counts: leaving it out (the former stress) gives another number
    assert abs(got - _hand_stress(D, diagonal=False)) > 1e-7


def test_mds_angle_and_stress_by_hand():
    D = [[math.acos(0.999999 * c) for c in row] for row in _hand_cosines()]
    assert D[0][1] == math.pi / 2 and D[0][0] == pytest.approx(math.sqrt(6e-6), rel=1e-5)
    np.testing.assert_allclose(mds_distances(V, "arccos").numpy(), D, rtol=1e-12, atol=1e-15)
    assert stress(T, V, "arccos").item() == pytest.approx(_hand_stress(D), rel=1e-12)


def test_mds_stress_gradient_is_finite_with_the_diagonal():
    W = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    for distance in ("euc", "arccos"):
        (g,) = torch.autograd.grad(stress(torch.ones(5, 5), W, distance), W)
        assert torch.isfinite(g).all()


def test_mds_stress_falls_and_matches_target_geometry():
    # two pairs of siblings: d_T = 2 within, 4 across
    dT = np.array([[0, 2, 4, 4], [2, 0, 4, 4], [4, 4, 0, 2], [4, 4, 2, 0]], dtype=float)
    target = np.sqrt(2) * dT / (1 + dT)
    W, s0, s1 = fit_mds(target, dim=16, distance="euc", steps=1000, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert s1 < s0 / 5
    assert torch.allclose(W.norm(dim=1), torch.ones(4), atol=1e-5)
    assert stress(torch.as_tensor(target, dtype=torch.float32), W, "euc").item() == pytest.approx(s1, abs=1e-6)
    D = mds_distances(W, "euc")
    assert D[0, 1] < D[0, 2] and D[2, 3] < D[1, 3]


def test_mds_head_is_frozen():
    W = F.normalize(torch.randn(3, 4))
    head = ClassHead(3, 4, method="DR", fixed_W=W, corr=True)
    assert head.main_parameters() == []
    assert torch.allclose(head.representatives(), W)
    loss, _, cos = head.loss(torch.randn(2, 4), torch.tensor([0, 2]))
    assert loss.item() == pytest.approx((2 - cos[0, 0] - cos[1, 2]).item(), rel=1e-6)
