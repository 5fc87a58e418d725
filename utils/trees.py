"""Class trees: WPGMA / UPGMA clustering, bipartitions, Robinson-Foulds, Newick (docs/evaluate.md).

Agglomerative clustering is written here rather than taken from
``scipy.cluster.hierarchy.linkage`` for two reasons: the tie-breaking must be
documented and deterministic (the tree of the integer tree distances ``D_T`` is
full of ties, and scipy's nearest-neighbour-chain algorithm resolves them in
an order it does not document), and the tests can then cross-check this code
against scipy's ``weighted`` (WPGMA) and ``average`` (UPGMA) linkage as an
independent implementation.  The output is a linkage matrix in scipy's format,
so scipy's ``dendrogram`` draws it.

Tie rule (the paper's tree builder, faithful): the current clusters sit in a
list of positions, initially the class order.  Each step scans the pairs
``i = 1..m-1``, ``j = 0..i-1`` in that order and merges the *last* pair whose
distance equals the minimum; the merged cluster takes position ``j`` and
position ``i`` is deleted (later positions shift down by one).  The same rule
serves WPGMA and UPGMA.  It matters for the tree of the integer distances
``d_T``, which is full of ties; real-valued distances essentially never tie.

A tree is compared as unrooted: each cluster S of the rooted tree gives the
bipartition {S, rest}; it is non-trivial when both sides have at least two
leaves.  A bipartition is stored as the packed bit-set of the side that does
not hold leaf 0, so equal splits have equal keys.
"""
import numpy as np

METHODS = {"wpgma": "weighted", "upgma": "average"}
NEWICK_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-")


def agglomerate(D, method="wpgma", progress=None):
    """WPGMA or UPGMA clustering of a symmetric distance matrix: an ``[C - 1, 4]`` linkage matrix.

    Row s merges clusters ``Z[s, 0] < Z[s, 1]`` (leaves are 0..C-1, the cluster
    made at step s is C + s) at distance ``Z[s, 2]``; ``Z[s, 3]`` is its size.
    After merging i and j, the distance to another cluster k is
    ``(d(i,k) + d(j,k)) / 2`` (WPGMA, faithful: the merged clusters weigh the
    same) or ``(n_i d(i,k) + n_j d(j,k)) / (n_i + n_j)`` (UPGMA: every leaf
    weighs the same).  Only the pairs below the diagonal are read.

    ``progress``, if given, is called as ``progress(merges_done, C - 1)`` every
    few hundred merges.

    Cost: O(C^2) time in practice and one C x C float64 working copy.  Each slot
    keeps its nearest *earlier* slot (the minimum of its row left of the
    diagonal, and the last column holding it), so a merge costs a few passes
    over vectors of length C plus a rescan of the few rows whose nearest slot
    was retired or moved away, instead of a scan of the whole matrix.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    work = _symmetric_work(D)
    n = work.shape[0]
    Z = np.zeros((max(n - 1, 0), 4))
    if n < 2:
        return Z
    # Clusters live in slots; a merge keeps the lower slot and retires the higher one, so the active
    # slots in ascending order are exactly the paper's list of positions (compaction keeps that order).
    # The diagonal holds +inf; retired slots are masked by `active` (their stale values are never used,
    # and the arithmetic of the active ones is that of the full scan).  The last pair (i, j), j < i, of the paper's scan at
    # the minimum: i = the last slot whose nearest earlier slot is at the minimum distance (a tied
    # pair lies in the row of its larger slot), j = that nearest earlier slot (the last column of row
    # i left of the diagonal at the minimum).
    near, near_at = _nearest_earlier(work)
    active = np.ones(n, dtype=bool)
    ids = np.arange(n)
    sizes = np.ones(n)
    for step in range(n - 1):
        m = work.shape[0]
        i = m - 1 - int(np.argmin(near[::-1]))
        j = int(near_at[i])
        height = near[i]
        if method == "wpgma":
            merged = (work[i] + work[j]) / 2.0
        else:
            merged = (sizes[i] * work[i] + sizes[j] * work[j]) / (sizes[i] + sizes[j])
        merged[i] = merged[j] = np.inf
        work[j, :] = merged
        work[:, j] = merged  # slot i is retired by `active` alone: its row and column are never read again
        a, b = sorted((ids[i], ids[j]))
        sizes[j] += sizes[i]
        Z[step] = (a, b, height, sizes[j])
        ids[j] = n + step
        active[i] = False
        near[i], near_at[i] = np.inf, -1
        near[j], near_at[j] = _row_nearest(np.where(active[:j], merged[:j], np.inf))  # j's earlier pairs changed
        # Later slots: their pair with j changed and their pair with i is gone.  A row keeps its nearest
        # slot unless the new distance to j is smaller (then j), equal (then the later of the two
        # columns), or its nearest slot was i, or j moved away: then the row is scanned again.
        v = merged[j + 1:]
        cur = near[j + 1:]
        at = near_at[j + 1:]
        better = (v < cur) & active[j + 1:]
        rescan = (((at == i) & ~better) | ((at == j) & (v > cur))) & active[j + 1:]
        near_at[j + 1:] = np.where(better, j, np.where(v == cur, np.maximum(at, j), at))
        near[j + 1:] = np.where(better, v, cur)
        for row in np.flatnonzero(rescan) + (j + 1):
            near[row], near_at[row] = _row_nearest(np.where(active[:row], work[row, :row], np.inf))
        if progress is not None and (step + 1) % 512 == 0:
            progress(step + 1, n - 1)
        if m > 256 and 2 * (n - 1 - step) <= m:
            work, near, near_at, active, ids, sizes = _compact(work, near, near_at, active, ids, sizes)
    if progress is not None:
        progress(n - 1, n - 1)
    return Z


def _symmetric_work(D):
    """A float64 copy of ``D`` with the upper triangle mirrored from the lower one and +inf on the diagonal."""
    work = np.array(D, dtype=np.float64)
    if work.ndim != 2 or work.shape[0] != work.shape[1]:
        raise ValueError(f"a distance matrix must be square, got shape {work.shape}")
    n = work.shape[0]
    rows = max(1, (1 << 21) // max(n, 1))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        work[r0:r1, r1:] = work[r1:, r0:r1].T
        square = work[r0:r1, r0:r1]
        upper = np.triu_indices(r1 - r0, 1)
        square[upper] = square.T[upper]
    np.fill_diagonal(work, np.inf)
    return work


def _row_nearest(row):
    """``(minimum, last position of the minimum)`` of a row; ``(inf, -1)`` when it holds no finite value."""
    if row.size == 0:
        return np.inf, -1
    at = row.size - 1 - int(np.argmin(row[::-1]))
    value = row[at]
    return (value, at) if np.isfinite(value) else (np.inf, -1)


def _nearest_earlier(work):
    """For every row a of a symmetric matrix: the minimum of ``work[a, :a]`` and its last column (-1: none)."""
    n = work.shape[0]
    near = np.full(n, np.inf)
    near_at = np.full(n, -1, dtype=np.int64)
    rows = max(1, (1 << 21) // max(n, 1))
    for r0 in range(1, n, rows):
        r1 = min(n, r0 + rows)
        block = work[r0:r1, :r1].copy()
        block[np.arange(r1)[None, :] >= np.arange(r0, r1)[:, None]] = np.inf
        at = r1 - 1 - np.argmin(block[:, ::-1], axis=1)
        value = block[np.arange(r1 - r0), at]
        finite = np.isfinite(value)
        near[r0:r1] = np.where(finite, value, np.inf)
        near_at[r0:r1] = np.where(finite, at, -1)
    return near, near_at


def _compact(work, near, near_at, active, ids, sizes):
    """Drop the retired slots (keeping the order of the others); nearest-slot positions renumbered."""
    keep = np.flatnonzero(active)
    position = np.full(work.shape[0], -1, dtype=np.int64)
    position[keep] = np.arange(keep.size)
    at = near_at[keep]
    at = np.where(at >= 0, position[np.maximum(at, 0)], -1)
    return work[np.ix_(keep, keep)], near[keep], at, active[keep], ids[keep], sizes[keep]


def linkage_clusters(Z):
    """Leaf sets of the internal nodes: ``[C - 1, C]`` booleans, row s = the cluster made at step s."""
    Z = np.asarray(Z)
    n = Z.shape[0] + 1
    members = np.zeros((n - 1, n), dtype=bool)
    for step, (a, b) in enumerate(Z[:, :2].astype(np.int64)):
        for child in (a, b):
            if child < n:
                members[step, child] = True
            else:
                members[step] |= members[child - n]
    return members


def taxonomy_clusters(hierarchy):
    """Leaf sets of every node of the taxonomy (one row per level group, duplicates kept).

    The taxonomy is multifurcating; every class is a leaf, also a class that is
    an ancestor of another (it sits in the clusters of its own node and above).
    """
    rows = []
    for level in range(hierarchy.n_levels):
        groups = hierarchy.level_groups(level)
        rows.append(np.arange(groups.max() + 1)[:, None] == groups[None, :])
    return np.concatenate(rows, axis=0)


def taxonomy_splits(hierarchy, chunk=1 << 24):
    """The non-trivial bipartitions of the taxonomy (as ``bipartitions(taxonomy_clusters(hierarchy))``).

    Only the groups with between 2 and C - 2 classes are expanded, a chunk of
    groups at a time, so deep taxonomies of 20,000 classes stay small.
    """
    n = hierarchy.n_classes
    out = set()
    for level in range(hierarchy.n_levels):
        groups = hierarchy.level_groups(level)
        size = np.bincount(groups)
        wanted = np.flatnonzero((size >= 2) & (size <= n - 2))
        step = max(1, chunk // max(n, 1))
        for g0 in range(0, wanted.size, step):
            rows = wanted[g0:g0 + step][:, None] == groups[None, :]
            out |= _packed_splits(np.packbits(rows, axis=1), size[wanted[g0:g0 + step]], n)
    return out


def bipartitions(clusters):
    """The set of non-trivial bipartitions (unrooted) given by a boolean ``[K, C]`` matrix of clusters."""
    clusters = np.asarray(clusters, dtype=bool)
    n = clusters.shape[1]
    size = clusters.sum(axis=1)
    keep = clusters[(size >= 2) & (size <= n - 2)]
    keep = np.where(keep[:, :1], ~keep, keep)  # the side without leaf 0
    return {row.tobytes() for row in np.packbits(keep, axis=1)}


def _packed_splits(packed, size, n):
    """Bipartition keys from packed cluster rows (``np.packbits`` order) and their sizes: as :func:`bipartitions`."""
    keep = packed[(size >= 2) & (size <= n - 2)]
    everything = np.packbits(np.ones(n, dtype=bool))
    keep = np.where(keep[:, :1] >= 128, keep ^ everything, keep)  # bit 7 of byte 0 is leaf 0
    return {row.tobytes() for row in keep}


def linkage_splits(Z):
    """The non-trivial bipartitions of a linkage tree (as ``bipartitions(linkage_clusters(Z))``).

    Built on packed bit rows (C/8 bytes per cluster), so 20,000 leaves take tens of megabytes.
    """
    Z = np.asarray(Z)
    n = Z.shape[0] + 1
    if n < 2:
        return set()
    width = (n + 7) // 8
    packed = np.zeros((n - 1, width), dtype=np.uint8)
    leaf_byte = np.arange(n) // 8
    leaf_bit = (128 >> (np.arange(n) % 8)).astype(np.uint8)
    for step, (a, b) in enumerate(Z[:, :2].astype(np.int64)):
        row = packed[step]
        for child in (a, b):
            if child < n:
                row[leaf_byte[child]] |= leaf_bit[child]
            else:
                row |= packed[child - n]
    return _packed_splits(packed, Z[:, 3].astype(np.int64), n)


def split_sides(splits, n_leaves):
    """Decode bipartition keys into frozensets of leaf indices (the side without leaf 0)."""
    out = set()
    for key in splits:
        bits = np.unpackbits(np.frombuffer(key, dtype=np.uint8))[:n_leaves]
        out.add(frozenset(np.flatnonzero(bits).tolist()))
    return out


def robinson_foulds(splits_a, splits_b):
    """``(rf, rf_max, rf_norm)``: symmetric difference of two sets of non-trivial bipartitions.

    ``rf_max`` = the number of non-trivial bipartitions of both trees together
    (2(C - 3) for two binary trees); ``rf_norm = rf / rf_max`` (``None`` when 0).
    """
    rf = len(splits_a ^ splits_b)
    rf_max = len(splits_a) + len(splits_b)
    return rf, rf_max, (rf / rf_max if rf_max else None)


def tree_splits(D, method="wpgma", progress=None):
    """Non-trivial bipartitions of the WPGMA/UPGMA tree of ``D`` (with the linkage matrix)."""
    Z = agglomerate(D, method, progress)
    return linkage_splits(Z), Z


def first_level_with_groups(hierarchy, at_least):
    """The first level whose number of groups is at least ``at_least``; ``None`` when no level has that many.

    A level with a single group (every class in it, e.g. NABirds level 0,
    ``Birds``) is trivial: the headline retrieval level is the first level
    with at least 2 groups, the tree plots colour leaves by the first level
    with at least 3.
    """
    for level in range(hierarchy.n_levels):
        if hierarchy.n_groups(level) >= at_least:
            return level
    return None


# ------------------------------------------------------------------ Newick
def newick_label(name):
    """A Newick label: kept as it is when plain, else single-quoted with inner quotes doubled.

    Underscores are quoted too, since Newick readers turn bare ``_`` into spaces.
    """
    name = str(name)
    if name and set(name) <= NEWICK_SAFE:
        return name
    return "'" + name.replace("'", "''") + "'"


def leaf_labels(names):
    """Class names made unique for trees (a repeated name gets ``#<index>``)."""
    names = [str(n) for n in names]
    seen = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [n if seen[n] == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def _length(value):
    return f"{max(float(value), 0.0):.6g}"


def linkage_newick(Z, names):
    """Newick text of a linkage tree; branch lengths are half the differences of merge distances."""
    Z = np.asarray(Z)
    names = leaf_labels(names)
    n = len(names)
    if n == 1:
        return newick_label(names[0]) + ";\n"
    text = [newick_label(x) for x in names] + [None] * (n - 1)
    height = np.zeros(2 * n - 1)
    for step, (a, b, dist, _) in enumerate(Z):
        a, b = int(a), int(b)
        node = n + step
        height[node] = dist / 2.0
        text[node] = (
            f"({text[a]}:{_length(height[node] - height[a])},{text[b]}:{_length(height[node] - height[b])})"
        )
        text[a] = text[b] = None  # free memory as we go
    return text[-1] + ";\n"


def taxonomy_newick(hierarchy):
    """Newick text of the taxonomy itself (multifurcating, every edge of length 1).

    Internal nodes carry their node name.  A class that is an ancestor of
    other classes is a leaf hanging at length 0 from its own node, so the
    distances in the tree are exactly ``d_T``.
    """
    labels = leaf_labels(hierarchy.names)
    root = {"children": {}, "classes": []}
    for cls, path in enumerate(hierarchy.paths):
        node = root
        for part in path:
            node = node["children"].setdefault(part, {"children": {}, "classes": []})
        node["classes"].append(cls)

    def render(node, name):
        # iterative enough: depth is the number of levels, not the number of classes
        parts = []
        for child_name, child in node["children"].items():
            if not child["children"]:  # a plain leaf class (a node with only its own class)
                parts.extend(f"{newick_label(labels[c])}:1" for c in child["classes"])
            else:
                parts.append(render(child, child_name) + ":1")
        if name is not None:
            parts = [f"{newick_label(labels[c])}:0" for c in node["classes"]] + parts
        return "(" + ",".join(parts) + ")" + ("" if name is None else newick_label(name))

    return render(root, None) + ";\n"
