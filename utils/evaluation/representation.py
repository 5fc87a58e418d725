"""Hierarchical inference: how well class representatives match the class tree (docs/evaluate.md).

Every function takes a representative distance matrix ``D`` (C x C, from
:func:`representative_distances`) and the tree distances ``D_T`` (or level
groups) and returns plain floats, ``None`` where the measure is undefined.
No Python loops over classes: ranks, correlations and retrieval counts are
computed for blocks of columns at once, so that at 20,000 classes only a few
C x C arrays are alive.

The permutation test (:func:`corr_perm_p`) relabels the classes of the tree
999 times.  Each relabelled correlation is a sum over all class pairs.  With
the hierarchy at hand, a model of the tree ranks that a few matrix-product
columns evaluate under any relabelling, and a bound on what it leaves out,
decide most relabellings (:class:`_TreeModel`); the rest are summed exactly
from block sums of the tree (:class:`_TreeBlocks`).  The count, hence the
p-value, is that of the direct computation (tests/test_representation.py
holds the direct code as the oracle).
"""
import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

from utils.angle import angle_from_cos

DISTANCES = ("euc", "arccos")
BLOCK_BYTES = 64 << 20  # working memory of one block of rows or pairs
SYRK_CLASSES = 10000  # up to here the distances come from one x @ x.T (see _gram_by_blocks)


def _none_if_nan(value):
    value = float(value)
    return value if np.isfinite(value) else None


def rows_per_block(n_columns, copies=8):
    """Rows of a block of ``n_columns`` float64 columns such that ``copies`` such blocks fit BLOCK_BYTES."""
    return max(1, BLOCK_BYTES // max(1, 8 * copies * n_columns))


def representative_distances(representatives, distance="euc"):
    """Pairwise distances of L2-normalised rows: chord ``sqrt(2 - 2 cos)`` or the paper's angle
    ``arccos(0.999999 cos)`` (:func:`utils.angle.angle_from_cos`).

    Rows are renormalised in float64; the diagonal is exactly 0.  Computed in
    place on the one C x C cosine matrix.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    x = np.asarray(representatives, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = x @ x.T if len(x) <= SYRK_CLASSES else _gram_by_blocks(x)
    np.clip(d, -1.0, 1.0, out=d)
    if distance == "euc":
        d *= 2.0
        np.subtract(2.0, d, out=d)
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
    else:
        angle_from_cos(d, out=d)  # in place: no second C x C array
    np.fill_diagonal(d, 0.0)
    return d


def _gram_by_blocks(x):
    """``x @ x.T`` as products of blocks of rows (the upper triangle, mirrored): exactly symmetric.

    Above :data:`SYRK_CLASSES` rows; numpy's ``x @ x.T`` calls BLAS ``syrk``,
    which crashes in the OpenBLAS of requirements.txt from about 16,000 rows.
    """
    n = len(x)
    d = np.empty((n, n))
    step = max(1, rows_per_block(n, copies=1))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        np.matmul(x[r0:r1], x[r0:].T, out=d[r0:r1, r0:])
        _mirror_rows(d, r0, r1)
    return d


def _mirror_rows(M, r0, r1):
    """Copy the upper triangle of rows r0..r1-1 of the square ``M`` (the diagonal block's included) below the
    diagonal, in place: after every block of rows, ``M`` is exactly symmetric."""
    M[r1:, r0:r1] = M[r0:r1, r1:].T
    block = M[r0:r1, r0:r1]
    lower = np.tril_indices(r1 - r0, -1)
    block[lower] = block.T[lower]


# ---------------------------------------------------------------- ranks
def _average_ranks_rows(M):
    """Average ranks (1-based; tied values share the mean of their ranks) along each row of a 2-D block.

    Equal to ``scipy.stats.rankdata(M, axis=1)``: the ranks are exact half-integers.
    """
    order = np.argsort(M, axis=1)
    return _ranks_from_order(M, order)


def _ranks_from_order(M, order):
    """:func:`_average_ranks_rows` of ``M`` given an argsort ``order`` of its rows."""
    b, n = M.shape
    s = np.take_along_axis(M, order, axis=1)
    starts = np.ones((b, n), dtype=bool)  # sorted position k begins a run of equal values
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    del s
    ranks = np.empty((b, n))
    if starts.all():  # no ties: the ranks are the inverse permutation
        np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1.0, n + 1.0), (b, n)), axis=1)
        return ranks
    pos = np.arange(n)
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)  # the run's first position
    ends = np.ones((b, n), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    stop = np.minimum.accumulate(np.where(ends, pos + 1, n)[:, ::-1], axis=1)[:, ::-1]  # one past its last
    np.put_along_axis(ranks, order, (first + stop + 1) / 2.0, axis=1)
    return ranks


def _average_ranks(x, order=None):
    """Average ranks of a 1-D float64 array, written into the array itself (as ``scipy.stats.rankdata``).

    Works through the sorted order a chunk at a time, so it needs the array,
    its argsort and one byte per element.  ``order``: an argsort of an earlier
    array that may sort this one too (the angle's pairs in the chord's order);
    it is checked, and replaced by a new argsort when it does not sort ``x``.
    Returns ``(x, order)``.
    """
    n = x.size
    step = max(1, BLOCK_BYTES // 32)
    starts = np.empty(n, dtype=bool)  # sorted position k begins a run of equal values
    if order is None or order.size != n:
        order = np.argsort(x)
        if n < 2**31:  # kept between matrices: half the memory
            order = order.astype(np.int32)
    for attempt in range(2):
        previous, sorted_ = None, True
        for k0 in range(0, n, step):
            v = x[order[k0:k0 + step]]
            if np.any(v[1:] < v[:-1]) or (previous is not None and v[0] < previous):
                sorted_ = False
                break
            starts[k0] = previous is None or v[0] != previous
            starts[k0 + 1:k0 + v.size] = v[1:] != v[:-1]
            previous = v[-1]
        if sorted_:
            break
        # the given order sorts x only nearly (ties broken differently): a stable sort of the nearly sorted
        # values finishes it in about one pass
        finish = np.argsort(x[order], kind="stable")
        order = order[finish]
        del finish
    carry = 0
    for k0 in range(0, n, step):  # the first position of each run, forwards; into x (no longer needed)
        k1 = min(n, k0 + step)
        first = np.maximum(np.maximum.accumulate(np.where(starts[k0:k1], np.arange(k0, k1), -1)), carry)
        x[order[k0:k1]] = first
        carry = first[-1]
    carry = n
    for k0 in reversed(range(0, n, step)):  # one past the last position of each run, backwards
        k1 = min(n, k0 + step)
        ends = np.empty(k1 - k0, dtype=bool)
        ends[:-1] = starts[k0 + 1:k1]
        ends[-1] = k1 == n or starts[k1]
        stop = np.minimum(np.minimum.accumulate(np.where(ends, np.arange(k0, k1) + 1, n)[::-1])[::-1], carry)
        at = order[k0:k1]
        x[at] = (x[at] + stop + 1) / 2.0
        carry = stop[0]
    return x, order


def _ranks_of_counts(counts):
    """The average rank of each value from how often each value occurs (along the last axis, in value order):
    the values below it, plus the mean of 1..count."""
    return np.cumsum(counts, axis=-1) - counts + (counts + 1) / 2.0


def _integer_rank_rows(M):
    """Average ranks along each row of an integer block, by counting (no sort): as :func:`_average_ranks_rows`."""
    M = np.asarray(M, dtype=np.int64)
    b = M.shape[0]
    lo = int(M.min())
    width = int(M.max()) - lo + 1
    codes = (M - lo) + width * np.arange(b)[:, None]
    counts = np.bincount(codes.ravel(), minlength=b * width).reshape(b, width)
    ranks = _ranks_of_counts(counts)
    return np.take_along_axis(ranks, M - lo, axis=1)


def rank_rows(M):
    """Average ranks (1-based, ties averaged, as ``scipy.stats.rankdata(M, axis=1)``) within every row of ``M``:
    integer rows (tree distances) by counting, others by one argsort per row."""
    M = np.asarray(M)
    if M.dtype.kind in "iub" and M.size:
        return _integer_rank_rows(M)
    return _average_ranks_rows(np.asarray(M, dtype=np.float64))


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


def spearman_columns(a, b, progress=None):
    """Spearman correlation and p-value between column i of ``a`` and column i of ``b``, for every i.

    Ties get average ranks; a constant column gives NaN.  Works on blocks of
    columns, so a 20,000-column pair of matrices needs little more memory than
    the matrices themselves; ``progress(done, total)`` after each block.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    n, m = a.shape
    r = np.empty(m)
    step = rows_per_block(n)
    for c0 in range(0, m, step):
        c1 = min(m, c0 + step)
        ra = rank_rows(np.ascontiguousarray(a[:, c0:c1].T))
        rb = rank_rows(np.ascontiguousarray(b[:, c0:c1].T))
        r[c0:c1] = _pearson_columns(ra.T, rb.T)
        if progress is not None:
            progress(c1, m)
    return r, _spearman_pvalue(r, n)


def corr_mean(D, D_T, progress=None):
    """``corr_mean``: Fisher-z mean of the per-class Spearman correlations, and ``corr_mean_p``.

    For each class i: Spearman between column i of ``D`` and of ``D_T`` (all C
    entries, the diagonal included, faithful).  Combined as
    ``tanh(mean(arctanh(r_i)))`` over the classes whose ``r_i`` is defined;
    ``corr_mean_p`` is the harmonic mean of their p-values.  Returns
    ``(corr_mean, corr_mean_p)``, ``None`` where undefined.
    """
    if np.shape(D)[0] < 3:
        return None, None
    return _combine_columns(*spearman_columns(D, D_T, progress))


def _combine_columns(r, p):
    """``(corr_mean, corr_mean_p)`` from the per-class Spearman ``r`` and p-values."""
    ok = np.isfinite(r)
    if not ok.any():
        return None, None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # p-values that underflow to 0
        mean_p = ok.sum() / np.sum(1.0 / p[ok])
    return _none_if_nan(fisher_mean(r)), _none_if_nan(mean_p)


def fisher_mean(r):
    """``tanh(mean(arctanh(r_i)))`` over the defined (non-NaN) ``r_i``, each clipped to [-1, 1]; NaN if none."""
    r = np.clip(np.asarray(r, dtype=np.float64), -1.0, 1.0)
    r = r[~np.isnan(r)]
    if not r.size:
        return np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.tanh(np.mean(np.arctanh(r))))


# ------------------------------------------------------------ pair ranks
def _upper_rows(M, r0, r1):
    """The pairs (i, j), j > i, of rows r0..r1-1 of a square matrix, in row-major (condensed) order."""
    block = np.asarray(M[r0:r1])
    return block[np.arange(block.shape[1])[None, :] > np.arange(r0, r1)[:, None]]


def _row_blocks(n):
    """Row ranges of a square n x n matrix whose pairs above the diagonal fill about BLOCK_BYTES / 8 values."""
    step = rows_per_block(n, copies=2)
    return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]


def _condensed(M):
    """The pairs i < j of a square matrix in row-major order (as ``M[triu_indices(C, 1)]``), float64."""
    n = np.shape(M)[0]
    out = np.empty(n * (n - 1) // 2)
    at = 0
    for r0, r1 in _row_blocks(n):
        part = _upper_rows(M, r0, r1)
        out[at:at + part.size] = part
        at += part.size
    return out


class _PairRanks:
    """Centred pair ranks of ``D`` and ``D_T`` (pairs i < j), doubled so that they are exact integers.

    ``a``: ``2 rank - (N + 1)`` of each pair of ``D`` (condensed, row-major);
    the tree side is a lookup from distance value to its doubled centred rank
    when ``D_T`` holds integers (tree distances: a handful of values), else a
    condensed array like ``a``.  Both sum to zero, so the Pearson correlation
    of the ranks is ``<a, b> / (|a| |b|)``.
    """

    def __init__(self, D, D_T, order=None):
        n = np.shape(D)[0]
        self.n_classes = n
        self.n_pairs = n * (n - 1) // 2
        self.a, self.order = _average_ranks(_condensed(D), order)  # order: the pairs' argsort
        self.a *= 2.0
        self.a -= self.n_pairs + 1
        D_T = np.asarray(D_T)
        self.lookup = None
        if D_T.dtype.kind in "iu":
            self.lo = int(D_T.min())
            width = int(D_T.max()) - self.lo + 1
            counts = np.zeros(width, dtype=np.int64)
            for r0, r1 in _row_blocks(n):
                counts += np.bincount(_upper_rows(D_T, r0, r1) - self.lo, minlength=width)
            ranks = _ranks_of_counts(counts)
            self.counts = counts
            self.lookup = 2.0 * ranks - (self.n_pairs + 1)
            self.b_norm2 = float(np.dot(counts, self.lookup**2))
        else:
            self.b = _average_ranks(_condensed(D_T))[0]
            self.b *= 2.0
            self.b -= self.n_pairs + 1
            self.b_norm2 = float(np.dot(self.b, self.b))
        self.a_norm2 = float(np.dot(self.a, self.a))
        self.D_T = D_T

    def tree_values(self, distances):
        """The doubled centred rank of tree distances (integer ``D_T`` only)."""
        return self.lookup[np.asarray(distances) - self.lo]

    def tree_pairs(self, r0, r1):
        """Doubled centred ranks of the pairs of ``D_T`` in rows r0..r1-1 (condensed order)."""
        if self.lookup is None:
            start = r0 * self.n_classes - r0 * (r0 + 1) // 2
            stop = r1 * self.n_classes - r1 * (r1 + 1) // 2
            return self.b[start:stop]
        return self.tree_values(_upper_rows(self.D_T, r0, r1))

    @property
    def norm(self):
        return np.sqrt(self.a_norm2 * self.b_norm2)

    def correlation(self):
        """Spearman correlation of the pairs of ``D`` and ``D_T`` (NaN when either is constant)."""
        dot = 0.0
        at = 0
        for r0, r1 in _row_blocks(self.n_classes):
            b = self.tree_pairs(r0, r1)
            dot += float(np.dot(self.a[at:at + b.size], b))
            at += b.size
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.clip(dot / self.norm, -1.0, 1.0)) if self.norm > 0 else np.nan

    def square(self, tree=False, dtype=np.float64, sums=False):
        """The ranks as a symmetric C x C matrix with a zero diagonal (``tree``: the ``D_T`` side).

        ``sums``: also return the exact row sums of the ranks and of their absolute values (float64).
        """
        n = self.n_classes
        out = np.zeros((n, n), dtype=dtype)
        row_sum, abs_sum = np.zeros(n), np.zeros(n)
        at = 0
        for r0, r1 in _row_blocks(n):
            mask = np.arange(n)[None, :] > np.arange(r0, r1)[:, None]
            size = (r1 - r0) * n - (r1 * (r1 + 1) - r0 * (r0 + 1)) // 2
            block = np.zeros((r1 - r0, n))
            block[mask] = self.tree_pairs(r0, r1) if tree else self.a[at:at + size]
            out[r0:r1] = block
            if sums:  # integers: the float64 sums are exact in any order; the lower triangle is the columns
                row_sum[r0:r1] += block.sum(axis=1)
                row_sum += block.sum(axis=0)
                np.abs(block, out=block)
                abs_sum[r0:r1] += block.sum(axis=1)
                abs_sum += block.sum(axis=0)
            at += size
        for r0, r1 in _row_blocks(n):
            _mirror_rows(out, r0, r1)
        return (out, row_sum, abs_sum) if sums else out


def corr_elem(D, D_T):
    """``corr_elem``: one Spearman correlation over all class pairs i < j.  Returns ``(r, p)``."""
    if np.shape(D)[0] < 3:
        return None, None
    ranks = _PairRanks(D, D_T)
    r = ranks.correlation()
    return _none_if_nan(r), _none_if_nan(_spearman_pvalue(r, ranks.n_pairs))


# ------------------------------------------------------------ permutation test
def class_permutations(n_classes, n_perm=999, seed=0):
    """The ``n_perm`` random relabellings of ``corr_perm_p``: row k is a permutation of 0..C-1.

    Drawn as ``numpy.random.default_rng(seed).permuted(tile(arange(C)), axis=1)``.
    """
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n_classes), (n_perm, 1)), axis=1)


# Relative costs (nanoseconds, 2-core machine) that choose the block plans of
# _TreeBlocks; they change the speed of the permutation test, never its numbers.
FLOP_NS = 0.025  # one floating-point operation of a dense matrix product
ROW_NS = 1.2  # adding one element of a row of A into a small part's column
SUM_NS = 2.0  # summing one element of a part's column by the parts of a relabelling
PAIR_NS = 35.0  # gathering one pair inside an item from A at random positions
MODEL_COLUMNS = 64  # the most columns per relabelling of the first pass of corr_perm_p (_TreeModel)


class _TreeBlocks:
    """The relabelled tree ranks ``F[p_i, p_j]`` as a few block sums (the exact path of the permutation test).

    ``F[x, y]`` = the doubled centred rank of ``d_T(x, y)``.  The classes of the
    tree are split into *items* (:func:`_choose_items`): subtrees of the
    taxonomy, and single classes that sit at an inner node.  For two classes
    in different items the tree distance is ``len_x + len_y - 2 s`` with ``s``
    the depth at which the two items' paths part, so ``F`` is constant over
    the pairs of two *parts* (the classes of one item with one path length).
    A relabelled correlation's numerator is then

        sum_{i<j} A[i, j] F[p_i, p_j] = 1/2 sum_{k, k'} Phi[k, k'] S[k, k'] + sum over the pairs inside items,

    ``Phi[k, k'] = F`` for parts of different items (0 within an item),
    ``S[k, k']`` the sum of ``A`` between the positions whose relabelled class
    lies in part k and in part k' (one column ``A v_k`` per part: a dense
    matrix product for a big part, a sum of rows for a small one), and the
    pairs inside items are gathered one by one.
    """

    def __init__(self, hierarchy, ranks, item_of):
        C = hierarchy.n_classes
        self.n_classes = C
        lengths = hierarchy.lengths
        key = item_of * (int(lengths.max()) + 1) + lengths
        _, rep, part_of = np.unique(key, return_index=True, return_inverse=True)
        self.part_of = part_of.reshape(-1)
        part_item = item_of[rep]
        size = np.bincount(self.part_of).astype(np.float64)
        K = rep.size
        D_T = np.asarray(hierarchy.distances)
        cross = part_item[:, None] != part_item[None, :]
        phi = np.where(cross, ranks.lookup[D_T[np.ix_(rep, rep)] - ranks.lo], 0.0)
        self._inside_pairs(item_of, D_T, ranks)
        dense = 2.0 * C * FLOP_NS * C < size * C * ROW_NS
        self.dense = np.flatnonzero(dense)
        self.rows = np.flatnonzero(~dense)
        self.dense_column = np.full(K, -1)
        self.dense_column[self.dense] = np.arange(self.dense.size)
        self.row_column = np.full(K, -1)
        self.row_column[self.rows] = np.arange(self.rows.size)
        self.phi_dense = phi[:, self.dense]
        self.phi_rows = np.ascontiguousarray(phi[:, self.rows].T)
        self.active = bool(np.any(phi))

    def _inside_pairs(self, item_of, D_T, ranks):
        """The pairs (x < y by position in the item) inside every item of two or more classes, and their F."""
        order = np.argsort(item_of, kind="stable")
        bounds = np.flatnonzero(np.diff(np.concatenate([[-1], item_of[order], [-1]])))
        first, second = [], []
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            if s1 - s0 >= 2:
                members = order[s0:s1]
                i, j = np.triu_indices(s1 - s0, 1)
                first.append(members[i])
                second.append(members[j])
        if first:
            self.x = np.concatenate(first)
            self.y = np.concatenate(second)
            resort = np.lexsort((self.y, self.x))
            self.x, self.y = self.x[resort], self.y[resort]
            self.w = ranks.lookup[D_T[self.x, self.y] - ranks.lo]
        else:
            self.x = self.y = np.zeros(0, dtype=np.int64)
            self.w = np.zeros(0)

    def dots(self, A, perms, progress=None):
        """The numerator above for every row ``p`` of ``perms``."""
        C = self.n_classes
        perms = np.asarray(perms)
        out = np.zeros(len(perms))
        flat = A.reshape(-1)
        Kd = self.dense.size
        batch = max(1, (32 << 20) // max(1, 8 * C * max(Kd, 1)))
        pair_step = max(1, BLOCK_BYTES // 40)
        positions = np.arange(C)
        for b0 in range(0, len(perms), batch):
            chunk = perms[b0:b0 + batch]
            labels = self.part_of[chunk]  # the part of the relabelled class at every position
            if self.active and Kd:
                V = np.zeros((C, len(chunk) * Kd))  # one column per relabelling and dense part
                column = self.dense_column[labels]
                for b in range(len(chunk)):
                    at = np.flatnonzero(column[b] >= 0)
                    V[at, b * Kd + column[b, at]] = 1.0
                Y = A @ V
            for b, (p, lab) in enumerate(zip(chunk, labels)):
                total = 0.0
                if self.active:
                    order = np.argsort(lab, kind="stable")
                    starts = np.flatnonzero(np.concatenate([[True], np.diff(lab[order]) != 0]))
                    if Kd:  # S[k, k'] for every part k and dense part k'
                        S = np.add.reduceat(Y[order, b * Kd:(b + 1) * Kd], starts, axis=0)
                        total += 0.5 * float(np.sum(self.phi_dense * S))
                    if self.rows.size:  # the small parts' columns, as sums of rows of A
                        at = np.flatnonzero(self.row_column[lab] >= 0)
                        member = sparse.csr_matrix(
                            (np.ones(at.size), (self.row_column[lab[at]], positions[at])), shape=(self.rows.size, C)
                        )
                        S = np.add.reduceat((member @ A)[:, order], starts, axis=1)
                        total += 0.5 * float(np.sum(self.phi_rows * S))
                if self.x.size:
                    q = np.empty(C, dtype=np.int64)
                    q[p] = positions
                    for k0 in range(0, self.x.size, pair_step):
                        k1 = k0 + pair_step
                        total += float(np.dot(self.w[k0:k1], flat[q[self.x[k0:k1]] * C + q[self.y[k0:k1]]]))
                out[b0 + b] = total
            if progress is not None:
                progress(min(b0 + batch, len(perms)), len(perms))
        return out


def _top_abs_rank_sum(m, n):
    """The sum of the m largest of ``|2k - (n + 1)|``, k = 1..n (doubled centred ranks without ties)."""
    h, r = m // 2, m % 2
    return 2.0 * (h * (n - 1.0) - h * (h - 1.0)) + r * (n - 1.0 - 2.0 * h)


def _rest_bound(values, counts, n_pairs):
    """``(bound, c)``: the largest ``|sum (v - c) a|`` over ``counts[t]`` pairs of value ``values[t]``.

    Each pair carries a distinct doubled centred rank ``a`` of ``D`` (whatever
    the relabelling); the sum is largest when the largest ``|v - c|`` meet the
    largest ``|a|`` (the rearrangement inequality).  Ties in ``D`` only shrink
    the largest ``|a|`` (tied ranks are averaged), so the ranks without ties
    give a bound that always holds.  The pair ranks sum to zero, so any shift
    ``c`` may be taken out; ``c`` is 0 or the count-weighted median of ``v``,
    whichever bounds tighter.
    """
    present = counts > 0
    if not present.any():
        return 0.0, 0.0
    v, n = np.asarray(values, dtype=np.float64)[present], np.asarray(counts)[present].astype(np.float64)
    order = np.argsort(v, kind="stable")
    median = v[order][np.searchsorted(np.cumsum(n[order]), n.sum() / 2.0)]
    best = (np.inf, 0.0)
    for c in (0.0, float(median)):
        u = np.abs(v - c)
        order = np.argsort(-u, kind="stable")
        edges = np.concatenate([[0.0], np.cumsum(n[order])])
        slabs = _top_abs_rank_sum(edges[1:], n_pairs) - _top_abs_rank_sum(edges[:-1], n_pairs)
        bound = float(np.dot(u[order], slabs))
        if bound < best[0]:
            best = (bound, c)
    return best[0] * (1.0 + 1e-9), best[1]


def _choose_items(hierarchy, pair_ns=PAIR_NS):
    """The item of every class (see :class:`_TreeBlocks`), chosen bottom-up by the cost model.

    A subtree is one item (one column per path length in it, and its pairs
    inside, at ``pair_ns`` each) or is expanded into its children's best
    choices plus, when a class sits at its node, that class alone.
    """
    C = hierarchy.n_classes
    L = hierarchy.n_levels
    lengths = hierarchy.lengths
    width = L + 1

    def part_cost(count):
        count = np.asarray(count, dtype=np.float64)
        column = np.minimum(2.0 * C * C * FLOP_NS, count * C * ROW_NS) + C * SUM_NS
        return np.where(count > 0, column, 0.0)

    nodes = []  # per level: the node of every class (-1: none), parent node, holder class, item cost
    for level in range(L):
        groups = hierarchy.level_groups(level)
        deep = lengths > level
        _, first, node_of = np.unique(groups[deep], return_index=True, return_inverse=True)
        node = np.full(C, -1)
        node[deep] = node_of.reshape(-1)
        n_nodes = first.size
        members = np.flatnonzero(deep)
        size = np.bincount(node[members], minlength=n_nodes).astype(np.float64)
        counts = np.bincount(node[members] * width + lengths[members], minlength=n_nodes * width)
        holder = np.full(n_nodes, -1)
        at = np.flatnonzero(lengths == level + 1)
        holder[node[at]] = at
        parent = nodes[-1]["node"][members[first]] if level else np.zeros(n_nodes, dtype=np.int64)
        item = part_cost(counts.reshape(n_nodes, width)).sum(axis=1) + pair_ns * size * (size - 1) / 2.0
        nodes.append({"node": node, "parent": parent, "holder": holder, "item": item})
    for level in reversed(range(L)):
        here = nodes[level]
        n_nodes = here["item"].size
        expand = np.where(here["holder"] >= 0, part_cost(1), 0.0)
        if level + 1 < L:
            below = nodes[level + 1]
            expand = expand + np.bincount(below["parent"], weights=below["best"], minlength=n_nodes)
            has_children = np.bincount(below["parent"], minlength=n_nodes) > 0
        else:
            has_children = np.zeros(n_nodes, dtype=bool)
        here["expand"] = has_children & (expand < here["item"])
        here["best"] = np.where(here["expand"], expand, here["item"])
    item_of = np.full(C, -1)
    if pair_ns * C * (C - 1) / 2.0 <= nodes[0]["best"].sum():  # one item: every pair inside
        item_of[:] = 0
        return item_of
    open_parent = np.ones(1, dtype=bool)  # the root is expanded
    next_id = 0
    for level in range(L):
        here = nodes[level]
        reached = open_parent[here["parent"]]
        items = np.flatnonzero(reached & ~here["expand"])
        ids = np.full(here["item"].size, -1)
        ids[items] = next_id + np.arange(items.size)
        next_id += items.size
        inside = here["node"] >= 0
        inside[inside] = ids[here["node"][inside]] >= 0
        item_of[inside] = ids[here["node"][inside]]
        held = here["holder"][reached & here["expand"]]
        held = held[held >= 0]
        item_of[held] = next_id + np.arange(held.size)
        next_id += held.size
        open_parent = reached & here["expand"]
    return item_of


def _pair_cells(hierarchy):
    """Every kind of class pair: lengths ``a``, ``b``, shared path depth ``s`` and the number of such pairs.

    Counted from the classes per group and length at every level (no pair is
    visited): the pairs of distinct classes of lengths a and b in one group
    at level s - 1, less those in one group at level s; each unordered pair
    once, with ``a <= b``.
    """
    L = hierarchy.n_levels
    width = L + 1
    lengths = hierarchy.lengths
    n = np.bincount(lengths, minlength=width).astype(np.float64)
    sharing = [np.outer(n, n) - np.diag(n)]  # sharing[s]: ordered pairs sharing at least s path elements
    for level in range(L):
        groups = hierarchy.level_groups(level)
        G = hierarchy.n_groups(level)
        N = np.bincount(groups * width + lengths, minlength=G * width).reshape(G, width).astype(np.float64)
        sharing.append(N.T @ N - np.diag(N.sum(axis=0)))
    sharing.append(np.zeros((width, width)))
    a, b, s, count = [], [], [], []
    for depth in range(L + 1):
        exactly = np.triu(sharing[depth] - sharing[depth + 1])
        exactly[np.diag_indices(width)] /= 2.0  # pairs of equal lengths were counted in both orders
        i, j = np.nonzero(exactly > 0.25)
        a.append(i), b.append(j), s.append(np.full(i.size, depth)), count.append(exactly[i, j])
    return tuple(np.concatenate(x) for x in (a, b, s, count))


class _TreeModel:
    """The first pass of :func:`corr_perm_p`: the tree ranks ``F`` as a model that is cheap to relabel, plus a bound.

    ``M(x, y) = g(a) + g(b) + sum_{l <= level} [s > l] (delta_l + g_l(a) + g_l(b))`` with ``a``, ``b`` the
    path lengths of x and y and ``s`` their shared depth, fitted to ``F`` by
    least squares over all pairs.  Under a relabelling ``p`` its sum is exact
    and costs one column per group of ``level`` (a matrix product):

        sum_{i<j} A[i, j] M[p_i, p_j] = sum_i g(len p_i) r_i + sum_l sum_i (delta_l / 2 + g_l(len p_i)) y_l[i],

    ``r`` the row sums of ``A`` and ``y_l[i]`` the sum of row i of ``A`` over
    the positions whose relabelled class shares class p_i's group at level l.
    The rest, ``sum (F - M) A'``, is at most ``bound`` in absolute value
    (:func:`_rest_bound`), whatever the relabelling.  The products run in
    float32 with their worst-case rounding added to the bound.
    """

    def __init__(self, hierarchy, ranks, level, cells):
        self.level = level
        L = hierarchy.n_levels
        width = L + 1
        a, b, s, count = cells
        F = ranks.lookup[a + b - 2 * s - ranks.lo]
        one_hot = np.eye(width)
        lengths_of = one_hot[a] + one_hot[b]
        features = [lengths_of]
        for l in range(level + 1):
            deeper = (s > l)[:, None].astype(np.float64)
            features += [deeper, deeper * lengths_of]
        X = np.concatenate(features, axis=1)
        w = np.sqrt(count)
        coef = np.linalg.lstsq(X * w[:, None], F * w, rcond=None)[0]
        self.bound = _rest_bound(F - X @ coef, np.rint(count).astype(np.int64), ranks.n_pairs)[0]
        self.g = coef[:width]
        self.delta = [coef[width + l * (width + 1)] for l in range(level + 1)]
        self.g_level = [coef[width + l * (width + 1) + 1:width + (l + 1) * (width + 1)] for l in range(level + 1)]
        self.lengths = hierarchy.lengths
        self.n_classes = hierarchy.n_classes
        if level < 0:
            self.n_columns = 0
            return
        # columns: the groups at `level` with two or more classes (one matrix-product column each) and the
        # single classes there whose top-level group holds others (a row of A each)
        groups = hierarchy.level_groups(level)
        size = np.bincount(groups)
        top = hierarchy.level_groups(0)
        partnered = np.bincount(top)[top] >= 2
        wanted = (size[groups] >= 2) | partnered
        keys, first, column_of = np.unique(np.where(wanted, groups, -1), return_index=True, return_inverse=True)
        column_of = column_of.reshape(-1) - (1 if keys[0] == -1 else 0)  # -1: no column
        column_of[~wanted] = -1
        rep = first[keys >= 0]
        self.column_of = column_of
        self.dense = size[groups[rep]] >= 2
        self.dense_index = np.cumsum(self.dense) - 1
        self.single_class = np.where(self.dense, -1, rep)
        self.n_columns = rep.size
        # for every level l <= level: the level-l group (among those with two or more classes) of each column
        self.member = []
        for l in range(level + 1):
            g = hierarchy.level_groups(l)
            big = np.bincount(g) >= 2
            index = np.cumsum(big) - 1
            of_column = np.where(big[g[rep]], index[g[rep]], -1)
            P = np.zeros((rep.size, int(big.sum())))
            P[np.flatnonzero(of_column >= 0), of_column[of_column >= 0]] = 1.0
            self.member.append((P, np.where(big[g], index[g], -1)))

    def first_pass(self, A32, row_sum, abs_sum, perms, progress=None):
        """``(sums, slack)``: the model's relabelled sum for every permutation, and a bound on its rounding."""
        C = self.n_classes
        perms = np.asarray(perms)
        out = np.zeros(len(perms))
        rounding = np.zeros(len(perms))
        unit = 2.0**-24
        gamma = C * unit / (1.0 - C * unit)
        per_entry = 2.0 * unit + gamma * (1.0 + unit)  # |error| <= per_entry * sum_j |A_ij| per column entry
        n_dense = int(self.dense.sum()) if self.n_columns else 0
        batch = max(1, (32 << 20) // max(1, 4 * C * max(n_dense, 1)))
        for b0 in range(0, len(perms), batch):
            chunk = perms[b0:b0 + batch]
            if n_dense:
                column = self.column_of[chunk]
                V = np.zeros((C, len(chunk) * n_dense), dtype=np.float32)
                for b in range(len(chunk)):
                    at = np.flatnonzero(column[b] >= 0)
                    at = at[self.dense[column[b, at]]]
                    V[at, b * n_dense + self.dense_index[column[b, at]]] = 1.0
                Y_all = A32 @ V
            for b, p in enumerate(chunk):
                length = self.lengths[p]
                total = float(np.dot(self.g[length], row_sum))
                slack = 0.0
                if self.n_columns:
                    q = np.empty(C, dtype=np.int64)
                    q[p] = np.arange(C)
                    Y = np.zeros((C, self.n_columns))
                    if n_dense:
                        Y[:, self.dense] = Y_all[:, b * n_dense:(b + 1) * n_dense]
                    singles = np.flatnonzero(~self.dense)
                    if singles.size:
                        Y[:, singles] = A32[q[self.single_class[singles]]].T
                    for l, (P, group_of) in enumerate(self.member):
                        group = group_of[p]
                        at = np.flatnonzero(group >= 0)
                        y = (Y[at] @ P)[np.arange(at.size), group[at]]
                        weight = self.delta[l] / 2.0 + self.g_level[l][length[at]]
                        total += float(np.dot(weight, y))
                        slack += float(np.dot(np.abs(weight), abs_sum[at]))
                out[b0 + b] = total
                rounding[b0 + b] = per_entry * slack * (1.0 + 1e-6)
            if progress is not None:
                progress(min(b0 + batch, len(perms)), len(perms))
        return out, rounding


def _first_pass_models(hierarchy, ranks, observed):
    """The :class:`_TreeModel` passes worth running, cheapest first: those whose bound is below ``|observed|``.

    A relabelling is decided once ``|model sum - observed| > bound``; the null
    correlations lie near 0, so a bound below ``|observed|`` decides most of
    them, and each further (finer, dearer) pass runs on the rest only.
    """
    cells = _pair_cells(hierarchy)
    models = []
    for level in range(-1, hierarchy.n_levels):
        if level >= 0 and int((np.bincount(hierarchy.level_groups(level)) >= 2).sum()) > MODEL_COLUMNS:
            break
        model = _TreeModel(hierarchy, ranks, level, cells)
        if model.bound / ranks.norm < abs(observed) and (not models or model.bound < models[-1].bound):
            models.append(model)
    return models


def permuted_corr_elem(D, D_T, perms, hierarchy=None, progress=None):
    """``corr_elem`` of ``D`` against ``D_T[p][:, p]`` for every permutation ``p`` (row of ``perms``).

    Relabelling the classes only moves the pair values around, so the ranks of
    the pairs of ``D_T`` are permuted with them and their mean and spread stay
    the same: each correlation is ``sum_{i<j} A[i, j] B[p_i, p_j] / (|a| |b|)``
    with ``A``, ``B`` the centred pair ranks of ``D`` and ``D_T``.  Given the
    ``hierarchy`` whose tree distances ``D_T`` are, the sums come from block
    sums (:class:`_TreeBlocks`); without it, from one pass over the pairs per
    relabelling.  ``progress(done, total)`` is called now and then.
    """
    ranks = _PairRanks(D, D_T)
    A = ranks.square()
    ranks.a = None  # the condensed copy is no longer needed
    return _exact_dots(A, ranks, np.asarray(perms), hierarchy, progress) / ranks.norm


def _exact_dots(A, ranks, perms, hierarchy, progress):
    if hierarchy is not None and ranks.lookup is not None:
        return _TreeBlocks(hierarchy, ranks, _choose_items(hierarchy)).dots(A, perms, progress)
    B = ranks.square(tree=True)
    dots = np.zeros(len(perms))
    step = rows_per_block(ranks.n_classes, copies=2)
    for k, p in enumerate(perms):
        for r0 in range(0, ranks.n_classes, step):
            r1 = r0 + step
            dots[k] += np.vdot(A[r0:r1], B.take(p[r0:r1], axis=0).take(p, axis=1))
        if progress is not None:
            progress(k + 1, len(perms))
    return dots / 2.0  # both triangles


def corr_perm_p(D, D_T, n_perm=999, seed=0, hierarchy=None, progress=None):
    """``corr_perm_p``: permutation p-value of ``corr_elem`` against random relabellings.

    ``(1 + number of the n_perm relabellings whose corr_elem >= the observed one) / (n_perm + 1)``,
    with the relabellings of :func:`class_permutations` (same permutation on
    rows and columns of ``D_T``).  ``None`` when ``corr_elem`` is undefined.

    ``hierarchy``: the hierarchy of ``D_T``.  With it, first passes compute
    each relabelled correlation of a model of the tree ranks, with a bound on
    the rest (:class:`_TreeModel`, :func:`_first_pass_models`); only the
    relabellings they cannot place on one side of the observed value are
    computed exactly (:class:`_TreeBlocks`).
    The count is the same as with every correlation computed (a margin of
    1e-9 covers rounding).  ``progress(done, total)`` is called now and then.
    """
    return pair_correlation(D, D_T, n_perm, seed, hierarchy, progress).perm_p


@dataclass
class PairCorrelation:
    """``corr_elem``, its p-value and ``corr_perm_p`` of one distance matrix, from one ranking of its pairs."""

    r: float  # corr_elem (None: undefined)
    p: float  # corr_elem_p
    perm_p: float  # corr_perm_p (None: undefined or not computed)
    fingerprint: str  # digest of the pair ranks: equal digests, equal correlations and p-values


@dataclass
class _TestState:
    """What a permutation test leaves for the next matrix of the same classes (the angle after the chord)."""

    order: np.ndarray  # an argsort of the pairs
    a: np.ndarray  # their doubled centred ranks
    lookup: np.ndarray  # the tree side
    n_perm: int
    seed: int
    lo: np.ndarray  # bounds on every relabelling's numerator sum_{i<j} A[i, j] F[p_i, p_j]
    hi: np.ndarray


def pair_correlation(D, D_T, n_perm=999, seed=0, hierarchy=None, progress=None, known=None):
    """:func:`corr_elem` and :func:`corr_perm_p` (``n_perm = 0``: not computed) from one ranking of the pairs.

    ``known``: a dict shared by the matrices of one set of classes.  It maps
    :attr:`PairCorrelation.fingerprint` and the test's ``(n_perm, seed)`` to
    an earlier ``corr_perm_p``: a matrix whose pairs rank the same (the angle
    against the chord, say) reuses it.  With ``known["keep"]`` true it also
    keeps this test's state for the next matrix: the pairs' sort order (which
    spares sorting the next matrix's pairs when it nearly sorts them too) and
    every relabelling's bounds, which stay valid for the next matrix up to
    ``|a' - a|_1 max|F|`` (a few tie changes between chord and angle cost
    next to nothing).
    """
    if np.shape(D)[0] < 3:
        return PairCorrelation(None, None, None, "")
    previous = known.pop("state", None) if known is not None else None
    ranks = _PairRanks(D, D_T, None if previous is None else previous.order)
    digest = hashlib.blake2b(digest_size=16)
    for k0 in range(0, ranks.a.size, BLOCK_BYTES // 8):
        digest.update(ranks.a[k0:k0 + BLOCK_BYTES // 8].tobytes())
    fingerprint = digest.hexdigest()
    r = ranks.correlation()
    observed, p = _none_if_nan(r), _none_if_nan(_spearman_pvalue(r, ranks.n_pairs))
    key = (fingerprint, n_perm, seed)
    if observed is None or not n_perm:
        return PairCorrelation(observed, p, None, fingerprint)
    if known is not None and key in known:
        return PairCorrelation(observed, p, known[key], fingerprint)
    perms = class_permutations(np.shape(D)[0], n_perm, seed)
    norm = ranks.norm
    threshold = observed - 1e-12  # tolerance: equal correlations count as >=
    lo, hi = np.full(n_perm, -np.inf), np.full(n_perm, np.inf)
    if previous is not None and ranks.lookup is not None and (previous.n_perm, previous.seed) == (n_perm, seed) \
            and previous.a.size == ranks.a.size and np.array_equal(previous.lookup, ranks.lookup):
        step = BLOCK_BYTES // 8
        moved = sum(float(np.abs(ranks.a[k:k + step] - previous.a[k:k + step]).sum()) for k in range(0, ranks.a.size, step))
        slack = moved * float(np.abs(ranks.lookup).max()) * (1.0 + 1e-9)
        lo, hi = previous.lo - slack, previous.hi + slack
    previous = None
    exact = np.zeros(n_perm, dtype=bool)

    def still_open():
        return ~exact & (lo / norm - 1e-9 < threshold) & (hi / norm + 1e-9 >= threshold)

    models = []
    if hierarchy is not None and ranks.lookup is not None and still_open().any():
        models = _first_pass_models(hierarchy, ranks, observed)
    if models:
        A32, row_sum, abs_sum = ranks.square(dtype=np.float32, sums=True)
        for model in models:
            at = np.flatnonzero(still_open())
            if not at.size:
                break
            first, rounding = model.first_pass(A32, row_sum, abs_sum, perms[at], progress)
            lo[at] = np.maximum(lo[at], first - model.bound - rounding)
            hi[at] = np.minimum(hi[at], first + model.bound + rounding)
        del A32
    at = np.flatnonzero(still_open())
    if at.size:
        A = ranks.square()
        lo[at] = hi[at] = _exact_dots(A, ranks, perms[at], hierarchy, progress)
        exact[at] = True
        del A
    count = int(np.sum(exact & (lo / norm >= threshold)) + np.sum(~exact & (lo / norm - 1e-9 >= threshold)))
    perm_p = (1 + count) / (n_perm + 1)
    if known is not None:
        known[key] = perm_p
        if known.get("keep"):
            known["state"] = _TestState(ranks.order, ranks.a, ranks.lookup, n_perm, seed, lo, hi)
    return PairCorrelation(observed, p, perm_p, fingerprint)


# ------------------------------------------------------ level retrieval
def _stable_argsort_rows(d):
    """``argsort(d, axis=1, kind="stable")``: a fast sort, redone stably only for the rows holding ties."""
    order = np.argsort(d, axis=1)
    s = np.take_along_axis(d, order, axis=1)
    tied = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
    if tied.size:
        order[tied] = np.argsort(d[tied], axis=1, kind="stable")
    return order


def level_retrieval(D, groups):
    """``p1``, ``rp``, ``mapr`` of the representatives at one level.

    For each class j whose group G (``groups[j]``) has at least 2 members:
    rank the other classes by distance ``D[j]`` (ties by class index),
    R = |G| - 1; P@1 = [nearest in G]; RP = |first R in G| / R;
    MAP@R = (1/R) sum_{k<=R} [k-th in G] |first k in G| / k.  Averaged over
    such j.  Returns ``(p1, rp, mapr)``, all ``None`` when no group has two
    members.
    """
    return levels_retrieval(D, [groups])[0]


def levels_retrieval(D, level_groups, progress=None):
    """:func:`level_retrieval` at several levels at once: one neighbour order per class serves them all.

    Works on blocks of rows of ``D``; per level only the first R neighbours
    of a query are read.  Returns a list of ``(p1, rp, mapr)``;
    ``progress(done, total)`` after each block of rows.
    """
    D = np.asarray(D)
    C = D.shape[0]
    tally = _RetrievalTally(level_groups)
    step = rows_per_block(C, copies=4)
    for r0 in range(0, C, step):
        r1 = min(C, r0 + step)
        if progress is not None:
            progress(r0, C)
        if not tally.wanted_in(r0, r1):
            continue
        d = np.array(D[r0:r1], dtype=np.float64)
        d[np.arange(r1 - r0), np.arange(r0, r1)] = np.inf  # self goes last (all other distances are finite)
        tally.add(r0, r1, _stable_argsort_rows(d)[:, :C - 1])
    return tally.results()


class _RetrievalTally:
    """Sums of P@1, RP and MAP@R over the queries of every level, fed one block of neighbour orders at a time."""

    def __init__(self, level_groups):
        self.levels = [np.asarray(g) for g in level_groups]
        self.wanted = [np.bincount(g)[g] - 1 for g in self.levels]  # R of every class at every level
        self.sums = np.zeros((len(self.levels), 3))

    def wanted_in(self, r0, r1):
        return any((R[r0:r1] >= 1).any() for R in self.wanted)

    def add(self, r0, r1, order):
        """``order``: the other classes of rows r0..r1-1, nearest first (ties by class index)."""
        rows = np.arange(r0, r1)
        for level, (groups, R) in enumerate(zip(self.levels, self.wanted)):
            query = np.flatnonzero(R[r0:r1] >= 1)
            if not query.size:
                continue
            Rq = R[r0:r1][query]
            width = int(Rq.max())
            hits = groups[order[query, :width]] == groups[rows[query]][:, None]
            k = np.arange(1, width + 1)
            within = hits & (k[None, :] <= Rq[:, None])
            self.sums[level, 0] += hits[:, 0].sum()
            self.sums[level, 1] += (within.sum(axis=1) / Rq).sum()
            self.sums[level, 2] += ((within * (np.cumsum(within, axis=1) / k)).sum(axis=1) / Rq).sum()

    def results(self):
        n_query = [(R >= 1).sum() for R in self.wanted]
        return [tuple(float(v) for v in self.sums[level] / n) if n else (None, None, None)
                for level, n in enumerate(n_query)]


def row_measures(D, D_T, level_groups, progress=None):
    """:func:`corr_mean` and :func:`levels_retrieval` of a *symmetric* ``D`` from one sort of each row.

    A row's stable sort, the diagonal included, ranks its column for
    ``corr_mean`` (column i = row i) and, without the class itself, orders its
    neighbours (by distance, ties by index) for retrieval.  Returns
    ``((corr_mean, corr_mean_p), [(p1, rp, mapr) per level])``.
    """
    D = np.asarray(D)
    C = D.shape[0]
    tally = _RetrievalTally(level_groups)
    r = np.full(C, np.nan)
    step = rows_per_block(C, copies=6)
    for r0 in range(0, C, step):
        r1 = min(C, r0 + step)
        d = np.array(D[r0:r1], dtype=np.float64)
        order = _stable_argsort_rows(d)
        if C >= 3:
            r[r0:r1] = _pearson_columns(_ranks_from_order(d, order).T, rank_rows(D_T[r0:r1]).T)
        del d
        if tally.wanted_in(r0, r1):
            others = order[order != np.arange(r0, r1)[:, None]].reshape(r1 - r0, C - 1)
            tally.add(r0, r1, others)
        if progress is not None:
            progress(r1, C)
    mean = _combine_columns(r, _spearman_pvalue(r, C)) if C >= 3 else (None, None)
    return mean, tally.results()
