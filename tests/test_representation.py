"""Hierarchical inference at scale: the block-wise measures against the project's first, direct implementation.

The oracle (``_old_*``) is the code these measures replaced, kept here
verbatim in substance: whole-matrix ranks, one C x C pass per relabelling,
a full argsort per level.  The new code must give the same numbers (within
1e-12, the permutation p-values exactly) on tie-heavy taxonomies.
"""
import itertools

import numpy as np
import pytest
from scipy import stats

from utils.angle import angle_from_cos
from utils.evaluation import representation as rm
from utils.hierarchy import Hierarchy


# ------------------------------------------------------------------ the oracle
def _old_distances(representatives, distance="euc"):
    x = np.asarray(representatives, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = np.clip(x @ x.T, -1.0, 1.0)
    d = np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0)) if distance == "euc" else angle_from_cos(cos)
    np.fill_diagonal(d, 0.0)
    return d


def _old_pearson_columns(x, y):
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (x * y).sum(axis=0) / np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    return np.clip(r, -1.0, 1.0)


def _old_spearman_columns(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    r = _old_pearson_columns(stats.rankdata(a, axis=0), stats.rankdata(b, axis=0))
    dof = a.shape[0] - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt((dof / ((r + 1.0) * (1.0 - r))).clip(0))
    return r, 2.0 * stats.t.sf(np.abs(t), dof)


def _old_corr_mean(D, D_T):
    r, p = _old_spearman_columns(D, D_T)
    ok = np.isfinite(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.tanh(np.mean(np.arctanh(r[ok])))), float(ok.sum() / np.sum(1.0 / p[ok]))


def _old_upper(matrix):
    i, j = np.triu_indices(np.shape(matrix)[0], 1)
    return np.asarray(matrix)[i, j]


def _old_corr_elem(D, D_T):
    r, p = _old_spearman_columns(_old_upper(D)[:, None], _old_upper(D_T)[:, None])
    return float(r[0]), float(p[0])


def _old_permuted_corr_elem(D, D_T, perms):
    C = np.shape(D)[0]
    i, j = np.triu_indices(C, 1)
    ra = stats.rankdata(np.asarray(D, dtype=np.float64)[i, j])
    rb = stats.rankdata(np.asarray(D_T, dtype=np.float64)[i, j])
    ra -= ra.mean()
    rb -= rb.mean()
    norm = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    A = np.zeros((C, C))
    A[i, j] = ra
    B = np.zeros((C, C))
    B[i, j] = rb
    B += B.T
    dots = np.array([np.vdot(A, B.take(p, axis=0).take(p, axis=1)) for p in np.asarray(perms)])
    return dots / norm


def _old_corr_perm_p(D, D_T, n_perm=999, seed=0):
    observed, _ = _old_corr_elem(D, D_T)
    null = _old_permuted_corr_elem(D, D_T, rm.class_permutations(np.shape(D)[0], n_perm, seed))
    return (1 + int(np.sum(null >= observed - 1e-12))) / (n_perm + 1)


def _old_level_retrieval(D, groups):
    groups = np.asarray(groups)
    C = len(groups)
    same = groups[:, None] == groups[None, :]
    R = same.sum(axis=1) - 1
    query = R >= 1
    if not query.any():
        return None, None, None
    d = np.array(D, dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d[query], axis=1, kind="stable")[:, : C - 1]
    hits = np.take_along_axis(same[query], order, axis=1)
    Rq = R[query]
    k = np.arange(1, C)
    within = hits & (k[None, :] <= Rq[:, None])
    precision_at_k = np.cumsum(within, axis=1) / k
    return (float(hits[:, 0].mean()), float((within.sum(axis=1) / Rq).mean()),
            float(((within * precision_at_k).sum(axis=1) / Rq).mean()))


# ------------------------------------------------------------------ inputs
def ragged_taxonomy(n, seed=0, depth=6, branching=3):
    """Random paths of 1..depth levels under few branches: tree distances full of ties, ancestor classes."""
    rng = np.random.default_rng(seed)
    paths, seen = [], set()
    while len(paths) < n:
        path = [f"L{k}_{rng.integers(0, branching)}" for k in range(rng.integers(1, depth + 1))]
        if rng.random() < 0.8:
            path.append(f"c{len(paths)}")
        if tuple(path) not in seen:
            seen.add(tuple(path))
            paths.append(path)
    order = rng.permutation(n)
    return Hierarchy([str(i) for i in range(n)], [paths[i] for i in order])


def class_vectors(h, signal, seed=0, dim=24):
    """Noise plus ``signal`` times one random vector per taxonomy node on the path (0: no structure)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(h.n_classes, dim))
    for level in range(h.n_levels):
        groups = h.level_groups(level)
        W += signal * 0.8**level * rng.normal(size=(groups.max() + 1, dim))[groups]
    return W


CASES = [(n, signal, seed) for n, seed in ((8, 1), (40, 2), (150, 3)) for signal in (0.0, 0.6, 3.0)]


# ------------------------------------------------------------------ ranks and correlations
def test_distances_are_bit_for_bit_the_direct_formula():
    x = np.random.default_rng(0).normal(size=(50, 7))
    for distance in ("euc", "arccos"):
        assert np.array_equal(rm.representative_distances(x, distance), _old_distances(x, distance))


def test_average_ranks_equal_scipy_with_ties_and_across_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 40, size=5000).astype(float)  # many ties, some spanning chunks
    block = rng.normal(size=(30, 200)).round(1)
    for bytes_ in (rm.BLOCK_BYTES, 32 * 7):  # the default, and chunks of 7 values
        monkeypatch.setattr(rm, "BLOCK_BYTES", bytes_)
        ranks, order = rm._average_ranks(x.copy())
        assert np.array_equal(ranks, stats.rankdata(x)) and np.all(np.diff(x[order]) >= 0)
        # an order that sorts a monotone transform is used as it is; one that does not is replaced
        y = np.sqrt(x + 1.0)
        assert np.array_equal(rm._average_ranks(y.copy(), order)[0], stats.rankdata(y))
        assert rm._average_ranks(y.copy(), order)[1] is order
        assert np.array_equal(rm._average_ranks(-y, order)[0], stats.rankdata(-y))
    assert np.array_equal(rm._average_ranks_rows(block), stats.rankdata(block, axis=1))
    ints = rng.integers(2, 9, size=(6, 50))
    assert np.array_equal(rm._integer_rank_rows(ints), stats.rankdata(ints, axis=1))


@pytest.mark.parametrize("n, signal, seed", CASES)
def test_correlations_equal_the_direct_ones(n, signal, seed):
    h = ragged_taxonomy(n, seed)
    D = rm.representative_distances(class_vectors(h, signal, seed))
    for matrix in (D, np.round(D, 1)):  # real-valued and tied distances
        assert rm.corr_mean(matrix, h.distances) == pytest.approx(_old_corr_mean(matrix, h.distances), abs=1e-12)
        assert rm.corr_elem(matrix, h.distances) == pytest.approx(_old_corr_elem(matrix, h.distances), abs=1e-12)


def test_corr_mean_in_column_blocks(monkeypatch):
    h = ragged_taxonomy(300, 4)
    D = rm.representative_distances(class_vectors(h, 1.0, 4))
    expected = _old_corr_mean(D, h.distances)
    monkeypatch.setattr(rm, "BLOCK_BYTES", 8 * 8 * 300 * 7)  # seven columns per block
    assert rm.corr_mean(D, h.distances) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------ permutation test
@pytest.mark.parametrize("n, signal, seed", CASES)
def test_relabelled_correlations_equal_the_direct_ones(n, signal, seed):
    h = ragged_taxonomy(n, seed)
    D = rm.representative_distances(class_vectors(h, signal, seed))
    perms = rm.class_permutations(n, 60, seed)
    expected = _old_permuted_corr_elem(D, h.distances, perms)
    np.testing.assert_allclose(rm.permuted_corr_elem(D, h.distances, perms), expected, atol=1e-12)
    np.testing.assert_allclose(rm.permuted_corr_elem(D, h.distances, perms, hierarchy=h), expected, atol=1e-12)


@pytest.mark.parametrize("costs", [
    dict(FLOP_NS=1e-6, PAIR_NS=1e6),  # every class its own item, every part a dense column
    dict(FLOP_NS=1e3, ROW_NS=1e-3, SUM_NS=1e-3, PAIR_NS=1e6),  # every part a sum of rows
    dict(PAIR_NS=1e-6),  # one item: every pair gathered
])
def test_every_block_plan_gives_the_same_numbers(monkeypatch, costs):
    for name, value in costs.items():
        monkeypatch.setattr(rm, name, value)
    h = ragged_taxonomy(120, 7)
    D = rm.representative_distances(class_vectors(h, 0.5, 7))
    perms = rm.class_permutations(120, 30, 1)
    np.testing.assert_allclose(rm.permuted_corr_elem(D, h.distances, perms, hierarchy=h),
                               _old_permuted_corr_elem(D, h.distances, perms), atol=1e-12)


@pytest.mark.parametrize("n, signal, seed", CASES + [(300, 0.0, 5), (300, 0.4, 5), (300, 3.0, 5)])
def test_corr_perm_p_equals_the_direct_test(n, signal, seed):
    h = ragged_taxonomy(n, seed)
    D = rm.representative_distances(class_vectors(h, signal, seed))
    expected = _old_corr_perm_p(D, h.distances)
    assert rm.corr_perm_p(D, h.distances, hierarchy=h) == expected
    if n <= 40:  # without the hierarchy: one pass over the pairs per relabelling
        assert rm.corr_perm_p(D, h.distances) == expected


def test_corr_perm_p_equals_the_direct_test_at_1000_classes():
    h = ragged_taxonomy(1000, 9, depth=8)
    for signal in (0.0, 2.0):
        D = rm.representative_distances(class_vectors(h, signal, 9))
        assert rm.corr_perm_p(D, h.distances, n_perm=99, seed=3, hierarchy=h) == \
            _old_corr_perm_p(D, h.distances, n_perm=99, seed=3)


def test_first_pass_bound_holds_for_every_relabelling():
    h = ragged_taxonomy(200, 11, depth=7)
    D = rm.representative_distances(class_vectors(h, 0.8, 11))
    ranks = rm._PairRanks(D, h.distances)
    A = ranks.square()
    A32, row_sum, abs_sum = ranks.square(dtype=np.float32, sums=True)
    np.testing.assert_array_equal(row_sum, A.sum(axis=1))
    np.testing.assert_array_equal(abs_sum, np.abs(A).sum(axis=1))
    perms = rm.class_permutations(200, 300, 2)
    exact = _old_permuted_corr_elem(D, h.distances, perms) * ranks.norm
    cells = rm._pair_cells(h)
    for level in (-1, 0, 1, 2):
        model = rm._TreeModel(h, ranks, level, cells)
        first, rounding = model.first_pass(A32, row_sum, abs_sum, perms)
        assert np.all(np.abs(exact - first) <= model.bound + rounding)
        assert model.bound < 2 * ranks.norm  # a bound, not a vacuous number


def test_pair_cells_count_every_pair_once():
    h = ragged_taxonomy(70, 12)
    a, b, s, count = rm._pair_cells(h)
    i, j = np.triu_indices(70, 1)
    la, lb = h.lengths[i], h.lengths[j]
    shared = (la + lb - h.distances[i, j]) // 2
    keys, counts = np.unique(np.stack([np.minimum(la, lb), np.maximum(la, lb), shared], axis=1), axis=0,
                             return_counts=True)
    assert {tuple(k): c for k, c in zip(keys.tolist(), counts)} == \
        {(x, y, z): c for x, y, z, c in zip(a.tolist(), b.tolist(), s.tolist(), count)}


def test_rest_bound_holds_against_every_assignment_by_brute_force():
    # 6 pairs carry the doubled centred ranks -5, -3, -1, 1, 3, 5; weights 4, 4, 1, 0, 0, -2 (as value counts)
    values, counts = np.array([4.0, 1.0, 0.0, -2.0]), np.array([2, 1, 2, 1])
    weights = np.repeat(values, counts)
    ranks = np.array([-5, -3, -1, 1, 3, 5.0])
    best = max(abs(np.dot(weights, ranks[list(p)])) for p in itertools.permutations(range(6)))
    assert best == 43.0  # 4*5 + 4*3 + 1*1 + (-2)(-5)
    # largest |a| without ties: 5, 5, 3, 3, 1, 1
    assert [rm._top_abs_rank_sum(m, 6) for m in range(7)] == [0, 5, 10, 13, 16, 17, 18]
    bound, shift = rm._rest_bound(values, counts, 6)
    assert best <= bound <= 49.0 * (1 + 1e-9)  # 49 = sorted |w| 4, 4, 2, 1 against 5, 5, 3, 3 (shift 0)
    assert shift in (0.0, 1.0)  # 0, or the median weight (1: the third and fourth of 4, 4, 1, 0, 0, -2 sorted)


def test_pair_correlation_reuses_a_test_of_equal_ranks():
    h = ragged_taxonomy(60, 13)
    W = class_vectors(h, 1.0, 13)
    known = {}
    chord = rm.pair_correlation(rm.representative_distances(W, "euc"), h.distances, 99, 0, h, known=known)
    angle = rm.pair_correlation(rm.representative_distances(W, "arccos"), h.distances, 99, 0, h, known=known)
    assert chord.fingerprint == angle.fingerprint and angle.perm_p == chord.perm_p
    tests = lambda: [k for k in known if k != "order"]  # noqa: E731
    assert len(tests()) == 1 and chord.r == pytest.approx(_old_corr_elem(rm.representative_distances(W), h.distances)[0])
    other = rm.pair_correlation(rm.representative_distances(W[::-1]), h.distances, 99, 0, h, known=known)
    assert other.fingerprint != chord.fingerprint and len(tests()) == 2
    assert other.perm_p == _old_corr_perm_p(rm.representative_distances(W[::-1]), h.distances, 99)


# ------------------------------------------------------------------ level retrieval
@pytest.mark.parametrize("n, signal, seed", CASES)
def test_level_retrieval_equals_the_direct_one(n, signal, seed):
    h = ragged_taxonomy(n, seed)
    D = rm.representative_distances(class_vectors(h, signal, seed))
    for matrix in (D, np.round(D, 1)):  # ties broken by class index
        levels = [h.level_groups(level) for level in range(h.n_levels)]
        got = rm.levels_retrieval(matrix, levels)
        for groups, values in zip(levels, got):
            expected = _old_level_retrieval(matrix, groups)
            assert values == (None, None, None) if expected[0] is None else values == pytest.approx(expected, abs=1e-12)
            assert rm.level_retrieval(matrix, groups) == values


def test_level_retrieval_in_row_blocks(monkeypatch):
    h = ragged_taxonomy(200, 14)
    D = np.round(rm.representative_distances(class_vectors(h, 1.0, 14)), 1)
    expected = [_old_level_retrieval(D, h.level_groups(level)) for level in range(h.n_levels)]
    monkeypatch.setattr(rm, "BLOCK_BYTES", 8 * 4 * 200 * 9)  # nine rows per block
    got = rm.levels_retrieval(D, [h.level_groups(level) for level in range(h.n_levels)])
    for values, ref in zip(got, expected):
        assert values == (None, None, None) if ref[0] is None else values == pytest.approx(ref, abs=1e-12)


def test_distances_by_blocks_above_the_syrk_limit(monkeypatch):
    x = np.random.default_rng(15).normal(size=(700, 30))
    whole = rm.representative_distances(x)
    monkeypatch.setattr(rm, "SYRK_CLASSES", 100)
    monkeypatch.setattr(rm, "BLOCK_BYTES", 8 * 700 * 64)  # 64 rows per block
    blocks = rm.representative_distances(x)
    assert np.array_equal(blocks, blocks.T) and not np.diag(blocks).any()
    np.testing.assert_allclose(blocks, whole, atol=1e-12)


def test_the_angle_reuses_the_chords_bounds_when_a_few_ties_differ(monkeypatch):
    h = ragged_taxonomy(150, 16)
    W = class_vectors(h, 1.0, 16)
    chord = rm.representative_distances(W, "euc")
    angle = rm.representative_distances(W, "arccos")
    angle[3, 7] = angle[7, 3] = angle[3, 8]  # a tie the chord does not have: the ranks differ a little
    expected = _old_corr_perm_p(angle, h.distances)
    calls = []
    original = rm._exact_dots
    monkeypatch.setattr(rm, "_exact_dots", lambda *args: calls.append(len(args[2])) or original(*args))
    known = {"keep": True}
    first = rm.pair_correlation(chord, h.distances, 999, 0, h, known=known)
    assert "state" in known and first.perm_p == _old_corr_perm_p(chord, h.distances)
    known["keep"] = False
    monkeypatch.setattr(rm, "_first_pass_models", lambda *args: pytest.fail("the first pass ran again"))
    second = rm.pair_correlation(angle, h.distances, 999, 0, h, known=known)
    assert second.fingerprint != first.fingerprint and second.perm_p == expected
    assert "state" not in known and sum(calls[1:]) < 10  # hardly any relabelling summed again


@pytest.mark.parametrize("n, signal, seed", CASES)
def test_row_measures_are_corr_mean_and_level_retrieval(n, signal, seed, monkeypatch):
    h = ragged_taxonomy(n, seed)
    D = rm.representative_distances(class_vectors(h, signal, seed))
    D[:, 2] = D[2, :] = D[:, 1]  # classes 1 and 2 in the same place: a tie at 0 and tied rows
    D[1, 2] = D[2, 1] = D[2, 2] = 0.0
    levels = [h.level_groups(level) for level in range(h.n_levels)]
    monkeypatch.setattr(rm, "BLOCK_BYTES", 8 * 6 * n * 5)  # five rows per block
    mean, retrieval = rm.row_measures(D, h.distances, levels)
    assert mean == pytest.approx(_old_corr_mean(D, h.distances), abs=1e-12)
    for groups, values in zip(levels, retrieval):
        expected = _old_level_retrieval(D, groups)
        assert values == (None, None, None) if expected[0] is None else values == pytest.approx(expected, abs=1e-12)
