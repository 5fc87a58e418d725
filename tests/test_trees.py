"""WPGMA / UPGMA, bipartitions, Robinson-Foulds and Newick: by hand, and against scipy and dendropy."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import trees  # noqa: E402
from utils.hierarchy import Hierarchy  # noqa: E402
from utils.evaluation.representation import representative_distances  # noqa: E402
from tests.test_representation import ragged_taxonomy  # noqa: E402

H6_PATHS = [["A", "a1", "x"], ["A", "a1", "y"], ["A", "a2"], ["A", "a2", "z"], ["B", "u"], ["B", "v"]]


def h6():
    return Hierarchy([p[-1] for p in H6_PATHS], H6_PATHS)


# ------------------------------------------------------------------ clustering by hand
D4 = np.array([[0, 2, 4, 10], [2, 0, 6, 10], [4, 6, 0, 8], [10, 10, 8, 0]], dtype=float)


def test_wpgma_and_upgma_by_hand():
    # step 1: 0+1 at 2 (new id 4); distances to 2: (4+6)/2 = 5, to 3: (10+10)/2 = 10 (both methods)
    # step 2: {0,1}+2 at 5 (id 5); to 3: WPGMA (10 + 8)/2 = 9, UPGMA (2*10 + 1*8)/3 = 28/3
    np.testing.assert_allclose(trees.agglomerate(D4, "wpgma"), [[0, 1, 2, 2], [2, 4, 5, 3], [3, 5, 9, 4]])
    np.testing.assert_allclose(trees.agglomerate(D4, "upgma"), [[0, 1, 2, 2], [2, 4, 5, 3], [3, 5, 28 / 3, 4]])
    with pytest.raises(ValueError):
        trees.agglomerate(D4, "single")


def test_tie_rule_merges_the_last_tied_pair_of_the_scan():
    # all distances equal: the scan i = 1..3, j < i ends at (3, 2); the merged cluster takes position 2,
    # then the last pair is (2, 1) (the cluster {2,3} with 1), then (1, 0): a caterpillar from the end
    D = np.ones((4, 4)) - np.eye(4)
    np.testing.assert_allclose(trees.agglomerate(D, "wpgma"), [[2, 3, 1, 2], [1, 4, 1, 3], [0, 5, 1, 4]])


# two groups {0,1,2} and {3,4,5}: distance 2 inside a group, 4 across; every merge is a tie
D_TIED = np.array(
    [
        [0, 2, 2, 4, 4, 4],
        [2, 0, 2, 4, 4, 4],
        [2, 2, 0, 4, 4, 4],
        [4, 4, 4, 0, 2, 2],
        [4, 4, 4, 2, 0, 2],
        [4, 4, 4, 2, 2, 0],
    ],
    dtype=float,
)


def test_tie_rule_on_a_tied_matrix_worked_by_hand():
    # The paper's rule (last pair of the scan at the minimum, merged cluster at position j, i deleted):
    # step 1: pairs at 2 in scan order (1,0) (2,0) (2,1) (4,3) (5,3) (5,4): last (5,4) -> {4,5} at position 4,
    #         distances (2+2)/2 = 2 to 3 and 4 to 0..2; positions [0, 1, 2, 3, {4,5}]
    # step 2: last pair at 2 is (4,3) -> {3,4,5} at position 3; positions [0, 1, 2, {3,4,5}]
    # step 3: last pair at 2 is (2,1) -> {1,2} at position 1; positions [0, {1,2}, {3,4,5}]
    # step 4: (1,0) at 2 -> {0,1,2}; step 5: the two groups at 4
    Z = trees.agglomerate(D_TIED, "wpgma")
    np.testing.assert_allclose(Z, [[4, 5, 2, 2], [3, 6, 2, 3], [1, 2, 2, 2], [0, 8, 2, 3], [7, 9, 4, 6]])
    splits = trees.split_sides(trees.bipartitions(trees.linkage_clusters(Z)), 6)
    assert splits == {frozenset({4, 5}), frozenset({3, 4, 5}), frozenset({1, 2})}
    # the first-pair rule would merge {0,1}, {0,1,2}, {3,4}, {3,4,5}: splits {2,3,4,5}, {3,4,5}, {3,4}
    first_pair = trees.bipartitions(_clusters(6, [{0, 1}, {0, 1, 2}, {3, 4}, {3, 4, 5}]))
    assert trees.split_sides(first_pair, 6) == {frozenset({2, 3, 4, 5}), frozenset({3, 4, 5}), frozenset({3, 4})}
    assert trees.robinson_foulds(trees.bipartitions(trees.linkage_clusters(Z)), first_pair) == (4, 6, 4 / 6)
    # UPGMA follows the same rule; here every merge is between equal distances, so the same tree
    np.testing.assert_allclose(trees.agglomerate(D_TIED, "upgma"), Z)


def _paper_rule_clusters(D, method):
    """The tie rule transcribed literally (list of positions, double scan, ``>=``): the set of clusters."""
    d = [list(map(float, row)) for row in D]
    members = [frozenset([c]) for c in range(len(d))]
    found = set()
    while len(d) > 1:
        best, bi, bj = np.inf, -1, -1
        for i in range(1, len(d)):
            for j in range(i):
                if best >= d[i][j]:
                    best, bi, bj = d[i][j], i, j
        ni, nj = len(members[bi]), len(members[bj])
        for k in range(len(d)):
            if k not in (bi, bj):
                if method == "wpgma":
                    v = (d[bi][k] + d[bj][k]) / 2.0
                else:
                    v = (ni * d[bi][k] + nj * d[bj][k]) / (ni + nj)
                d[bj][k] = d[k][bj] = v
        members[bj] = members[bi] | members[bj]
        found.add(members[bj])
        del d[bi]
        for row in d:
            del row[bi]
        del members[bi]
    return found


@pytest.mark.parametrize("method", ["wpgma", "upgma"])
def test_tie_rule_matches_a_literal_transcription_on_tree_distances(method):
    rng = np.random.default_rng(12)
    for trial in range(6):
        h = _random_hierarchy(rng, 12 + trial)
        Z = trees.agglomerate(h.distances, method)
        ours = {frozenset(np.flatnonzero(r).tolist()) for r in trees.linkage_clusters(Z)}
        assert ours == _paper_rule_clusters(h.distances, method)


@pytest.mark.parametrize("method, scipy_method", [("wpgma", "weighted"), ("upgma", "average")])
def test_clustering_matches_scipy(method, scipy_method):
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(4)
    for n in (5, 17, 40):
        x = rng.normal(size=(n, 6))
        D = representative_distances(x / np.linalg.norm(x, axis=1, keepdims=True), "arccos")
        ours = trees.agglomerate(D, method)
        ref = linkage(squareform(D, checks=False), method=scipy_method)
        # same tree and heights <=> same cophenetic distances (computed by scipy for both)
        np.testing.assert_allclose(cophenet(ours), cophenet(ref), atol=1e-12)
        np.testing.assert_allclose(np.sort(ours[:, 2]), np.sort(ref[:, 2]), atol=1e-12)
        ours_sets = {frozenset(np.flatnonzero(r)) for r in trees.linkage_clusters(ours)}
        ref_sets = {frozenset(np.flatnonzero(r)) for r in trees.linkage_clusters(ref)}
        assert ours_sets == ref_sets


# ------------------------------------------------------------------ bipartitions and RF
def _clusters(n, sets):
    m = np.zeros((len(sets), n), dtype=bool)
    for row, s in enumerate(sets):
        m[row, list(s)] = True
    return m


def test_robinson_foulds_by_hand():
    # unrooted 6-leaf trees ((0,1),(2,3),(4,5)) and ((0,2),(1,3),(4,5)): 3 splits each, {4,5} shared
    a = trees.bipartitions(_clusters(6, [{0, 1}, {2, 3}, {4, 5}, {0, 1, 2, 3, 4, 5}, {0}]))
    b = trees.bipartitions(_clusters(6, [{0, 2}, {1, 3}, {4, 5}]))
    assert trees.split_sides(a, 6) == {frozenset({2, 3, 4, 5}), frozenset({2, 3}), frozenset({4, 5})}
    assert trees.robinson_foulds(a, b) == (4, 6, 4 / 6)
    assert trees.robinson_foulds(a, a) == (0, 6, 0.0)
    assert trees.robinson_foulds(set(), set()) == (0, 0, None)  # too few leaves: undefined


def test_rooting_does_not_matter():
    # rooted ((0,1),(2,3)) and (((0,1),2),3) are the same unrooted tree: one split {01|23}
    balanced = np.array([[0, 1, 4, 4], [1, 0, 4, 4], [4, 4, 0, 1], [4, 4, 1, 0]], dtype=float)
    chain = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 2, 0, 3], [3, 3, 3, 0]], dtype=float)
    s1, _ = trees.tree_splits(balanced)
    s2, _ = trees.tree_splits(chain)
    assert trees.split_sides(s1, 4) == trees.split_sides(s2, 4) == {frozenset({2, 3})}
    assert trees.robinson_foulds(s1, s2)[0] == 0


def test_taxonomy_splits_with_ragged_paths_and_an_ancestor_class():
    # clusters: A = {0,1,2,3} (same split as B = {4,5}), A/a1 = {0,1}, A/a2 = {2,3} (class 2 is the
    # node A/a2 itself, a leaf too), singletons are trivial
    splits = trees.bipartitions(trees.taxonomy_clusters(h6()))
    assert trees.split_sides(splits, 6) == {frozenset({4, 5}), frozenset({2, 3, 4, 5}), frozenset({2, 3})}


def test_wpgma_of_tree_distances_recovers_the_taxonomy_splits():
    h = h6()
    splits, _ = trees.tree_splits(h.distances)
    tax = trees.bipartitions(trees.taxonomy_clusters(h))
    assert tax <= splits  # the binary WPGMA tree resolves the taxonomy, it does not contradict it
    assert len(splits) == 3  # 6 leaves, binary: C - 3


# ------------------------------------------------------------------ Newick and dendropy
def test_newick_labels_are_quoted_when_needed():
    assert trees.newick_label("bear") == "bear"
    assert trees.newick_label("maple_tree") == "'maple_tree'"
    assert trees.newick_label("it's (big)") == "'it''s (big)'"
    assert trees.newick_label("Female/juvenile") == "'Female/juvenile'"
    assert trees.leaf_labels(["a", "b", "a"]) == ["a#0", "b", "a#2"]


def test_newick_round_trips_through_dendropy():
    dendropy = pytest.importorskip("dendropy")
    names = ["plain", "with space", "it's", "x(y):z", "Female/juvenile", "snake_case"]
    paths = [["A", n] for n in names[:3]] + [["B", "C", n] for n in names[3:]]
    h = Hierarchy(names, paths)
    for text in (trees.linkage_newick(trees.agglomerate(h.distances), names), trees.taxonomy_newick(h)):
        tree = dendropy.Tree.get(data=text, schema="newick", preserve_underscores=True)
        assert sorted(t.label for t in tree.taxon_namespace) == sorted(names)


def test_taxonomy_newick_distances_are_tree_distances():
    dendropy = pytest.importorskip("dendropy")
    h = h6()
    tree = dendropy.Tree.get(data=trees.taxonomy_newick(h), schema="newick", preserve_underscores=True)
    pdm = tree.phylogenetic_distance_matrix()
    taxa = {t.label: t for t in tree.taxon_namespace}
    for i in range(6):
        for j in range(6):
            if i != j:
                assert pdm(taxa[h.names[i]], taxa[h.names[j]]) == pytest.approx(h.distances[i, j])


def _random_hierarchy(rng, n):
    paths = []
    for i in range(n):
        depth = rng.integers(1, 4)
        prefix = [f"L0_{rng.integers(0, 3)}", f"L1_{rng.integers(0, 3)}", f"L2_{rng.integers(0, 2)}"][:depth]
        paths.append(prefix + [f"c{i}"])
    paths.append(["L0_0", "L1_0"])  # a class that is an ancestor of others (when L0_0/L1_0/... exist)
    return Hierarchy([p[-1] for p in paths], paths)


def test_robinson_foulds_matches_dendropy():
    dendropy = pytest.importorskip("dendropy")
    from dendropy.calculate import treecompare

    rng = np.random.default_rng(9)
    for trial in range(4):
        h = _random_hierarchy(rng, 14)
        x = rng.normal(size=(h.n_classes, 5))
        D = representative_distances(x / np.linalg.norm(x, axis=1, keepdims=True), "euc")
        learned, Z = trees.tree_splits(D)
        true, Zt = trees.tree_splits(h.distances)
        tax = trees.bipartitions(trees.taxonomy_clusters(h))
        ns = dendropy.TaxonNamespace()

        def read(text):
            return dendropy.Tree.get(
                data=text, schema="newick", taxon_namespace=ns, rooting="force-unrooted", preserve_underscores=True
            )

        t_learned = read(trees.linkage_newick(Z, h.names))
        t_true = read(trees.linkage_newick(Zt, h.names))
        t_tax = read(trees.taxonomy_newick(h))
        assert trees.robinson_foulds(learned, true)[0] == treecompare.symmetric_difference(t_learned, t_true)
        assert trees.robinson_foulds(learned, tax)[0] == treecompare.symmetric_difference(t_learned, t_tax)
        # rf_max: every non-trivial split of both trees (binary: C - 3 each)
        assert trees.robinson_foulds(learned, true)[1] == 2 * (h.n_classes - 3)


# ------------------------------------------------------------------ O(C^2) clustering against the old O(C^3) scan
def _agglomerate_by_full_scan(D, method="wpgma"):
    """The clustering as the project first wrote it (the oracle): every merge scans the whole matrix."""
    work = np.array(D, dtype=np.float64)
    n = work.shape[0]
    Z = np.zeros((max(n - 1, 0), 4))
    if n < 2:
        return Z
    work = np.tril(work, -1)
    work = work + work.T
    np.fill_diagonal(work, np.inf)
    ids = np.arange(n)
    sizes = np.ones(n)
    for step in range(n - 1):
        row_min = work.min(axis=1)
        i = n - 1 - int(np.argmin(row_min[::-1]))
        j = n - 1 - int(np.argmin(work[i, ::-1]))
        height = work[i, j]
        if method == "wpgma":
            merged = (work[i] + work[j]) / 2.0
        else:
            merged = (sizes[i] * work[i] + sizes[j] * work[j]) / (sizes[i] + sizes[j])
        merged[i] = merged[j] = np.inf
        work[j, :] = merged
        work[:, j] = merged
        work[i, :] = np.inf
        work[:, i] = np.inf
        a, b = sorted((ids[i], ids[j]))
        sizes[j] += sizes[i]
        Z[step] = (a, b, height, sizes[j])
        ids[j] = n + step
    return Z


@pytest.mark.parametrize("method", ["wpgma", "upgma"])
@pytest.mark.parametrize("n", [3, 17, 120, 1000])
def test_agglomerate_equals_the_full_scan_on_tree_distances(method, n):
    h = ragged_taxonomy(n, seed=n)
    ours = trees.agglomerate(h.distances, method)
    assert np.array_equal(ours, _agglomerate_by_full_scan(h.distances, method))  # bit for bit, ties and all
    assert trees.linkage_splits(ours) == trees.bipartitions(trees.linkage_clusters(ours))


@pytest.mark.parametrize("method", ["wpgma", "upgma"])
@pytest.mark.parametrize("n", [40, 1000])
def test_agglomerate_equals_the_full_scan_on_learned_distances(method, n):
    rng = np.random.default_rng(100 + n)
    x = rng.normal(size=(n, 16))
    x[n // 2:n // 2 + 5] = x[:5]  # duplicated class vectors: exact zero distances and tied rows
    D = representative_distances(x / np.linalg.norm(x, axis=1, keepdims=True), "euc")
    for matrix in (D, np.round(D, 2), np.triu(D) + np.tril(np.round(D, 1))):  # real, tied, lower != upper
        assert np.array_equal(trees.agglomerate(matrix, method), _agglomerate_by_full_scan(matrix, method))


@pytest.mark.parametrize("method, scipy_method", [("wpgma", "weighted"), ("upgma", "average")])
def test_agglomerate_equals_scipy_without_ties_at_600_classes(method, scipy_method):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(6)
    x = rng.normal(size=(600, 24))
    D = representative_distances(x / np.linalg.norm(x, axis=1, keepdims=True), "arccos")
    ours = trees.agglomerate(D, method)
    ref = linkage(squareform(D, checks=False), method=scipy_method)
    # without ties every merge is forced: the same pairs at the same heights, in height order
    order = np.argsort(ours[:, 2], kind="stable")
    np.testing.assert_allclose(ours[order, 2], ref[:, 2], rtol=1e-12)
    ours_sets = {frozenset(np.flatnonzero(r)) for r in trees.linkage_clusters(ours)}
    ref_sets = {frozenset(np.flatnonzero(r)) for r in trees.linkage_clusters(ref)}
    assert ours_sets == ref_sets


def test_agglomerate_reports_progress_and_rejects_a_non_square_matrix():
    seen = []
    trees.agglomerate(np.ones((600, 600)) - np.eye(600), progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (512, 599) and seen[-1] == (599, 599)
    with pytest.raises(ValueError):
        trees.agglomerate(np.zeros((3, 4)))


def test_taxonomy_splits_equal_the_cluster_matrix_on_ragged_taxonomies():
    for n in (2, 3, 4, 60, 300):
        h = ragged_taxonomy(n, seed=8)
        assert trees.taxonomy_splits(h) == trees.bipartitions(trees.taxonomy_clusters(h))
        assert trees.taxonomy_splits(h, chunk=1) == trees.taxonomy_splits(h)  # one group per chunk
