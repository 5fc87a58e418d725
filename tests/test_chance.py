"""Chance levels (utils/evaluation/chance.py) against brute force, enumeration and simulation; trivial measures."""
import itertools

import numpy as np
import pytest
from scipy import stats

from utils import trees
from utils.evaluation import chance
from utils.evaluation import representation as rep
from utils.evaluation.retrieval import hs_curve
from utils.hierarchy import Hierarchy


def grouped(C=40, seed=0, signal=0.8):
    """A 3-level hierarchy and representatives that follow its top level a little."""
    paths = [[f"t{i % 3}", f"m{i % 7}", f"c{i}"] for i in range(C)]
    h = Hierarchy([p[-1] for p in paths], paths)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(C, 8)) + signal * rng.normal(size=(3, 8))[h.level_groups(0)]
    return h, rep.representative_distances(x, "euc")


# ------------------------------------------------------------------ ranks
def test_row_ranks_equal_scipy_rankdata_with_and_without_ties():
    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 5, (6, 200)), rng.random((6, 200)).round(1), rng.random((6, 200)),
             np.vstack([rng.random(200), rng.random(200).round(1)])]
    for X in cases:
        np.testing.assert_allclose(rep.rank_rows(X), stats.rankdata(X, axis=1))


def test_column_ranks_are_unit_centred_ranks_and_zero_without_spread():
    M = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [1.0, 1.0, 7.0]])
    A = chance.column_ranks(M, chunk_entries=3)  # one column per chunk
    ranks = stats.rankdata(M[:, 0]) - 2.0
    np.testing.assert_allclose(A[0], ranks / np.linalg.norm(ranks), rtol=1e-6)
    assert not A[1].any()  # column 1 is constant: no ranking
    np.testing.assert_allclose(A[2], np.array([-0.5, -0.5, 1.0]) / np.sqrt(1.5), rtol=1e-6)


# ------------------------------------------------------------------ corr_mean
def test_corr_mean_null_equals_corr_mean_of_relabelled_tree_distances():
    h, D = grouped()
    perms = np.concatenate([np.arange(40)[None], rep.class_permutations(40, 6, 1)])
    null = chance.corr_mean_null(D, chance.column_ranks(h.distances), perms, chunk_entries=40 * 7)
    brute = [rep.corr_mean(D, h.distances[np.ix_(p, p)])[0] for p in perms]
    np.testing.assert_allclose(null, brute, atol=1e-6)
    assert null[0] == pytest.approx(rep.corr_mean(D, h.distances)[0], abs=1e-6)  # identity: the observed value


def test_corr_mean_null_is_the_same_in_threads_and_reuses_the_classes_whose_ranks_did_not_change():
    h, D = grouped(signal=0.5)
    B = chance.column_ranks(h.distances)
    perms = np.concatenate([np.arange(40)[None], rep.class_permutations(40, 30, 2)])
    alone = chance.corr_mean_null(D, B, perms, chunk_entries=40 * 7, workers=1)
    cache = {}
    threads = chance.corr_mean_null(D, B, perms, chunk_entries=40 * 7, workers=2, cache=cache)
    assert np.array_equal(alone, threads) and cache["corr_mean_null"]["recomputed"] == 40
    # the second matrix differs in one pair: only the columns 3 and 7 rank differently, and only they are redone
    E = D.copy()
    E[3, 7] = E[7, 3] = D[3, 7] + 0.5
    again = chance.corr_mean_null(E, B, perms, chunk_entries=40 * 7, workers=2, cache=cache)
    assert cache["corr_mean_null"]["recomputed"] == 2
    assert np.array_equal(again, chance.corr_mean_null(E, B, perms, chunk_entries=40 * 7, workers=1))
    assert not np.array_equal(again, alone)
    # another relabelling set or another tree: everything is computed again
    chance.corr_mean_null(E, B.copy(), perms, cache=cache)
    assert cache["corr_mean_null"]["recomputed"] == 40


def test_corr_mean_chance_summarises_the_null_and_its_p_value():
    h, D = grouped(signal=0.8)
    values = chance.corr_mean_chance(D, chance.column_ranks(h.distances), n_perm=49, seed=3)
    brute = np.array([rep.corr_mean(D, h.distances[np.ix_(p, p)])[0] for p in rep.class_permutations(40, 49, 3)])
    observed = rep.corr_mean(D, h.distances)[0]
    assert values["corr_mean_chance"] == pytest.approx(brute.mean(), abs=1e-6)
    assert values["corr_mean_chance95"] == pytest.approx(np.percentile(brute, 95), abs=1e-6)
    assert values["corr_mean_perm_p"] == (1 + int((brute >= observed - 1e-6).sum())) / 50
    # representatives that follow the tree beat every relabelling; random ones do not
    assert observed > values["corr_mean_chance95"] and values["corr_mean_perm_p"] == pytest.approx(1 / 50)
    _, noise = grouped(signal=0.0, seed=5)
    p_noise = chance.corr_mean_chance(noise, chance.column_ranks(h.distances), n_perm=49, seed=3)["corr_mean_perm_p"]
    assert p_noise > 0.05


def test_corr_mean_chance_is_none_without_relabellings():
    h, D = grouped()
    assert set(chance.corr_mean_chance(D, None, n_perm=0).values()) == {None}


# ------------------------------------------------------------------ mapr
def _map_at_r(hits, R):
    found = np.cumsum(hits[:R])
    return float(np.sum(hits[:R] * found / np.arange(1, R + 1)) / R)


def test_expected_map_at_r_by_enumeration():
    # every placement of R relevant items among N positions is equally likely
    for N, R in [(3, 2), (5, 1), (5, 3), (6, 6), (7, 4)]:
        values = []
        for spots in itertools.combinations(range(N), R):
            hits = np.zeros(N)
            hits[list(spots)] = 1
            values.append(_map_at_r(hits, R))
        assert chance.expected_map_at_r(np.array([R]), N)[0] == pytest.approx(np.mean(values))
    # by hand: R = 2 of N = 3: (1 + 1/2 + 1/4) / 3
    assert chance.expected_map_at_r(np.array([2]), 3)[0] == pytest.approx(1.75 / 3)


def test_mapr_chance_by_hand_and_by_simulated_relabellings():
    # groups of 3 and 1 among 4 classes: the group of one is no query; R = 2 of N = 3 for the other three
    assert chance.mapr_chance([0, 0, 0, 1]) == pytest.approx(1.75 / 3)
    assert chance.mapr_chance([0, 1, 2]) is None
    h, D = grouped(C=30, seed=2)
    groups = h.level_groups(1)
    rng = np.random.default_rng(0)
    draws = np.array([rep.level_retrieval(D, groups[rng.permutation(30)])[2] for _ in range(3000)])
    error = draws.std(ddof=1) / np.sqrt(draws.size)
    assert abs(draws.mean() - chance.mapr_chance(groups)) < 4 * error
    assert chance.level_chance(h) == {f"mapr_chance_{l}": chance.mapr_chance(h.level_groups(l)) for l in range(3)}


# ------------------------------------------------------------------ rf
def test_rf_chance_equals_the_trees_of_relabelled_representatives():
    h, D = grouped(C=30, seed=4)
    Z, Z_true = trees.agglomerate(D), trees.agglomerate(h.distances)
    ref_wpgma = trees.bipartitions(trees.linkage_clusters(Z_true))
    ref_taxonomy = trees.bipartitions(trees.taxonomy_clusters(h))
    wpgma, taxonomy = [], []
    for p in rep.class_permutations(30, 12, 7):
        splits = trees.tree_splits(D[np.ix_(p, p)])[0]  # cluster the relabelled representatives anew
        wpgma.append(trees.robinson_foulds(splits, ref_wpgma)[2])
        taxonomy.append(trees.robinson_foulds(splits, ref_taxonomy)[2])
    got = chance.rf_chance(Z, Z_true, h, n_perm=12, seed=7)
    assert got["rf_norm_chance"] == pytest.approx(np.mean(wpgma))
    assert got["rf_taxonomy_chance"] == pytest.approx(np.mean(taxonomy))
    # the split keys give the exact RF of the unrelabelled tree too
    keys = chance.leaf_hashes(30)
    exact = trees.robinson_foulds(trees.bipartitions(trees.linkage_clusters(Z)), ref_taxonomy)[2]
    assert chance._rf_norm(chance.linkage_split_keys(Z, keys), chance.taxonomy_split_keys(h, keys)) == exact


# ------------------------------------------------------------------ hs@k of random embeddings
def test_hs_chance_curve_by_hand():
    # labels 0, 0, 1; similarity s = 0.5 between the two classes
    # class-0 query: the others are one class-0 image (1) and the class-1 image (s): expected sum k (1 + s) / 2,
    #   ideal 1 (k = 1), 1 + s (k = 2);  class-1 query: two class-0 images, expected k s, ideal k s
    # hs@1 = (2 * (1 + s) / 2 + 1) / 3 = (2 + s) / 3, hs@2 = 1
    sim = np.array([[1.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(chance.hs_chance_curve([0, 0, 1], sim, 250), [2.5 / 3, 1.0])


def test_hs_chance_curve_matches_simulated_random_embeddings():
    h = Hierarchy([f"c{i}" for i in range(5)],
                  [["A", "a", "c0"], ["A", "a", "c1"], ["A", "b", "c2"], ["B", "c3"], ["B", "c4"]])
    sim = h.similarities("euc")
    labels = np.repeat(np.arange(5), [5, 3, 2, 4, 6])
    expected = chance.hs_chance_curve(labels, sim, k_max=250)
    assert expected.size == labels.size - 1
    assert expected[-1] == pytest.approx(1.0)  # k = N - 1: every other image is a neighbour
    assert expected[0] < expected[-1] - 0.1  # random embeddings do worse at small k
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(400):
        x = rng.normal(size=(labels.size, 8))
        draws.append(hs_curve(x / np.linalg.norm(x, axis=1, keepdims=True), labels, sim, workers=1))
    draws = np.array(draws)
    error = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - expected) <= 4 * error + 1e-12)


def test_hs_chance_curve_skips_classes_without_test_images():
    sim = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.2], [0.2, 0.2, 1.0]])
    np.testing.assert_allclose(chance.hs_chance_curve([0, 0, 1], sim, 250),
                               chance.hs_chance_curve([0, 0, 1], sim[:2, :2], 250))


# ------------------------------------------------------------------ trivial measures
def test_hp_trivial_when_the_radius_covers_every_class():
    # 8 classes in 3 levels (2 x 2 x 2): the 6th nearest class of any class is at the largest distance
    small = Hierarchy([f"c{i}" for i in range(8)], [[f"a{i // 4}", f"b{i // 2}", f"c{i}"] for i in range(8)])
    assert "covers all 8 classes" in chance.hp_trivial(np.arange(8), small.distances, 5)
    # 12 classes in a-groups of 6: the sorted row of class 0 is 0, 2, 4, 4, 4, 4, 6, ...: index 6 is 6, still all
    larger = Hierarchy([f"c{i}" for i in range(12)], [[f"a{i // 6}", f"b{i // 2}", f"c{i}"] for i in range(12)])
    assert chance.hp_trivial(np.arange(12), larger.distances, 5) is not None
    # a-groups of 8: 0, 2, 4 (six times), 6, ...: index 6 is 4, the other a-group lies outside
    wide = Hierarchy([f"c{i}" for i in range(16)], [[f"a{i // 8}", f"b{i // 2}", f"c{i}"] for i in range(16)])
    assert chance.hp_trivial(np.arange(16), wide.distances, 5) is None


def test_hs_trivial_where_random_embeddings_reach_the_threshold():
    assert chance.hs_trivial(0.94, 50, 60) is None and chance.hs_trivial(None, 50, 60) is None
    assert "N - 1 = 59" in chance.hs_trivial(0.97, 50, 60)
