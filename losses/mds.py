"""``--mds_W``: representatives placed by metric MDS on the class tree.

Fit ``C`` unit vectors whose pairwise distances (chord for ``euc``, angle for
``arccos``) match ``T(d_T)``, by minimising the normalised stress
``|T(D_T) - D_W|_F / |T(D_T)|_F`` with Adam (lr 1e-3, 1000 full-batch steps)
from normalised Gaussian vectors.  The result is frozen during training; this is
the only option that uses the hierarchy in training.
"""
import torch

from losses.distances import normalize, pairwise_distances


def stress(target, W, distance):
    """Normalised stress between target distances and the distances of ``W``'s rows."""
    return torch.linalg.norm(target - pairwise_distances(W, distance)) / torch.linalg.norm(target)


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
