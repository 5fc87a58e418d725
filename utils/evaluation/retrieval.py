"""Hierarchy-informed retrieval: ``hs@k`` and ``ahs250`` (docs/evaluate.md).

The test embeddings are queries and database at once; the query itself is
excluded, neighbours are ranked by cosine similarity (ties by lower index),
and each neighbour scores the class similarity of its class to the query's
class (:func:`utils.hierarchy.class_similarity`).

Nothing of size N x N is ever sorted or held: the similarities are computed
one block of queries at a time and reduced to the top ``k_max`` neighbours
with an exact O(N) selection (:func:`utils.evaluation.classification.topk`); the
ideal sums come from the class counts alone.  Memory is O(N k_max) plus one
block per worker thread.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.evaluation.classification import topk

HS_REPORTED = (1, 50, 100, 150, 200, 250)
HS_K_MAX = 250


def ideal_similarity_sums(labels, sim, k_max):
    """``[C, k_max]``: for a query of class y, the largest sum of class similarities any k other images give.

    The best k other images are those of the most similar classes first, so the
    sum follows from the class counts (the query's own image removed from its
    class): sort the classes of each row of ``sim`` by similarity, accumulate
    their counts, and look up which class the k-th best image belongs to.
    Entry ``[y, k - 1]`` is the sum for k.  Requires ``k_max <= N - 1``.
    """
    labels = np.asarray(labels)
    sim = np.asarray(sim, dtype=np.float64)
    C = sim.shape[0]
    counts = np.bincount(labels, minlength=C)
    others = np.tile(counts, (C, 1)) - np.eye(C, dtype=counts.dtype)  # row y: counts without the query
    others = np.maximum(others, 0)
    order = np.argsort(-sim, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(others, order, axis=1), axis=1)  # non-decreasing per row
    # one searchsorted for all rows: shift row y by y * (N + 1) so the rows stay sorted
    shift = (np.arange(C) * (labels.size + 1))[:, None]
    ks = np.arange(1, k_max + 1)[None, :]
    pos = np.searchsorted((cum + shift).ravel(), (ks + shift).ravel(), side="left").reshape(C, k_max)
    pos -= np.arange(C)[:, None] * C
    item = np.take_along_axis(np.take_along_axis(sim, order, axis=1), pos, axis=1)
    return np.cumsum(item, axis=1)


MIN_BLOCK_ROWS = 256  # thin blocks re-read all N embeddings per few queries: keep at least this many rows
MAX_BLOCK_BYTES = 256 << 20  # ... unless a block of that many rows would exceed this


def _block_size(n, block_bytes):
    """Query rows per block: ``block_bytes`` of float32 similarities, but at least
    ``MIN_BLOCK_ROWS`` rows while those stay under ``MAX_BLOCK_BYTES``."""
    n = max(n, 1)
    rows = max(block_bytes // (4 * n), min(MIN_BLOCK_ROWS, MAX_BLOCK_BYTES // (4 * n)))
    return int(max(1, min(n, rows)))


def default_workers():
    """Threads for hs@k blocks: the CPU count, at most 8 (numpy's partition and BLAS release the GIL)."""
    return max(1, min(8, os.cpu_count() or 1))


def hs_curve(embeddings, labels, sim, k_max=HS_K_MAX, block_bytes=16 << 20, workers=None):
    """``hs@k`` for k = 1 .. min(k_max, N - 1): array whose entry k - 1 is ``hs@k``.

    For each query: the sum of class similarities ``sim[y_query, y_neighbour]``
    of its k nearest neighbours (cosine similarity, query excluded, ties by
    lower index), divided by the largest sum any k other test images could
    give (:func:`ideal_similarity_sums`); averaged over queries.
    ``block_bytes`` bounds the float32 similarity block of one chunk of
    queries (small blocks stay in cache); ``workers`` threads handle blocks
    side by side, so peak memory is about ``workers * block_bytes`` plus
    O(N k_max).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    n = x.shape[0]
    k = min(int(k_max), n - 1)
    if k < 1:
        return np.empty(0)
    sim = np.asarray(sim, dtype=np.float64)
    ideal = ideal_similarity_sums(labels, sim, k)
    step = _block_size(n, block_bytes)

    def block(start):
        stop = min(n, start + step)
        sims = x[start:stop] @ x.T  # cosine similarity of normalised rows
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # exclude the query itself
        neighbours = topk(sims, k)
        q = labels[start:stop]
        gains = sim[q[:, None], labels[neighbours]]
        return (np.cumsum(gains, axis=1) / ideal[q]).sum(axis=0)

    starts = range(0, n, step)
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(starts) == 1:
        total = sum(block(s) for s in starts)
    else:
        with ThreadPoolExecutor(workers) as pool:
            total = sum(pool.map(block, starts))
    return total / n


def ahs(curve, k_max=HS_K_MAX):
    """``ahs250``: trapezoid area under hs@1..hs@k_max with step 1/(k_max - 1); ``None`` if the curve is shorter."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size < k_max or k_max < 2:
        return None
    h = curve[:k_max]
    return float((h.sum() - 0.5 * (h[0] + h[-1])) / (k_max - 1))
