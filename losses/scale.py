"""The scale ``s`` of NormFace and ProxyDR: fixed, or ``--dynamic``.

The dynamic scale puts the steepest point of the target probability at the
median target distance.  With ``B`` = the batch mean over samples of the sum
over non-target classes of ``exp(z_c)`` (``d^-s`` for DR-euc, ``theta^-s`` for
DR-arccos, ``e^(s cos)`` for NormFace-euc, ``e^(-s theta^2)`` for
NormFace-arccos; weighted by the class prior with ``--clspri``, which the
scores already carry as ``log prior``) and ``theta_m = min(pi/4, median target
angle)``, ``d_m = sqrt(2 - 2 cos theta_m)``, the residual is

* DR-euc:          ``R = B (s+1) d_m^s + p (1 - s)``
* DR-arccos:       ``R = B (s+1) theta_m^s + p (1 - s)``
* NormFace-euc:    ``R = p e^(s cos theta_m)(cos theta_m + s sin^2 theta_m) + B (cos theta_m - s sin^2 theta_m)``
* NormFace-arccos: ``R = B e^(s theta_m^2)(2 s theta_m^2 - 1) - p (2 s theta_m^2 + 1)``

where ``p`` is the batch mean prior of the targets (1 without ``--clspri``).
The initial scale is the root of the same residual for a target at angle pi/4
and all ``C - 1`` other representatives orthogonal (``B = (C-1) exp(z_orth)``).
After every optimiser step, one Adam step on ``log s`` minimises ``R(s)^2``
with ``B`` and ``theta_m`` detached; the main loss only sees a detached ``s``.
"""
import math

import numpy as np
import torch
from scipy.optimize import brentq

FIXED_SCALE = 10.0


def scale_residual(s, B, theta_m, method, distance, p=1.0):
    """``R(s)`` above; works on floats, numpy arrays and torch tensors alike."""
    lib = torch if isinstance(s, torch.Tensor) else np
    theta_m = lib.as_tensor(theta_m, dtype=s.dtype) if lib is torch else np.asarray(theta_m, dtype=float)
    cos_m = lib.cos(theta_m)
    if method == "DR":
        d_m = lib.sqrt(2.0 - 2.0 * cos_m) if distance == "euc" else theta_m
        return B * (s + 1.0) * d_m**s + p * (1.0 - s)
    if method == "normface":
        if distance == "euc":
            sin2 = lib.sin(theta_m) ** 2
            return p * lib.exp(s * cos_m) * (cos_m + s * sin2) + B * (cos_m - s * sin2)
        t2 = theta_m**2
        return B * lib.exp(s * t2) * (2.0 * s * t2 - 1.0) - p * (2.0 * s * t2 + 1.0)
    raise ValueError(f"the scale applies to normface and DR, not {method!r}")


def _orthogonal_term(s, method, distance):
    """``exp(z)`` of a representative orthogonal to the embedding (cos = 0)."""
    if method == "DR":
        d = math.sqrt(2.0) if distance == "euc" else math.pi / 2
        return d ** (-s)
    if distance == "euc":
        return 1.0  # e^(s * 0)
    return np.exp(-s * (math.pi / 2) ** 2)


def initial_scale(method, distance, n_classes):
    """The initial dynamic scale (see :func:`solve_initial_scale`)."""
    return solve_initial_scale(method, distance, n_classes)[0]


def solve_initial_scale(method, distance, n_classes):
    """Solve ``R(s) = 0`` for a target at pi/4 and C - 1 orthogonal others.

    Some of the equations have two positive roots (NormFace); the larger one is
    the steepest point the method is after (and the value the paper reports:
    7.90, 7.04, 5.79, 2.02 for DR-euc, DR-arccos, NormFace-euc, NormFace-arccos
    at C = 100).  We scan a grid for sign changes and refine the last with Brent.

    With few classes the NormFace equations have no positive root at all (for
    arccos below about C = 50, for euc below about C = 15): then the scale
    with the smallest ``|R|`` on the grid is returned, which is where the
    dynamic update's ``R^2`` minimisation would lead as well.
    Returns ``(s, is_root)``.
    """
    if n_classes < 2:
        raise ValueError("the dynamic scale needs at least two classes")

    def r(s):
        B = (n_classes - 1) * _orthogonal_term(s, method, distance)
        return float(scale_residual(np.float64(s), B, math.pi / 4, method, distance))

    grid = np.geomspace(1e-3, 200.0, 4000)
    values = np.array([r(s) for s in grid])
    change = np.nonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)[0]
    if len(change) == 0:
        return float(grid[np.argmin(np.abs(values))]), False
    i = change[-1]
    return float(brentq(r, grid[i], grid[i + 1], xtol=1e-12)), True


def dynamic_scale_objective(log_s, z_nontarget_free, cos_target, prior_target, method, distance):
    """``R(s)^2`` for one batch, differentiable in ``log_s`` only.

    ``z_nontarget_free``: the batch scores (computed with the current, detached
    ``s``, prior included) with the target entries set to ``-inf``;
    ``cos_target``: cosine of each sample to its target representative;
    ``prior_target``: the target's class prior per sample, or None.
    """
    with torch.no_grad():
        B = torch.exp(z_nontarget_free.double()).sum(dim=1).mean()
        theta = torch.arccos(torch.clamp(cos_target.double(), -1.0, 1.0))
        theta_m = torch.clamp(torch.quantile(theta, 0.5), min=1e-6, max=math.pi / 4)
        p = prior_target.double().mean() if prior_target is not None else 1.0
    s = torch.exp(log_s.double())
    R = scale_residual(s, B, theta_m, method, distance, p)
    return R**2
