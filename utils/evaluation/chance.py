"""Chance levels of the measures, and the measures a tree makes trivial (docs/evaluate.md, "Chance levels").

A measure means something only beside what a model that knows nothing of the
hierarchy would score.  Here, for the representatives (W or prototypes) of one
run:

* ``corr_mean_chance`` / ``corr_mean_chance95``: the mean and the 95th
  percentile of ``corr_mean`` under ``N_CHANCE`` random relabellings of the
  classes (the same permutation on the rows and columns of ``d_T``), and
  ``corr_mean_perm_p``, its permutation p-value (:func:`corr_mean_null`);
* ``mapr_chance_<level>``: the expected ``mapr_<level>`` under a random
  relabelling, exactly, from the group sizes alone (:func:`mapr_chance`);
* ``rf_norm_chance`` / ``rf_taxonomy_chance``: the mean normalised
  Robinson-Foulds distance of the WPGMA trees of ``N_RF_CHANCE`` randomly
  relabelled representatives to the reference trees (:func:`rf_chance`);
* ``hs_chance@k``: the expected ``hs@k`` of random embeddings, exactly, from the
  class counts alone (:func:`hs_chance_curve`).

And the measures that say nothing for a given tree (:func:`hp_trivial`,
:func:`hs_trivial`): they are reported as null with a reason.

Relabelling a class never changes a rank within a column or a tree's shape,
only which class sits where: the ranks and the tree's clusters are computed
once, and each relabelling permutes them (O(C^2) per relabelling, in float32
and in chunks of columns).
"""
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from utils.evaluation.classification import hp_radius
from utils.evaluation.representation import class_permutations, fisher_mean, rank_rows
from utils.evaluation.retrieval import default_workers, ideal_similarity_sums

N_CHANCE = 99  # relabellings for the null of corr_mean: enough for its mean and 95th percentile
N_RF_CHANCE = 30  # relabellings (trees) for the mean normalised RF of random relabellings
HS_TRIVIAL = 0.95  # hs@k is null where random embeddings are expected to reach this
CHUNK_ENTRIES = 1 << 24  # float32 entries per chunk of columns (64 MiB)
NULL_REASON = "_null_reason"  # metrics.json: "<measure>_null_reason" says why "<measure>_*" is null


# ------------------------------------------------------------------ corr_mean under relabelling
def column_ranks(M, chunk_entries=CHUNK_ENTRIES):
    """``[C, C]`` float32: row i = the ranks of column i of ``M`` (ties averaged), centred, scaled to unit length.

    The Spearman correlation of column i of two matrices is then the dot
    product of their rows i.  A column without spread gives a row of zeros
    (its correlation is undefined: see :func:`corr_mean_null`).  Ranked in
    chunks of columns (:func:`utils.evaluation.representation.rank_rows`).
    """
    M = np.asarray(M)
    C = M.shape[0]
    out = np.empty((C, C), dtype=np.float32)
    step = max(1, int(chunk_entries) // max(C, 1))
    for start in range(0, C, step):
        ranks = rank_rows(np.ascontiguousarray(M[:, start : start + step].T))
        ranks -= ranks.mean(axis=1, keepdims=True)
        norm = np.sqrt((ranks * ranks).sum(axis=1, keepdims=True))
        out[start : start + step] = np.divide(ranks, norm, out=np.zeros_like(ranks), where=norm > 1e-9)
    return out


def _row_digests(A):
    """One digest per row of ``A``: rows with equal digests are equal (a 128-bit hash)."""
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in A]


def corr_mean_null(D, tree_ranks, perms, chunk_entries=CHUNK_ENTRIES, progress=None, workers=None, cache=None,
                   tree_key=None):
    """``corr_mean`` of ``D`` against ``d_T`` relabelled by each row ``p`` of ``perms`` (``d_T[p][:, p]``).

    ``tree_ranks``: :func:`column_ranks` of ``d_T``.  Column i of the
    relabelled ``d_T`` is column ``p_i`` with its rows permuted by ``p``, and
    a rank within a column does not change when its rows are permuted; so the
    correlation of column i is ``sum_k A[i, k] B[p_i, p_k]`` with ``A``, ``B``
    the column ranks of ``D`` and ``d_T``: one gather of a chunk of rows of
    ``B`` per chunk of columns, float32.  The per-class correlations are
    combined as ``corr_mean`` does (:func:`utils.evaluation.representation.fisher_mean`).
    Row 0 of ``perms`` being the identity gives ``corr_mean`` itself.

    ``workers`` threads (default: :func:`utils.evaluation.retrieval.default_workers`)
    take relabellings side by side, each with its own chunk buffers (numpy's
    gathers and sums release the GIL).  ``cache``: a dict that keeps every
    relabelling's per-class correlations; a later call with the same
    ``tree_key`` (an object that stands for ``d_T``; default ``tree_ranks``
    itself) and ``perms`` (the angle after the chord) recomputes only
    the classes whose column ranks differ, usually none or a few.  A class's
    correlation is computed the same way whatever the thread or the rows
    beside it, so neither changes a value.  ``progress(done, total)`` as
    relabellings finish.
    """
    A = column_ranks(D, chunk_entries)
    B = np.asarray(tree_ranks, dtype=np.float32)
    perms = np.asarray(perms)
    C = A.shape[0]
    defined = np.any(A != 0, axis=1), np.any(B != 0, axis=1)
    digests = _row_digests(A)
    earlier = None if cache is None else cache.get("corr_mean_null")
    tree_key = tree_ranks if tree_key is None else tree_key
    if earlier is not None and earlier["tree"] is tree_key and np.array_equal(earlier["perms"], perms):
        R = earlier["R"].copy()
        todo = np.array([i for i in range(C) if digests[i] != earlier["digests"][i]], dtype=np.int64)
    else:
        R = np.empty((len(perms), C))
        todo = np.arange(C)
    step = max(1, int(chunk_entries) // max(C, 1))
    local = threading.local()

    def relabelled(n):
        if not hasattr(local, "picked"):  # this thread's buffers, reused for all its relabellings
            local.picked, local.rows = np.empty((step, C), np.float32), np.empty((step, C), np.float32)
        p = perms[n]
        for start in range(0, todo.size, step):
            at = todo[start:start + step]
            m = at.size
            B.take(p[at], axis=0, out=local.picked[:m])
            local.picked[:m].take(p, axis=1, out=local.rows[:m])  # B[p_i, p_k] for the classes i of the chunk
            R[n, at] = np.einsum("ik,ik->i", A[at], local.rows[:m])

    workers = min(default_workers() if workers is None else max(1, int(workers)), len(perms))
    if todo.size and workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            for done, future in enumerate(as_completed([pool.submit(relabelled, n) for n in range(len(perms))]), 1):
                future.result()
                if progress is not None:
                    progress(done, len(perms))
    else:
        for n in range(len(perms)):
            if todo.size:
                relabelled(n)
            if progress is not None:
                progress(n + 1, len(perms))
    if cache is not None:
        cache["corr_mean_null"] = {"tree": tree_key, "perms": perms, "digests": digests, "R": R,
                                   "recomputed": int(todo.size)}
    return np.array([fisher_mean(np.where(defined[0] & defined[1][p], r, np.nan)) for p, r in zip(perms, R)])


def corr_mean_chance(D, tree_ranks, n_perm=N_CHANCE, seed=0, progress=None, cache=None, tree_key=None):
    """``corr_mean_chance`` (mean of the null), ``corr_mean_chance95`` (its 95th percentile), ``corr_mean_perm_p``.

    The null: :func:`corr_mean_null` over ``n_perm`` relabellings of
    :func:`utils.evaluation.representation.class_permutations`; the p-value is
    ``(1 + number at or above the observed corr_mean) / (n_perm + 1)``, the
    observed value computed the same way (the identity relabelling), so both
    sides of the comparison have the same rounding.  All None when
    ``corr_mean`` is undefined or ``n_perm`` is 0.  ``cache``, ``tree_key``: see :func:`corr_mean_null`.
    """
    C = np.shape(D)[0]
    empty = {"corr_mean_chance": None, "corr_mean_chance95": None, "corr_mean_perm_p": None}
    if n_perm < 1 or C < 3:
        return empty
    perms = np.concatenate([np.arange(C)[None], class_permutations(C, n_perm, seed)])
    values = corr_mean_null(D, tree_ranks, perms, progress=progress, cache=cache, tree_key=tree_key)
    observed, null = values[0], values[1:]
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or not null.size:
        return empty
    return {
        "corr_mean_chance": float(null.mean()),
        "corr_mean_chance95": float(np.percentile(null, 95)),
        "corr_mean_perm_p": (1 + int(np.sum(null >= observed - 1e-6))) / (n_perm + 1),
    }


# ------------------------------------------------------------------ MAP@R under relabelling
def expected_map_at_r(R, N):
    """Expected MAP@R when the R relevant items sit at a uniformly random R-subset of N ranked positions.

    ``E[[k-th relevant] * |relevant in the first k|] = (R/N) (1 + (k-1)(R-1)/(N-1))``,
    so ``E[MAP@R] = (H_R + (R-1)/(N-1) (R - H_R)) / N`` with ``H_R`` the R-th
    harmonic number (1/N for R = 1, 1 for R = N).  Vectorised over ``R``.
    """
    R = np.asarray(R, dtype=np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(R.max(initial=0)) + 1))])
    H = harmonic[R.astype(np.int64)]
    slope = np.divide(R - 1, N - 1, out=np.zeros_like(R), where=N > 1)
    return (H + slope * (R - H)) / N


def mapr_chance(groups):
    """Expected ``mapr`` of one level under a random relabelling of the classes, from the group sizes (exact).

    A relabelling puts the other members of a query's group at a uniformly
    random subset of the C - 1 ranked classes, whatever the distances; each
    class of a group G with ``|G| >= 2`` is a query with R = |G| - 1
    (:func:`expected_map_at_r`), averaged over those classes as
    :func:`utils.evaluation.representation.level_retrieval` does.  None when
    no group has 2 members.
    """
    sizes = np.bincount(np.asarray(groups))
    sizes = sizes[sizes >= 2]
    if not sizes.size:
        return None
    N = int(np.sum(np.bincount(np.asarray(groups)))) - 1
    return float(np.sum(sizes * expected_map_at_r(sizes - 1, N)) / sizes.sum())


def level_chance(hierarchy):
    """``mapr_chance_<level>`` for every level (no suffix: it depends on the tree only)."""
    return {f"mapr_chance_{level}": mapr_chance(hierarchy.level_groups(level)) for level in range(hierarchy.n_levels)}


# ------------------------------------------------------------------ RF under relabelling
def leaf_hashes(n_leaves, seed=0):
    """Random 64-bit keys of the leaves; a set of leaves is keyed by the XOR of its leaves' keys."""
    return np.random.default_rng(seed).integers(0, np.iinfo(np.uint64).max, size=n_leaves, dtype=np.uint64,
                                                endpoint=True)


def _canonical(keys, total):
    """An unrooted split {S, rest} keyed the same from either side: the smaller of the two sides' keys."""
    return np.minimum(keys, total ^ keys)


def linkage_split_keys(Z, keys):
    """Keys of the non-trivial splits of a linkage tree whose leaves have the keys ``keys`` ([C] or [C, P]).

    A cluster's key is the XOR of its two children's (one pass over the
    merges, vectorised over the P columns of ``keys``).  Returns the
    ``[K, P]`` canonical keys (:func:`_canonical`) of the clusters with 2 to
    C - 2 leaves.
    """
    Z = np.asarray(Z)
    n = Z.shape[0] + 1
    keys = np.asarray(keys, dtype=np.uint64)
    h = np.empty((2 * n - 1,) + keys.shape[1:], dtype=np.uint64)
    h[:n] = keys
    for step, (a, b) in enumerate(Z[:, :2].astype(np.int64)):
        h[n + step] = h[a] ^ h[b]
    size = Z[:, 3]
    return _canonical(h[n:][(size >= 2) & (size <= n - 2)], h[-1])


def taxonomy_split_keys(hierarchy, keys):
    """Keys of the non-trivial splits of the taxonomy's own tree (every level's groups), ``keys``: [C]."""
    keys = np.asarray(keys, dtype=np.uint64)
    n = keys.size
    total = np.bitwise_xor.reduce(keys)
    out = []
    for level in range(hierarchy.n_levels):
        groups = hierarchy.level_groups(level)
        k = np.zeros(int(groups.max()) + 1, dtype=np.uint64)
        np.bitwise_xor.at(k, groups, keys)
        size = np.bincount(groups)
        out.append(k[(size >= 2) & (size <= n - 2)])
    return _canonical(np.concatenate(out), total)


def _rf_norm(learned, reference):
    """Normalised Robinson-Foulds distance of two sets of split keys (as :func:`utils.trees.robinson_foulds`)."""
    a, b = np.unique(learned), np.unique(reference)
    both = a.size + b.size
    if not both:
        return None
    return (both - 2 * np.intersect1d(a, b, assume_unique=True).size) / both


def rf_chance(Z, Z_true, hierarchy, n_perm=N_RF_CHANCE, seed=0):
    """``rf_norm_chance`` and ``rf_taxonomy_chance``: the mean normalised RF of randomly relabelled trees.

    Relabelling the representatives (row i takes the vector of class
    ``p_i``) relabels the leaves of their WPGMA tree ``Z`` (exact for
    distances without ties): a cluster S becomes ``{i : p_i in S}``.  Each
    split is keyed by the XOR of random 64-bit leaf keys (:func:`leaf_hashes`),
    so a relabelled tree costs one pass over its merges with the leaf keys
    permuted, all ``n_perm`` relabellings at once, and its RF to the WPGMA
    tree of ``d_T`` (``Z_true``) and to the taxonomy is a comparison of
    sorted keys.  (Two different splits share a key with probability about
    2^-64 per pair.)  Both None when ``n_perm`` is 0 or the tree has under 4
    leaves.
    """
    Z = np.asarray(Z)
    C = Z.shape[0] + 1
    if n_perm < 1 or C < 4:
        return {"rf_norm_chance": None, "rf_taxonomy_chance": None}
    keys = leaf_hashes(C, seed)
    references = {"rf_norm_chance": linkage_split_keys(Z_true, keys),
                  "rf_taxonomy_chance": taxonomy_split_keys(hierarchy, keys)}
    inverse = np.argsort(class_permutations(C, n_perm, seed), axis=1)  # leaf m of Z becomes leaf inverse[m]
    learned = linkage_split_keys(Z, keys[inverse.T])
    out = {}
    for name, reference in references.items():
        values = [_rf_norm(learned[:, j], reference) for j in range(n_perm)]
        values = [v for v in values if v is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


# ------------------------------------------------------------------ hs@k of random embeddings
def hs_chance_curve(labels, sim, k_max):
    """Expected ``hs@k`` of random embeddings, k = 1 .. min(k_max, N - 1), from the class counts alone (exact).

    With embeddings that carry no information (independent and identically
    distributed), a query's k nearest neighbours are a uniformly random
    k-subset of the other N - 1 test images, so the expected sum of their
    class similarities is ``k S_y / (N - 1)``, where ``S_y = sum_c n_c
    sim[y, c] - sim[y, y]`` sums over the other images.  The ideal sum
    (:func:`utils.evaluation.retrieval.ideal_similarity_sums`) does not depend
    on the embedding, so the expected ratio is exact; averaged over queries.
    """
    labels = np.asarray(labels, dtype=np.int64)
    sim = np.asarray(sim, dtype=np.float64)
    n = labels.size
    k = min(int(k_max), n - 1)
    if k < 1:
        return np.empty(0)
    counts = np.bincount(labels, minlength=sim.shape[0]).astype(np.float64)
    present = np.flatnonzero(counts)
    ideal = ideal_similarity_sums(labels, sim, k)[present]
    others = sim[present] @ counts - sim[present, present]
    expected = np.arange(1, k + 1)[None, :] * (others / (n - 1))[:, None]
    return (counts[present, None] * expected / ideal).sum(axis=0) / n


# ------------------------------------------------------------------ trivial measures
def hp_trivial(labels, D_T, k):
    """Why ``hp<k>`` says nothing for this tree and test set, or None.

    Its correct set (the classes within :func:`utils.evaluation.classification.hp_radius`
    of the label) holds every class for every test label when the tree is
    small or shallow (8 classes in 3 levels, 10 in 2): then ``hp`` = 1 for
    any model.
    """
    D_T = np.asarray(D_T)
    present = np.unique(np.asarray(labels))
    if not present.size:
        return None
    radius = hp_radius(D_T, k)[present]
    if np.all(D_T[present] <= radius[:, None]):
        return (f"the hp{k} radius (the tree distance of the label's {k + 1}-th nearest class) covers all "
                f"{D_T.shape[0]} classes for every test label, so hp{k} = 1 for any model")
    return None


def hs_trivial(chance_value, k, n_test):
    """Why ``hs@k`` (or ``ahs250``) says nothing here, or None: random embeddings reach ``HS_TRIVIAL`` or more."""
    if chance_value is None or chance_value < HS_TRIVIAL:
        return None
    end = f"k = {k} of N - 1 = {n_test - 1} other test images" if k is not None else f"N - 1 = {n_test - 1}"
    return (f"random embeddings are expected to score {chance_value:.3f} ({end}): as k approaches N - 1 "
            "every test image becomes a neighbour and hs@k goes to 1 for any embedding")
