"""Every evaluation measure on tiny hand-worked cases, plus cross-checks against independent libraries.

Expected numbers are worked out by hand in the comments next to them.
"""
import os
import sys
from math import sqrt

import numpy as np
import pytest
from scipy import stats


from utils.hierarchy import Hierarchy
from utils.evaluation import classification as cm
from utils.evaluation import representation as rm
from utils.evaluation import retrieval as hm
from utils.evaluation.measures import classification_metrics, representation_metrics

# Ragged hierarchy with a class (2, "A/a2") that is the ancestor of another (3, "A/a2/z").
H6_PATHS = [["A", "a1", "x"], ["A", "a1", "y"], ["A", "a2"], ["A", "a2", "z"], ["B", "u"], ["B", "v"]]
# d_T by hand: (len_i - k) + (len_j - k), k = shared leading elements
H6_DT = np.array(
    [
        [0, 2, 3, 4, 5, 5],
        [2, 0, 3, 4, 5, 5],
        [3, 3, 0, 1, 4, 4],
        [4, 4, 1, 0, 5, 5],
        [5, 5, 4, 5, 0, 2],
        [5, 5, 4, 5, 2, 0],
    ]
)


@pytest.fixture
def h6():
    return Hierarchy([p[-1] for p in H6_PATHS], H6_PATHS)


def test_hierarchy_fixture_is_what_the_hand_numbers_assume(h6):
    np.testing.assert_array_equal(h6.distances, H6_DT)
    np.testing.assert_array_equal(h6.level_groups(0), [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(h6.level_groups(1), [0, 0, 1, 1, 2, 3])
    np.testing.assert_array_equal(h6.level_groups(2), [0, 1, 2, 3, 4, 5])


# ------------------------------------------------------------------ distances
def test_representative_distances_chord_and_angle():
    reps = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    chord = rm.representative_distances(reps, "euc")
    angle = rm.representative_distances(reps, "arccos")
    np.testing.assert_allclose(chord, [[0, sqrt(2), 2], [sqrt(2), 0, sqrt(2)], [2, sqrt(2), 0]], atol=1e-12)
    np.testing.assert_allclose(angle, [[0, np.pi / 2, np.pi], [np.pi / 2, 0, np.pi / 2], [np.pi, np.pi / 2, 0]], atol=1e-7)
    with pytest.raises(ValueError):
        rm.representative_distances(reps, "cosine")


# ------------------------------------------------------------------ correlations
# Four classes: paths A/a/x, A/a/y, A/b, B  ->  d_T below (by hand).
DT4 = np.array([[0, 2, 3, 4], [2, 0, 3, 4], [3, 3, 0, 3], [4, 4, 3, 0]], dtype=float)
D4 = np.array([[0, 2, 1, 3], [2, 0, 3, 1], [1, 3, 0, 2], [3, 1, 2, 0]], dtype=float)


def test_dt4_matches_hierarchy():
    paths = [["A", "a", "x"], ["A", "a", "y"], ["A", "b"], ["B"]]
    np.testing.assert_array_equal(Hierarchy(["x", "y", "b", "B"], paths).distances, DT4)


def test_corr_mean_by_hand():
    # per column (diagonal included), Spearman with average ranks for ties:
    #  col 0: ranks (1,3,2,4) vs (1,2,3,4): d = (0,1,-1,0) -> 1 - 6*2/60 = 0.8
    #  col 1: ranks (3,1,4,2) vs (2,1,3,4): d = (1,0,1,-2) -> 1 - 6*6/60 = 0.4
    #  col 2: ranks (2,4,1,3) vs (3,3,1,3): sum dx dy = 3, sum dx^2 = 5, sum dy^2 = 3 -> 3/sqrt(15) = sqrt(0.6)
    #  col 3: ranks (4,2,3,1) vs (3.5,3.5,2,1): 3 / sqrt(5 * 4.5) = sqrt(0.4)
    r = np.array([0.8, 0.4, sqrt(0.6), sqrt(0.4)])
    got_r, got_p = rm.spearman_columns(D4, DT4)
    np.testing.assert_allclose(got_r, r, atol=1e-12)
    # with n = 4 (2 dof) the two-sided t-test p-value is exactly 1 - |r|
    p = 1 - r
    np.testing.assert_allclose(got_p, p, atol=1e-12)
    mean, mean_p = rm.corr_mean(D4, DT4)
    assert mean == pytest.approx(np.tanh(np.mean(np.arctanh(r))), abs=1e-12)
    assert mean == pytest.approx(0.6777, abs=1e-4)  # tanh((1.0986 + 0.4236 + 1.0317 + 0.7455) / 4) = tanh(0.8249)
    assert mean_p == pytest.approx(4 / np.sum(1 / p), abs=1e-12)


def test_corr_mean_skips_undefined_columns():
    # a constant column of D (class 0 equally far from all, diagonal aside... make it truly constant)
    D = D4.copy()
    D[:, 0] = D[0, :] = 1.0  # column 0 = (1,1,1,1): no ranking -> NaN, skipped
    r, _ = rm.spearman_columns(D, DT4)
    assert np.isnan(r[0]) and np.isfinite(r[1:]).all()
    mean, _ = rm.corr_mean(D, DT4)
    assert mean == pytest.approx(np.tanh(np.mean(np.arctanh(r[1:]))), abs=1e-12)


def test_corr_elem_by_hand():
    D = np.array([[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]], dtype=float)
    # pairs (01,02,03,12,13,23): D = (1,2,3,3,2,1) -> ranks (1.5,3.5,5.5,5.5,3.5,1.5)
    # d_T = (2,3,4,3,4,3) -> ranks (1,3,5.5,3,5.5,3); centred dot = 9, norms 16 and 15
    r, p = rm.corr_elem(D, DT4)
    assert r == pytest.approx(9 / sqrt(240), abs=1e-12)
    assert p == pytest.approx(stats.spearmanr([1, 2, 3, 3, 2, 1], [2, 3, 4, 3, 4, 3]).pvalue, abs=1e-12)
    # the other D4 of this file gives exactly 0 (centred dot product 0 + 1 + 4 - 1 - 4 + 0)
    assert rm.corr_elem(D4, DT4)[0] == pytest.approx(0.0, abs=1e-12)


def test_spearman_matches_scipy_on_random_columns():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=(12, 7)).astype(float)  # many ties
    b = rng.normal(size=(12, 7))
    r, p = rm.spearman_columns(a, b)
    for i in range(7):
        ref = stats.spearmanr(a[:, i], b[:, i])
        assert r[i] == pytest.approx(ref.statistic, abs=1e-12)
        assert p[i] == pytest.approx(ref.pvalue, abs=1e-10)


def test_corr_undefined_for_fewer_than_three_classes():
    assert rm.corr_mean(np.zeros((2, 2)), np.zeros((2, 2))) == (None, None)
    assert rm.corr_elem(np.zeros((2, 2)), np.zeros((2, 2))) == (None, None)


# ------------------------------------------------------------------ permutation test
def test_corr_perm_p_is_one_for_perfect_anticorrelation(h6):
    D = 10.0 - h6.distances  # reverses the order of every pair: corr_elem = -1
    np.fill_diagonal(D, 0)
    assert rm.corr_elem(D, h6.distances)[0] == pytest.approx(-1.0)
    # every relabelling correlates at least -1, so all 999 count: (1 + 999) / 1000
    assert rm.corr_perm_p(D, h6.distances) == 1.0


def test_corr_perm_p_counts_the_relabellings_that_keep_the_tree():
    # classes A/a, A/b, B/c, B/d: d_T pairs (01,02,03,12,13,23) = (2,4,4,4,4,2).  With D = d_T the
    # observed corr_elem is 1; a relabelling keeps it at 1 exactly when it maps {0,1} to {0,1} or
    # {2,3}, and otherwise gives -0.5 (ranks (1.5,4.5,4.5,4.5,4.5,1.5) vs (4.5,1.5,4.5,4.5,1.5,4.5)).
    h = Hierarchy(list("abcd"), [["A", "a"], ["A", "b"], ["B", "c"], ["B", "d"]])
    D = h.distances.astype(float)
    perms = rm.class_permutations(4, 999, seed=0)
    keeps = np.array([set(p[:2]) in ({0, 1}, {2, 3}) for p in perms])
    null = rm.permuted_corr_elem(D, h.distances, perms)
    np.testing.assert_allclose(null[keeps], 1.0, atol=1e-12)
    np.testing.assert_allclose(null[~keeps], -0.5, atol=1e-12)
    assert rm.corr_perm_p(D, h.distances, n_perm=999, seed=0) == (1 + keeps.sum()) / 1000


def test_permuted_corr_elem_matches_scipy_loop():
    rng = np.random.default_rng(3)
    paths = [[f"g{i % 3}", f"s{i % 5}", f"c{i}"] for i in range(11)]
    h = Hierarchy([p[-1] for p in paths], paths)
    x = rng.normal(size=(11, 6))
    D = rm.representative_distances(x / np.linalg.norm(x, axis=1, keepdims=True))
    perms = rm.class_permutations(11, 40, seed=5)
    got = rm.permuted_corr_elem(D, h.distances, perms)
    iu = np.triu_indices(11, 1)
    for p, value in zip(perms, got):
        ref = stats.spearmanr(D[iu], h.distances[np.ix_(p, p)][iu]).statistic
        assert value == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------ level retrieval
# Symmetric distances with ties (0-2 and 0-4 are both 1; 1-0, 1-2, 1-3 are all 2).
D6 = np.array(
    [
        [0, 2, 1, 3, 1, 4],
        [2, 0, 2, 2, 3, 1],
        [1, 2, 0, 1, 5, 5],
        [3, 2, 1, 0, 2, 2],
        [1, 3, 5, 2, 0, 3],
        [4, 1, 5, 2, 3, 0],
    ],
    dtype=float,
)


def test_level_retrieval_by_hand_with_ties(h6):
    # level 0: groups {0,1,2,3} (R = 3) and {4,5} (R = 1); others ranked by (distance, index)
    #  q0: 2,4,1,3,5 -> hits 1,0,1: P@1 1, RP 2/3, MAP@R (1 + 2/3)/3 = 5/9
    #  q1: 5,0,2,3,4 -> hits 0,1,1: P@1 0, RP 2/3, MAP@R (1/2 + 2/3)/3 = 7/18
    #  q2: 0,3,1,4,5 -> hits 1,1,1: 1, 1, 1
    #  q3: 2,1,4,5,0 -> hits 1,1,0: 1, 2/3, 2/3
    #  q4: 0,...     -> miss: 0, 0, 0          q5: 1,... -> miss: 0, 0, 0
    p1, rp, mapr = rm.level_retrieval(D6, h6.level_groups(0))
    assert p1 == pytest.approx(3 / 6)
    assert rp == pytest.approx((2 / 3 + 2 / 3 + 1 + 2 / 3) / 6)
    assert mapr == pytest.approx((5 / 9 + 7 / 18 + 1 + 2 / 3) / 6)  # = 47/108
    # level 1: groups {0,1}, {2,3}, {4}, {5}: only q0..q3 count (R = 1)
    #  q0 -> 2 (miss), q1 -> 5 (miss), q2 -> 0 (miss), q3 -> 2 (hit)
    assert rm.level_retrieval(D6, h6.level_groups(1)) == pytest.approx((0.25, 0.25, 0.25))
    # level 2: no group has two members -> missing, not a number
    assert rm.level_retrieval(D6, h6.level_groups(2)) == (None, None, None)


def test_level_retrieval_matches_pytorch_metric_learning():
    torch = pytest.importorskip("torch")
    pml = pytest.importorskip("pytorch_metric_learning")
    assert int(pml.__version__.split(".")[0]) < 3
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    rng = np.random.default_rng(7)
    C = 40
    paths = [[f"g{rng.integers(0, 4)}", f"s{rng.integers(0, 9)}", f"c{i}"] for i in range(C)]
    paths.append(["lonely", "one", "c_lonely"])  # a level-0 group with a single member: not a query
    h = Hierarchy([p[-1] for p in paths], paths)
    x = rng.normal(size=(C + 1, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    D = rm.representative_distances(x, "euc")
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        device=torch.device("cpu"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=True)),
    )
    for level in (0, 1):
        groups = h.level_groups(level)
        ref = calc.get_accuracy(torch.tensor(x, dtype=torch.float32), torch.tensor(groups))
        p1, rp, mapr = rm.level_retrieval(D, groups)
        assert p1 == pytest.approx(ref["precision_at_1"], abs=1e-6)
        assert rp == pytest.approx(ref["r_precision"], abs=1e-6)
        assert mapr == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


# ------------------------------------------------------------------ classification
# Four test images over the six classes of h6 (scores chosen with ties):
SCORES = np.array(
    [
        [5, 4, 3, 2, 1, 0],  # label 0: pred 0, top5 0,1,2,3,4
        [1, 1, 3, 3, 0, 0],  # label 1: pred 2 (tie with 3, lower index), top5 2,3,0,1,4
        [0, 0, 0, -1, 9, 0],  # label 3: pred 4, top5 4,0,1,2,5 (label missed)
        [0, 0, 0, 0, 1, 2],  # label 5: pred 5, top5 5,4,0,1,2
    ],
    dtype=np.float32,
)
LABELS = np.array([0, 1, 3, 5])


def test_topk_breaks_ties_by_lower_index():
    np.testing.assert_array_equal(
        cm.topk(SCORES, 5), [[0, 1, 2, 3, 4], [2, 3, 0, 1, 4], [4, 0, 1, 2, 5], [5, 4, 0, 1, 2]]
    )
    v = np.array([[1, 3, 3, 2, 3], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(cm.topk(v, 2), [[1, 2], [0, 1]])
    np.testing.assert_array_equal(cm.topk(v, 4), [[1, 2, 4, 3], [0, 1, 2, 3]])
    np.testing.assert_array_equal(cm.topk(v, 5), [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]])
    with_inf = np.array([[-np.inf, 2.0, 2.0, -np.inf]])
    np.testing.assert_array_equal(cm.topk(with_inf, 3), [[1, 2, 0]])


def test_topk_equals_stable_argsort_on_random_ties():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, size=(300, 40)).astype(np.float32)
    for k in (1, 3, 17, 39):
        np.testing.assert_array_equal(cm.topk(v, k), np.argsort(-v, axis=1, kind="stable")[:, :k])


def test_classification_by_hand(h6):
    pred = cm.predict(SCORES)
    np.testing.assert_array_equal(pred, [0, 2, 4, 5])
    top5 = cm.topk(SCORES, 5)
    top2 = cm.topk(SCORES, 2)
    assert cm.acc(pred, LABELS) == 0.5
    assert cm.top_k_accuracy(top5, LABELS) == 0.75
    assert cm.top_k_accuracy(top2, LABELS) == 0.5  # [0,1] hit, [2,3] miss, [4,0] miss, [5,4] hit
    assert cm.acc_level(pred, LABELS, h6.level_groups(0)) == 0.75  # only 4 (B) vs 3 (A) differs
    assert cm.acc_level(pred, LABELS, h6.level_groups(1)) == 0.5
    assert cm.acc_level(pred, LABELS, h6.level_groups(2)) == 0.5
    assert cm.ahc(pred, LABELS, h6.distances) == (0 + 3 + 5 + 0) / 4
    # ahd5: (0+2+3+4+5)/5, (3+4+2+0+5)/5, (5+4+4+1+5)/5, (0+2+5+5+4)/5
    assert cm.ahd(top5, LABELS, h6.distances) == pytest.approx((2.8 + 2.8 + 3.8 + 3.2) / 4)


def test_hp_radius_is_at_index_k_plus_one(h6):
    # sorted rows of d_T: (0,2,3,4,5,5) (0,2,3,4,5,5) (0,1,3,3,4,4) (0,1,4,4,5,5) (0,2,4,5,5,5) x2
    np.testing.assert_array_equal(cm.hp_radius(h6.distances, 2), [4, 4, 3, 4, 5, 5])  # index 3
    np.testing.assert_array_equal(cm.hp_radius(h6.distances, 5), [5, 5, 4, 5, 5, 5])  # index 6 -> last (5)
    top2 = cm.topk(SCORES, 2)
    # label 0 r 4: d 0,2 -> 2/2; label 1 r 4: d(1,2)=3, d(1,3)=4 -> 2/2;
    # label 3 r 4: d(3,4)=5 no, d(3,0)=4 yes -> 1/2; label 5 r 5: 2/2
    assert cm.hp(top2, LABELS, h6.distances) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert cm.hp(cm.topk(SCORES, 5), LABELS, h6.distances) == 1.0


def test_max_softmax_and_calibration_by_hand():
    conf = cm.max_softmax(np.array([[1000.0, 0.0], [0.0, 0.0], [np.log(3.0), 0.0]]))
    np.testing.assert_allclose(conf, [1.0, 0.5, 0.75], atol=1e-15)
    assert conf[0] == 1.0
    # 15 bins [b/15, (b+1)/15); 1.0 and 0.95 -> bin 14, 0.5 and 0.52 -> bin 7, 0.1 -> bin 1
    confidence = np.array([1.0, 0.95, 0.5, 0.52, 0.1])
    correct = np.array([1, 0, 1, 1, 0])
    # gaps: bin 14 |0.5 - 0.975| = 0.475, bin 7 |1 - 0.51| = 0.49, bin 1 |0 - 0.1| = 0.1
    ece, mce = cm.calibration(confidence, correct, 15)
    assert ece == pytest.approx((2 * 0.475 + 2 * 0.49 + 0.1) / 5)
    assert mce == pytest.approx(0.49)


def test_reliability_bins_and_calib_spearman_by_hand():
    # bins of 1/15: 0.1 -> bin 1; 0.3, 0.31 -> bin 4; 0.5, 0.52 -> bin 7; 0.95, 1.0 -> bin 14
    confidence = np.array([0.1, 0.3, 0.31, 0.5, 0.52, 0.95, 1.0])
    correct = np.array([0, 1, 1, 0, 1, 1, 1])
    count, conf_mean, accuracy = cm.reliability_bins(confidence, correct, 15)
    assert count[[1, 4, 7, 14]].tolist() == [1, 2, 2, 2] and count.sum() == 7
    np.testing.assert_allclose(conf_mean[[1, 4, 7, 14]], [0.1, 0.305, 0.51, 0.975])
    np.testing.assert_allclose(accuracy[[1, 4, 7, 14]], [0.0, 1.0, 0.5, 1.0])
    assert np.isnan(conf_mean[0]) and np.isnan(accuracy[0])
    # non-empty bins: confidence ranks 1, 2, 3, 4; accuracy (0, 1, .5, 1) ranks 1, 3.5, 2, 3.5;
    # centred: (-1.5, -.5, .5, 1.5) and (-1.5, 1, -.5, 1): dot 2.25 - .5 - .25 + 1.5 = 3,
    # norms^2 5 and 4.5: r = 3 / sqrt(22.5)
    r, p = cm.calib_spearman(confidence, correct, 15)
    assert r == pytest.approx(3 / sqrt(22.5))
    ref = stats.spearmanr([0.1, 0.305, 0.51, 0.975], [0.0, 1.0, 0.5, 1.0])
    assert r == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    # two non-empty bins: r = 1 (as scipy), no p-value; one bin: undefined
    assert cm.calib_spearman([0.1, 0.9], [0, 1], 15) == (pytest.approx(1.0), None)
    assert cm.calib_spearman([0.9, 0.91], [0, 1], 15) == (None, None)


def test_pointbiserial_by_hand_and_against_scipy():
    # correct confidences (0.9, 0.7), wrong (0.5, 0.3): M1 - M0 = 0.4; mean 0.6, population
    # variance (.09 + .01 + .01 + .09) / 4 = 0.05; q1 = q0 = 1/2: r = 0.4 / sqrt(0.05) * 0.5 = 0.8944
    r, p = cm.pointbiserial(np.array([1, 1, 0, 0]), np.array([0.9, 0.7, 0.5, 0.3]))
    assert r == pytest.approx(0.4 / sqrt(0.05) * 0.5)
    # t = r sqrt(2 / (1 - r^2)) = 0.8944 * sqrt(10) = 2.828 with 2 dof
    assert p == pytest.approx(2 * stats.t.sf(0.4 / sqrt(0.05) * 0.5 * sqrt(2 / 0.2), 2))
    rng = np.random.default_rng(3)
    correct = rng.random(200) < 0.6
    confidence = np.clip(0.5 + 0.2 * correct + rng.normal(0, 0.2, 200), 0, 1)
    ref = stats.pointbiserialr(correct, confidence)
    r, p = cm.pointbiserial(correct, confidence)
    assert r == pytest.approx(ref.statistic, abs=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-9)
    assert cm.pointbiserial([1, 1, 1], [0.2, 0.5, 0.9]) == (None, None)  # never wrong: undefined
    assert cm.pointbiserial([1, 0, 1], [0.5, 0.5, 0.5]) == (None, None)  # constant confidence


def test_classification_metrics_report_the_calibration_correlations(h6):
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(6), 20)
    scores = rng.normal(size=(120, 6)) + 2.0 * np.eye(6)[labels]
    m, _, _ = classification_metrics(scores, labels, h6)
    confidence = cm.max_softmax(scores)
    correct = scores.argmax(axis=1) == labels
    assert m["pointbiserial"] == pytest.approx(stats.pointbiserialr(correct, confidence).statistic)
    _, conf_mean, accuracy = cm.reliability_bins(confidence, correct, 15)
    ok = np.isfinite(conf_mean)
    ref = stats.spearmanr(conf_mean[ok], accuracy[ok])
    assert m["calib_spearman"] == pytest.approx(ref.statistic) and m["calib_spearman_p"] == pytest.approx(ref.pvalue)


def test_precision_recall_f1_by_hand():
    pred = cm.predict(SCORES)  # (0, 2, 4, 5) for labels (0, 1, 3, 5)
    conf = cm.confusion_matrix(LABELS, pred, 6)
    assert conf.sum() == 4 and conf[0, 0] == conf[1, 2] == conf[3, 4] == conf[5, 5] == 1
    p, r, f1 = cm.precision_recall_f1(conf)
    nan = np.nan
    np.testing.assert_array_equal(p, [1, nan, 0, nan, 0, 1])  # never predicted: undefined
    np.testing.assert_array_equal(r, [1, 0, nan, 0, nan, 1])  # no support: undefined
    np.testing.assert_array_equal(f1, [1, 0, 0, 0, 0, 1])  # 2TP / (2TP + FP + FN)
    assert cm.macro(p) == 0.5 and cm.macro(r) == 0.5 and cm.macro(f1) == pytest.approx(1 / 3)
    assert cm.macro([nan, nan]) is None
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert cm.macro(f1) == pytest.approx(sklearn_metrics.f1_score(LABELS, pred, average="macro", zero_division=0))


def test_classification_metrics_per_level(h6):
    m, table, confusion = classification_metrics(SCORES, LABELS, h6)
    # level 0: labels A,A,A,B  preds A,A,B,B -> confusion [[2,1],[0,1]]
    np.testing.assert_array_equal(confusion["level_0"], [[2, 1], [0, 1]])
    assert m["precision_level_0"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert m["recall_level_0"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["f1_level_0"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert m["f1"] == pytest.approx(1 / 3) and m["acc"] == 0.5 and m["hp5"] == 1.0
    assert m["acc_level_0"] == 0.75 and m["ahc"] == 2.0
    assert set(table["level"]) == {0, 1, 2} and len(table) == 2 + 4 + 6
    np.testing.assert_array_equal(confusion["class"], confusion["level_2"])


# ------------------------------------------------------------------ retrieval
def test_hs_by_hand_with_tied_neighbours():
    # classes A/a, A/b, B/c: d = 2 (0-1), 4 (0-2, 1-2); euc beta 1: sim = 1 - d^2/(1+d)^2
    h = Hierarchy(["a", "b", "c"], [["A", "a"], ["A", "b"], ["B", "c"]])
    sim = h.similarities("euc", 1.0)
    s2, s4 = 5 / 9, 9 / 25
    np.testing.assert_allclose(sim, [[1, s2, s4], [s2, 1, s4], [s4, s4, 1]])
    emb = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
    labels = np.array([0, 0, 1, 2])
    # ideal sums (k = 1, 2, 3): label 0 sees classes {0, 1, 2}: 1, 1 + s2, 1 + s2 + s4;
    # label 1 sees {0, 0, 2}: s2, 2 s2, 2 s2 + s4; label 2 sees {0, 0, 1}: s4, 2 s4, 3 s4
    ideal = hm.ideal_similarity_sums(labels, sim, 3)
    np.testing.assert_allclose(ideal[0], [1, 1 + s2, 1 + s2 + s4])
    np.testing.assert_allclose(ideal[1], [s2, 2 * s2, 2 * s2 + s4])
    np.testing.assert_allclose(ideal[2], [s4, 2 * s4, 3 * s4])
    # neighbours: q0 -> 2 (cos 1), 3 (.5), 1 (0);  q1 -> 3 (.5), then 0 and 2 tied at 0: 0 first
    # q2 -> 0, 3, 1;  q3 -> 0, 1, 2 all tied at .5
    q0 = np.cumsum([s2, s4, 1]) / ideal[0]
    q1 = np.cumsum([s4, 1, s2]) / ideal[0]
    q2 = np.cumsum([s2, s4, s2]) / ideal[1]
    q3 = np.cumsum([s4, s4, s4]) / ideal[2]
    expected = (q0 + q1 + q2 + q3) / 4
    np.testing.assert_allclose(expected[:2], [(5 / 9 + 9 / 25 + 1 + 1) / 4, (103 / 175 + 153 / 175 + 103 / 125 + 1) / 4])
    curve = hm.hs_curve(emb, labels, sim, k_max=250)
    assert curve.size == 3  # k stops at N - 1
    np.testing.assert_allclose(curve, expected, atol=1e-12)
    np.testing.assert_allclose(hm.hs_curve(emb, labels, sim, k_max=2), expected[:2], atol=1e-12)
    # ahs over k = 1..3 with step 1/2: (h1/2 + h2 + h3/2) / 2;  ahs250 is undefined here
    assert hm.ahs(curve, k_max=3) == pytest.approx((expected[0] / 2 + expected[1] + expected[2] / 2) / 2)
    assert hm.ahs(curve) is None


def test_ahs_of_a_constant_curve_is_that_constant():
    assert hm.ahs(np.full(250, 0.7)) == pytest.approx(0.7)
    assert hm.ahs(np.linspace(0, 1, 250)) == pytest.approx(0.5)


def _hs_loop(emb, labels, sim, k_max):
    """Plain reference: full stable sort per query, ideal from sorting all other images' similarities."""
    emb = emb.astype(np.float64)
    n = len(labels)
    out = np.zeros(k_max)
    for i in range(n):
        s = emb @ emb[i]
        s[i] = -np.inf
        order = np.argsort(-s, kind="stable")[:k_max]
        gains = np.cumsum(sim[labels[i], labels[order]])
        others = np.delete(sim[labels[i], labels], i)
        ideal = np.cumsum(np.sort(others)[::-1][:k_max])
        out += gains / ideal
    return out / n


@pytest.mark.parametrize("distance", ["euc", "arccos"])
def test_hs_vectorised_equals_plain_loop(distance):
    rng = np.random.default_rng(11)
    n, dim = 300, 8
    # entries +-0.5 on 4 of 8 axes: unit norm and dot products exact multiples of 1/4 -> many exact ties
    emb = np.zeros((n, dim), dtype=np.float32)
    for i in range(n):
        axes = rng.choice(dim, 4, replace=False)
        emb[i, axes] = rng.choice([-0.5, 0.5], 4)
    paths = [[f"g{i % 2}", f"s{i % 4}", f"c{i}"] for i in range(7)]
    h = Hierarchy([p[-1] for p in paths], paths)
    labels = rng.integers(0, 7, n)
    labels[labels == 6] = 5  # class 6 has no test image
    sim = h.similarities(distance, 2.0)
    ref = _hs_loop(emb, labels, sim, 250)
    got = hm.hs_curve(emb, labels, sim, 250, block_bytes=4 * n * 17)  # 17 queries per block
    np.testing.assert_allclose(got, ref, atol=1e-12)


# ------------------------------------------------------------------ representation bundle
def test_representation_metrics_names_and_missing_level(h6):
    rng = np.random.default_rng(0)
    reps = rng.normal(size=(6, 5))
    reps /= np.linalg.norm(reps, axis=1, keepdims=True)
    m, D, Z = representation_metrics(reps, h6, "euc", living=False, n_perm=99)
    assert m["p1_2"] is None and m["rp_2"] is None and m["mapr_2"] is None
    assert m["rf_max"] == 6  # two binary trees on 6 leaves: 2 (6 - 3)
    assert m["rf_norm"] == pytest.approx(m["rf"] / 6)
    assert 0.01 <= m["corr_perm_p"] <= 1.0 and (m["corr_perm_p"] * 100) == pytest.approx(round(m["corr_perm_p"] * 100))
    assert Z.shape == (5, 4) and D.shape == (6, 6)
    i, j = np.triu_indices(6, 1)
    ref = stats.spearmanr(D[i, j], h6.distances[i, j])
    assert m["corr_elem"] == pytest.approx(ref.statistic) and m["corr_elem_p"] == pytest.approx(ref.pvalue)
