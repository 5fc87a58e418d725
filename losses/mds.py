"""``--mds_W``: representatives placed by metric MDS on the class tree.

Fit ``C`` unit vectors whose pairwise distances (chord for ``euc``, angle for
``arccos``) match ``T(d_T)``, by minimising the normalised stress
``|T(D_T) - D_W|_F / |T(D_T)|_F`` with Adam (lr 1e-3, 1000 full-batch steps)
from normalised Gaussian vectors.  ``D_W`` is taken in the paper's form
(:func:`mds_distances`): every one of the ``C x C`` entries counts, the diagonal
included.  The result is frozen during training; this is the only option that
uses the hierarchy in training.
"""
import torch

from losses.distances import CHORD_SQ_MIN, distance_from_cos, normalize

# The paper's MDS normalises each row as V / (|V| + MDS_NORM_EPS).
MDS_NORM_EPS = 1e-6


def mds_distances(V, distance):
    """``D_W``: distances between the rows of ``V`` in the paper's MDS form, all ``C x C`` entries.

    Rows are normalised as ``V / (|V| + 1e-6)``, so a row's cosine with itself
    is ``(|v| / (|v| + 1e-6))^2`` (just below 1) and the diagonal is small but
    not zero (2.0e-3 chord, 2.4e-3 angle for unit rows).  ``euc``: the chord
    ``sqrt(2 - 2 cos + 1e-12)`` (``2 - 2 cos`` clipped at 0 first, so a float
    rounding above 1 cannot make it NaN); ``arccos``: the angle of
    :func:`utils.angle.angle_from_cos`.
    """
    U = V / (torch.linalg.norm(V, dim=1, keepdim=True) + MDS_NORM_EPS)
    cos = U @ U.T
    if distance == "euc":
        return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=0.0) + CHORD_SQ_MIN)
    return distance_from_cos(cos, distance)


def stress(target, W, distance):
    """Normalised stress ``|T - D_W|_F / |T|_F`` over all entries (``D_W``: :func:`mds_distances`)."""
    return torch.linalg.norm(target - mds_distances(W, distance)) / torch.linalg.norm(target)


def fit_mds(target, dim=128, distance="euc", steps=1000, lr=1e-3, generator=None):
    """Return ``(W, initial_stress, final_stress)``; ``W`` is [C, dim] with unit rows.

    ``target``: [C, C] target distances ``T(d_T)`` (numpy or torch).
    """
    target = torch.as_tensor(target, dtype=torch.float32)
    V = torch.randn(len(target), dim, generator=generator)
    V = normalize(V).requires_grad_(True)
    opt = torch.optim.Adam([V], lr=lr)
    with torch.no_grad():
        initial = float(stress(target, V, distance))
    for _ in range(steps):
        opt.zero_grad()
        loss = stress(target, V, distance)
        loss.backward()
        opt.step()
    W = normalize(V.detach())
    with torch.no_grad():
        final = float(stress(target, W, distance))
    return W, initial, final
