"""``--mds_W``: representatives placed by metric MDS on the class tree.

Fit ``C`` unit vectors whose pairwise distances (chord for ``euc``, angle for
``arccos``) match ``T(d_T)``, by minimising the normalised stress
``|T(D_T) - D_W|_F / |T(D_T)|_F`` with Adam (lr 1e-3, 1000 full-batch steps)
from normalised Gaussian vectors.  ``D_W`` is taken in the paper's form
(:func:`mds_distances`): every one of the ``C x C`` entries counts, the diagonal
included.  The result is frozen during training; this is the only option that
uses the hierarchy in training.

Above :data:`BLOCK_CLASSES` classes the stress and its gradient are summed
over blocks of rows of ``D_W`` (the same sum, without the C x C buffers of
automatic differentiation: 10,000 classes would need some 4 GB of them), and
the steps run on the training device.
"""
import torch

from losses.distances import CHORD_SQ_MIN, distance_from_cos, normalize

# The paper's MDS normalises each row as V / (|V| + MDS_NORM_EPS).
MDS_NORM_EPS = 1e-6
MDS_STEPS = 1000  # full-batch Adam steps (the paper's)
BLOCK_CLASSES = 2048  # above this, blocks of rows
BLOCK_BYTES = 16 << 20  # one block of rows of D_W (float32)


def mds_distances(V, distance, rows=None):
    """``D_W``: distances between the rows of ``V`` in the paper's MDS form, all ``C x C`` entries
    (``rows``, a slice: only those rows, against all).

    Rows are normalised as ``V / (|V| + 1e-6)``, so a row's cosine with itself
    is ``(|v| / (|v| + 1e-6))^2`` (just below 1) and the diagonal is small but
    not zero (2.0e-3 chord, 2.4e-3 angle for unit rows).  ``euc``: the chord
    ``sqrt(2 - 2 cos + 1e-12)`` (``2 - 2 cos`` clipped at 0 first, so a float
    rounding above 1 cannot make it NaN); ``arccos``: the angle of
    :func:`utils.angle.angle_from_cos`.
    """
    U = V / (torch.linalg.norm(V, dim=1, keepdim=True) + MDS_NORM_EPS)
    cos = (U if rows is None else U[rows]) @ U.T
    if distance == "euc":
        return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=0.0) + CHORD_SQ_MIN)
    return distance_from_cos(cos, distance)


def _row_blocks(n):
    step = max(1, BLOCK_BYTES // (4 * max(n, 1))) if n > BLOCK_CLASSES else n
    return [slice(r0, min(n, r0 + step)) for r0 in range(0, n, step)]


def stress(target, W, distance):
    """Normalised stress ``|T - D_W|_F / |T|_F`` over all entries (``D_W``: :func:`mds_distances`)."""
    if len(W) <= BLOCK_CLASSES:
        return torch.linalg.norm(target - mds_distances(W, distance)) / torch.linalg.norm(target)
    with torch.no_grad():
        squares = sum(torch.sum((target[rows] - mds_distances(W, distance, rows)) ** 2).double()
                      for rows in _row_blocks(len(W)))
    return torch.sqrt(squares) / torch.linalg.norm(target.double())


def _stress_backward(target, V, distance, target_norm):
    """The stress of ``V``, with its gradient accumulated into ``V.grad`` one block of rows at a time.

    ``stress = sqrt(S) / |T|`` with ``S`` the sum over blocks of squared
    residuals, so its gradient is the sum of the blocks' gradients of ``S``
    times ``1 / (2 sqrt(S) |T|)``.
    """
    total = torch.zeros((), dtype=torch.float64, device=V.device)
    for rows in _row_blocks(len(V)):
        part = torch.sum((target[rows] - mds_distances(V, distance, rows)) ** 2)
        part.backward()
        total += part.detach().double()
    value = torch.sqrt(total) / target_norm
    V.grad.mul_(float(1.0 / (2.0 * torch.sqrt(total) * target_norm)))
    return value


def fit_mds(target, dim=128, distance="euc", steps=MDS_STEPS, lr=1e-3, generator=None, device=None, progress=None):
    """Return ``(W, initial_stress, final_stress)``; ``W`` is [C, dim] with unit rows (on the CPU).

    ``target``: [C, C] target distances ``T(d_T)`` (numpy or torch).  The
    initial vectors are drawn on the CPU from ``generator`` and the steps run
    on ``device`` (default: the CPU); ``progress(step, steps)`` after each step.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    target = torch.as_tensor(target, dtype=torch.float32).to(device)
    V = torch.randn(len(target), dim, generator=generator)
    V = normalize(V).to(device).requires_grad_(True)
    opt = torch.optim.Adam([V], lr=lr)
    blocked = len(target) > BLOCK_CLASSES
    target_norm = torch.linalg.norm(target.double())
    with torch.no_grad():
        initial = float(stress(target, V, distance))
    for step in range(steps):
        opt.zero_grad()
        if blocked:
            V.grad = torch.zeros_like(V)
            _stress_backward(target, V, distance, target_norm)
        else:
            loss = stress(target, V, distance)
            loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps)
    W = normalize(V.detach()).cpu()
    with torch.no_grad():
        final = float(stress(target.cpu(), W, distance))
    return W, initial, final
