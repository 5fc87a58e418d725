"""Hierarchical inference: how well class representatives match the class tree (docs/evaluate.md).

Every function takes a representative distance matrix ``D`` (C x C, from
:func:`representative_distances`) and the tree distances ``D_T`` (or level
groups) and returns plain floats, ``None`` where the measure is undefined.
No Python loops over classes: ranks, correlations and retrieval counts are
computed for all columns at once; the permutation test loops over the
permutations only (one C x C dot product each).
"""
import numpy as np
from scipy import stats

DISTANCES = ("euc", "arccos")


def _none_if_nan(value):
    value = float(value)
    return value if np.isfinite(value) else None


def representative_distances(representatives, distance="euc"):
    """Pairwise distances of L2-normalised rows: chord ``sqrt(2 - 2 cos)`` or angle ``arccos(cos)``.

    Rows are renormalised in float64; the diagonal is exactly 0.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    x = np.asarray(representatives, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = np.clip(x @ x.T, -1.0, 1.0)
    if distance == "euc":
        d = np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))
    else:
        d = np.arccos(cos)
    np.fill_diagonal(d, 0.0)
    return d


# ---------------------------------------------------------------- Spearman
def _spearman_pvalue(r, n):
    """Two-sided p-value of a Spearman ``r`` over ``n`` pairs (t distribution, n - 2 dof)."""
    r = np.asarray(r, dtype=np.float64)
    dof = n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt((dof / ((r + 1.0) * (1.0 - r))).clip(0))
    return 2.0 * stats.t.sf(np.abs(t), dof)


def _pearson_columns(x, y):
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (x * y).sum(axis=0) / np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    return np.clip(r, -1.0, 1.0)


def spearman_columns(a, b):
    """Spearman correlation and p-value between column i of ``a`` and column i of ``b``, for every i.

    Ties get average ranks; a constant column gives NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    r = _pearson_columns(stats.rankdata(a, axis=0), stats.rankdata(b, axis=0))
    return r, _spearman_pvalue(r, a.shape[0])


def corr_mean(D, D_T):
    """``corr_mean``: Fisher-z mean of the per-class Spearman correlations, and ``corr_mean_p``.

    For each class i: Spearman between column i of ``D`` and of ``D_T`` (all C
    entries, the diagonal included, faithful).  Combined as
    ``tanh(mean(arctanh(r_i)))`` over the classes whose ``r_i`` is defined;
    ``corr_mean_p`` is the harmonic mean of their p-values.  Returns
    ``(corr_mean, corr_mean_p)``, ``None`` where undefined.
    """
    if np.shape(D)[0] < 3:
        return None, None
    r, p = spearman_columns(D, D_T)
    ok = np.isfinite(r)
    if not ok.any():
        return None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_r = np.tanh(np.mean(np.arctanh(r[ok])))
        mean_p = ok.sum() / np.sum(1.0 / p[ok])
    return _none_if_nan(mean_r), _none_if_nan(mean_p)


def _upper(matrix):
    i, j = np.triu_indices(np.shape(matrix)[0], 1)
    return np.asarray(matrix)[i, j]


def corr_elem(D, D_T):
    """``corr_elem``: one Spearman correlation over all class pairs i < j.  Returns ``(r, p)``."""
    if np.shape(D)[0] < 3:
        return None, None
    r, p = spearman_columns(_upper(D)[:, None], _upper(D_T)[:, None])
    return _none_if_nan(r[0]), _none_if_nan(p[0])


def class_permutations(n_classes, n_perm=999, seed=0):
    """The ``n_perm`` random relabellings of ``corr_perm_p``: row k is a permutation of 0..C-1.

    Drawn as ``numpy.random.default_rng(seed).permuted(tile(arange(C)), axis=1)``.
    """
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n_classes), (n_perm, 1)), axis=1)


def permuted_corr_elem(D, D_T, perms):
    """``corr_elem`` of ``D`` against ``D_T[p][:, p]`` for every permutation ``p`` (row of ``perms``).

    Relabelling the classes only moves the pair values around, so the ranks of
    the pairs of ``D_T`` are permuted with them and their mean and spread stay
    the same: each correlation is one dot product of centred rank matrices,
    ``<A, B[p][:, p]> / (|a| |b|)``.  One loop step per permutation (two
    ``take`` calls and a dot product over C x C), which is faster than a
    three-dimensional fancy index over a chunk of permutations.
    """
    C = np.shape(D)[0]
    i, j = np.triu_indices(C, 1)
    ra = stats.rankdata(np.asarray(D, dtype=np.float64)[i, j])
    rb = stats.rankdata(np.asarray(D_T, dtype=np.float64)[i, j])
    ra -= ra.mean()
    rb -= rb.mean()
    norm = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    A = np.zeros((C, C))
    A[i, j] = ra  # upper triangle only: the sum over i < j
    B = np.zeros((C, C))
    B[i, j] = rb
    B += B.T  # symmetric: B[p_i, p_j] is the permuted rank of pair (i, j) whichever way round
    dots = np.array([np.vdot(A, B.take(p, axis=0).take(p, axis=1)) for p in np.asarray(perms)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return dots / norm


def corr_perm_p(D, D_T, n_perm=999, seed=0):
    """``corr_perm_p``: permutation p-value of ``corr_elem`` against random relabellings.

    ``(1 + number of the n_perm relabellings whose corr_elem >= the observed one) / (n_perm + 1)``,
    with the relabellings of :func:`class_permutations` (same permutation on
    rows and columns of ``D_T``).  ``None`` when ``corr_elem`` is undefined.
    """
    observed, _ = corr_elem(D, D_T)
    if observed is None:
        return None
    null = permuted_corr_elem(D, D_T, class_permutations(np.shape(D)[0], n_perm, seed))
    count = int(np.sum(null >= observed - 1e-12))  # tolerance: equal correlations count as >=
    return (1 + count) / (n_perm + 1)


# ------------------------------------------------------ level retrieval
def level_retrieval(D, groups):
    """``p1``, ``rp``, ``mapr`` of the representatives at one level.

    For each class j whose group G (``groups[j]``) has at least 2 members:
    rank the other classes by distance ``D[j]`` (ties by class index),
    R = |G| - 1; P@1 = [nearest in G]; RP = |first R in G| / R;
    MAP@R = (1/R) sum_{k<=R} [k-th in G] |first k in G| / k.  Averaged over
    such j.  Returns ``(p1, rp, mapr)``, all ``None`` when no group has two
    members.
    """
    groups = np.asarray(groups)
    C = len(groups)
    same = groups[:, None] == groups[None, :]
    R = same.sum(axis=1) - 1
    query = R >= 1
    if not query.any():
        return None, None, None
    d = np.array(D, dtype=np.float64)
    np.fill_diagonal(d, np.inf)  # self goes last (all other distances are finite)
    order = np.argsort(d[query], axis=1, kind="stable")[:, : C - 1]
    hits = np.take_along_axis(same[query], order, axis=1)
    Rq = R[query]
    k = np.arange(1, C)
    within = hits & (k[None, :] <= Rq[:, None])
    p1 = hits[:, 0].mean()
    rp = (within.sum(axis=1) / Rq).mean()
    precision_at_k = np.cumsum(within, axis=1) / k
    mapr = ((within * precision_at_k).sum(axis=1) / Rq).mean()
    return float(p1), float(rp), float(mapr)
