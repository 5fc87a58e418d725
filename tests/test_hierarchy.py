"""utils.hierarchy on hand-made trees; every expected number is worked out by hand."""
import numpy as np
import pytest

from utils.errors import UserError
from utils.hierarchy import Hierarchy, class_similarity, transform

# A ragged tree: class 2 ("A/B") is an ancestor of classes 0 and 1, class 5
# ("E", a top-level class) an ancestor of 4 and 6, and 6 repeats the name "E"
# one level down.
PATHS = [
    ["A", "B", "c1"],
    ["A", "B", "c2"],
    ["A", "B"],
    ["A", "d"],
    ["E", "f", "g", "h"],
    ["E"],
    ["E", "E"],
]
# d_T = (len_i - k) + (len_j - k), k = shared leading names, by hand:
# d(0,1): k=2 -> 1+1; d(0,2): k=2 -> 1+0; d(0,3): k=1 -> 2+1; d(0,4): k=0 -> 3+4;
# d(0,5): 3+1; d(0,6): 3+2; d(2,3): k=1 -> 1+1; d(2,4): 2+4; d(2,5): 2+1;
# d(3,4): 2+4; d(4,5): k=1 -> 3+0; d(4,6): k=1 -> 3+1; d(5,6): k=1 -> 0+1; ...
EXPECTED = np.array([
    [0, 2, 1, 3, 7, 4, 5],
    [2, 0, 1, 3, 7, 4, 5],
    [1, 1, 0, 2, 6, 3, 4],
    [3, 3, 2, 0, 6, 3, 4],
    [7, 7, 6, 6, 0, 3, 4],
    [4, 4, 3, 3, 3, 0, 1],
    [5, 5, 4, 4, 4, 1, 0],
])


@pytest.fixture
def tree():
    return Hierarchy([p[-1] for p in PATHS], PATHS)


def test_distances_by_hand(tree):
    assert tree.distances.dtype == np.int16
    np.testing.assert_array_equal(tree.distances, EXPECTED)
    np.testing.assert_array_equal(tree.distances, tree.distances.T)


def test_levels_ragged_and_ancestor_classes(tree):
    assert tree.n_levels == 4
    assert tree.n_classes == len(tree) == 7
    # level 0: A A A A E E E
    np.testing.assert_array_equal(tree.level_groups(0), [0, 0, 0, 0, 1, 1, 1])
    # level 1: A/B A/B A/B A/d E/f E(own: path shorter than 2) E/E
    np.testing.assert_array_equal(tree.level_groups(1), [0, 0, 0, 1, 2, 3, 4])
    # level 2: "A/B" is shorter than 3, so it is its own group; all distinct
    np.testing.assert_array_equal(tree.level_groups(2), [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(tree.level_groups(3), [0, 1, 2, 3, 4, 5, 6])
    assert [tree.n_groups(level) for level in range(4)] == [2, 5, 7, 7]
    assert tree.level_names(1) == ["A > B", "A > d", "E > f", "E", "E > E"]
    with pytest.raises(ValueError):
        tree.level_groups(4)


def test_groups_compare_full_prefix_not_bare_name():
    h = Hierarchy(["x", "x", "y"], [["P", "x"], ["Q", "x"], ["P", "y"]])
    np.testing.assert_array_equal(h.level_groups(1), [0, 1, 2])
    np.testing.assert_array_equal(h.level_groups(0), [0, 1, 0])
    # x under P and x under Q share nothing: 2 + 2
    assert h.distances[0, 1] == 4 and h.distances[0, 2] == 2


def test_transform_and_similarity_values():
    d = np.array([0, 1, 3])
    np.testing.assert_allclose(transform(d, "euc"), [0.0, np.sqrt(2) / 2, np.sqrt(2) * 3 / 4])
    np.testing.assert_allclose(transform(d, "arccos"), [0.0, np.pi / 4, (np.pi / 2) * 3 / 4])
    np.testing.assert_allclose(transform(1, "euc", beta=3), np.sqrt(2) / 4)
    # euc: 1 - T^2 / 2 -> d=1: 1 - 0.5/2; d=3: 1 - (9/8)/2
    np.testing.assert_allclose(class_similarity(d, "euc"), [1.0, 0.75, 0.4375])
    np.testing.assert_allclose(class_similarity(d, "arccos"), [1.0, np.cos(np.pi / 4), np.cos(3 * np.pi / 8)])
    with pytest.raises(ValueError):
        transform(d, "cosine")


def test_transformed_matrix_and_similarities(tree):
    t = tree.transformed_distances("euc")
    assert t[0, 2] == pytest.approx(np.sqrt(2) / 2)  # d = 1
    assert t[0, 4] == pytest.approx(np.sqrt(2) * 7 / 8)  # d = 7
    s = tree.similarities("arccos")
    np.testing.assert_allclose(np.diag(s), 1.0)
    assert s[5, 6] == pytest.approx(np.cos(np.pi / 4))


def test_living_mask_and_subset():
    h = Hierarchy(["a", "b", "c", "d"], [["nonliving", "a"], ["Living", "b"], ["NonPlankton", "c"], ["x", "d"]])
    np.testing.assert_array_equal(h.living_mask(), [False, True, False, True])
    sub = h.subset([3, 1])
    assert sub.names == ["d", "b"] and sub.paths == [["x", "d"], ["Living", "b"]]
    assert sub.distances[0, 1] == 4


def test_csv_round_trip_with_slashes_commas_and_unicode(tmp_path):
    names = ["Common Eider (Female/juvenile)", "Ducks, Geese, and Swans", "Tintinnida sp"]
    paths = [
        ["Birds", "Ducks, Geese, and Swans", "Common Eider", "Common Eider (Female/juvenile)"],
        ["Birds", "Ducks, Geese, and Swans", "Ducks, Geese, and Swans"],
        ["Ciliophora", "Tintinnida sp"],
    ]
    h = Hierarchy(names, paths)
    path = tmp_path / "hierarchy.csv"
    h.to_csv(path)
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "index,class,path"
    back = Hierarchy.from_csv(path)
    assert back == h and back.paths[0][-1] == "Common Eider (Female/juvenile)"
    np.testing.assert_array_equal(back.distances, h.distances)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError):
        Hierarchy(["a", "b"], [["x", "a"], ["x", "a"]])  # same path twice
    with pytest.raises(ValueError):
        Hierarchy(["a"], [[]])
    bad = tmp_path / "not_a_hierarchy.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(UserError):
        Hierarchy.from_csv(bad)
    with pytest.raises(UserError):
        Hierarchy.from_csv(tmp_path / "missing.csv")
