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

where ``p`` is the batch mean prior of the targets (1 without ``--clspri``)
and the median is the lower middle value of the batch (``torch.median``).
The initial scale is the root of the same residual for a target at angle pi/4
and all ``C - 1`` other representatives orthogonal (``B = (C-1) exp(z_orth)``).
After every optimiser step, one Adam step on ``log s`` minimises ``R(s)^2``
with ``B`` and ``theta_m`` detached; the main loss only sees a detached ``s``.

``--scale_update paper_code``, the training scripts' default
(:data:`utils.options.SCALE_UPDATE_DEFAULT`: it produced the paper's numbers),
reproduces the paper's code, which differs from the equations above in two
places (docs/differences.md); ``--scale_update equations`` follows the
equations.  The functions below compute the equations unless they are passed
``scale_update="paper_code"``.

* DR-euc: ``B`` sums ``d^(-2 sqrt(s))`` (the squared chord raised to
  ``sqrt(s)``) instead of ``d^-s``; the residual keeps ``d_m^s``.  In scores,
  that is the DR-euc score at the scale ``2 sqrt(s)`` (:func:`b_scale`).
* NormFace-arccos: the residual has the squared chord ``2 - 2 cos theta_m``
  where ``theta_m^2`` belongs.

The initial scale is the equations' root in both modes.
"""
import math

import numpy as np
import torch
from scipy.optimize import brentq

from utils.angle import angle_from_cos

FIXED_SCALE = 10.0
SCALE_UPDATES = ("equations", "paper_code")


def b_scale(s, method, distance, scale_update="equations"):
    """The scale at which the non-target terms of ``B`` are scored (``s`` but for paper_code DR-euc)."""
    if scale_update == "paper_code" and method == "DR" and distance == "euc":
        return 2.0 * (s**0.5)
    return s


def scale_residual(s, B, theta_m, method, distance, p=1.0, scale_update="equations"):
    """``R(s)`` above; works on floats, numpy arrays and torch tensors alike."""
    if scale_update not in SCALE_UPDATES:
        raise ValueError(f"scale_update must be one of {SCALE_UPDATES}, got {scale_update!r}")
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
        t2 = 2.0 - 2.0 * cos_m if scale_update == "paper_code" else theta_m**2
        return B * lib.exp(s * t2) * (2.0 * s * t2 - 1.0) - p * (2.0 * s * t2 + 1.0)
    raise ValueError(f"the scale applies to normface and DR, not {method!r}")


def _orthogonal_term(s, method, distance, scale_update="equations"):
    """``exp(z)`` of a representative orthogonal to the embedding (cos = 0), as ``B`` counts it."""
    if method == "DR":
        s = b_scale(s, method, distance, scale_update)
        d = math.sqrt(2.0) if distance == "euc" else math.pi / 2
        return d ** (-s)
    if distance == "euc":
        return 1.0  # e^(s * 0)
    return np.exp(-s * (math.pi / 2) ** 2)


def initial_scale(method, distance, n_classes):
    """The initial dynamic scale (see :func:`solve_initial_scale`)."""
    return solve_initial_scale(method, distance, n_classes)[0]


def solve_initial_scale(method, distance, n_classes, scale_update="equations"):
    """Solve ``R(s) = 0`` for a target at pi/4 and C - 1 orthogonal others.

    With the default ``scale_update="equations"`` this is the initial scale
    (the paper's initial equation above, used in both modes).  With ``"paper_code"`` it is where the
    paper code's per-step update settles for that configuration (its
    equilibrium), e.g. 9.8238 instead of 7.8989 for DR-euc at C = 100.

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
        B = (n_classes - 1) * _orthogonal_term(s, method, distance, scale_update)
        return float(scale_residual(np.float64(s), B, math.pi / 4, method, distance, scale_update=scale_update))

    grid = np.geomspace(1e-3, 200.0, 4000)
    values = np.array([r(s) for s in grid])
    change = np.nonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)[0]
    if len(change) == 0:
        return float(grid[np.argmin(np.abs(values))]), False
    i = change[-1]
    return float(brentq(r, grid[i], grid[i + 1], xtol=1e-12)), True


def median_target_angle(cos_target):
    """``theta_m = min(pi/4, median target angle)``, the lower middle value for an even batch.

    The angle is the paper's (:func:`utils.angle.angle_from_cos`, in float64), at least 1.4e-3.
    """
    return torch.clamp(torch.median(angle_from_cos(cos_target.double())), max=math.pi / 4)


def dynamic_scale_objective(log_s, z_nontarget_free, cos_target, prior_target, method, distance,
                            scale_update="equations"):
    """``R(s)^2`` for one batch, differentiable in ``log_s`` only.

    ``z_nontarget_free``: the batch scores (computed with the current, detached
    scale :func:`b_scale`, prior included) with the target entries set to ``-inf``;
    ``cos_target``: cosine of each sample to its target representative;
    ``prior_target``: the target's class prior per sample, or None.
    """
    with torch.no_grad():
        B = torch.exp(z_nontarget_free.double()).sum(dim=1).mean()
        theta_m = median_target_angle(cos_target)
        p = prior_target.double().mean() if prior_target is not None else 1.0
    s = torch.exp(log_s.double())
    R = scale_residual(s, B, theta_m, method, distance, p, scale_update)
    return R**2
