"""The figure code (utils/evaluation/plots.py): the binned distance matrix, the drawn trees, the labels."""
import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import dendrogram, linkage
from scipy.spatial.distance import pdist

from utils.evaluation import chance, plots
from utils.hierarchy import Hierarchy

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the distance matrix in bins
def test_binned_means_leave_out_the_diagonal():
    rng = np.random.default_rng(1)
    M = rng.random((7, 7))
    order = rng.permutation(7)
    means, edges = plots.binned_means(M, order, 3)
    assert edges.tolist() == [0, 2, 5, 7]
    reordered = M[np.ix_(order, order)]
    for a in range(3):
        for b in range(3):
            cells = [reordered[i, j] for i in range(edges[a], edges[a + 1])
                     for j in range(edges[b], edges[b + 1]) if i != j]
            assert means[a, b] == pytest.approx(np.mean(cells))
    # one class per bin: the reordered matrix itself, the diagonal missing (grey, out of the colour range)
    full, _ = plots.binned_means(M, order, 7)
    off = ~np.eye(7, dtype=bool)
    np.testing.assert_allclose(full[off], reordered[off])
    assert np.isnan(np.diag(full)).all()


def test_binned_means_are_the_same_in_chunks_that_split_bins():
    rng = np.random.default_rng(2)
    M = rng.random((50, 50))
    order = rng.permutation(50)
    whole, _ = plots.binned_means(M, order, 6)
    chunked, _ = plots.binned_means(M, order, 6, chunk_entries=7 * 50)  # 7 rows a chunk; bins of 8 or 9 rows
    np.testing.assert_allclose(chunked, whole)


# ------------------------------------------------------------------ drawn trees
def ragged():
    """Seven classes: a node with three children, a class that is also a node (B), a chain (C > c1 > x)."""
    paths = [["A", "a1"], ["A", "a2"], ["A", "a3"], ["B"], ["B", "b1"], ["B", "b2"], ["C", "c1", "x"]]
    return Hierarchy([p[-1] for p in paths], paths)


def test_taxonomy_tree_draws_a_multifurcation_as_one_node():
    h = ragged()
    tree, prefixes = plots.taxonomy_tree(h)
    # internal nodes, longest prefixes first: (C, c1), then (A,), (B,), (C,), then the root
    assert prefixes == [("C", "c1"), ("A",), ("B",), ("C",), ()]
    kids = {prefixes[i]: sorted(k.tolist()) for i, k in enumerate(tree.children)}
    assert kids[("A",)] == [0, 1, 2]  # one node with three children (WPGMA of d_T stacks two merges there)
    assert kids[("B",)] == [3, 4, 5]  # class B hangs from its own node
    assert kids[("C", "c1")] == [6] and kids[("C",)] == [7]
    assert kids[()] == [8, 9, 10]
    assert len(tree.children) == 5 < h.n_classes - 1
    # heights in levels (3 levels: root 3, top groups 2, (C, c1) 1, classes 0)
    np.testing.assert_allclose(tree.height, [0] * 7 + [1, 2, 2, 2, 3])
    # leaves in taxonomy order at 0.5, 1.5, ...; a node at the midpoint of its outermost children
    np.testing.assert_allclose(tree.x[:7], np.arange(7) + 0.5)
    np.testing.assert_allclose(tree.x[7:], [6.5, 1.5, 4.5, 6.5, 4.0])
    np.testing.assert_allclose(tree.lo[7:], [6, 0, 3, 6, 0])
    np.testing.assert_allclose(tree.hi[7:], [7, 3, 6, 7, 7])
    # cut to at most 3 visible subtrees: the root alone; the three top groups are wedges
    shown = tree.expanded(3)
    assert shown.tolist() == [False, False, False, False, True]
    assert sorted(tree.collapsed(shown).tolist()) == [8, 9, 10]


def line_linkage():
    # points 0, 1, 10, 12 on a line: WPGMA merges {0,1} at 1, {2,3} at 2, then both at ((10+9)/2 + (12+11)/2) / 2
    return np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 2], [4, 5, 10.5, 4]])


def test_linkage_tree_cut_and_segments():
    tree = plots.linkage_tree(line_linkage())
    assert tree.order.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(tree.x[4:], [1.0, 3.0, 2.0])
    assert tree.expanded(1).tolist() == [False, False, True]  # the root is always drawn
    assert tree.expanded(2).tolist() == [False, False, True]
    assert tree.expanded(3).tolist() == [False, True, True]
    assert tree.expanded(4).tolist() == [True, True, True]
    lines, wedges = tree.segments(tree.expanded(3))
    # the root: a bar from x 1 to 3 at 10.5, stems from (1, 1) and (3, 2); node 5: bar 2.5..3.5 at 2, stems from 0
    expected = {((1.0, 10.5), (3.0, 10.5)), ((1.0, 1.0), (1.0, 10.5)), ((3.0, 2.0), (3.0, 10.5)),
                ((2.5, 2.0), (3.5, 2.0)), ((2.5, 0.0), (2.5, 2.0)), ((3.5, 0.0), (3.5, 2.0))}
    assert {tuple(map(tuple, s)) for s in lines.tolist()} == expected
    assert wedges == [[(0.0, 0.0), (1.0, 1.0), (2.0, 0.0)]]  # node 4 collapsed over the slots of leaves 0 and 1
    assert sorted(tree.visible_leaves(tree.expanded(3)).tolist()) == [2, 3]


def test_linkage_tree_lays_out_like_scipy_dendrogram():
    rng = np.random.default_rng(3)
    Z = linkage(pdist(rng.normal(size=(40, 4))), "weighted")
    tree = plots.linkage_tree(Z)
    drawn = dendrogram(Z, no_plot=True)
    assert tree.order.tolist() == drawn["leaves"]
    # scipy puts leaf k at 10 k + 5 and a node at the midpoint of its two children, at its merge height
    scipy_x = {round(d[1], 9): (i[1] + i[2]) / 2 for i, d in zip(drawn["icoord"], drawn["dcoord"])}
    for step, height in enumerate(Z[:, 2]):
        assert 10 * tree.x[40 + step] == pytest.approx(scipy_x[round(height, 9)])


def test_a_large_tree_is_cut_to_the_subtree_limit(tmp_path):
    n = 700
    rng = np.random.default_rng(4)
    paths = [[f"top{i % 5}", f"mid{i % 40}", f"class{i}"] for i in range(n)]
    h = Hierarchy([p[-1] for p in paths], paths)
    Z = linkage(pdist(rng.normal(size=(n, 6))), "weighted")  # distinct heights: every merge adds one subtree
    tree = plots.linkage_tree(Z)
    shown = tree.expanded(plots.TRUNCATED_SUBTREES)
    assert tree.collapsed(shown).size + tree.visible_leaves(shown).size == plots.TRUNCATED_SUBTREES
    assert shown.sum() == plots.TRUNCATED_SUBTREES - 1
    taxonomy, _ = plots.taxonomy_tree(h)
    cut = taxonomy.expanded(plots.TRUNCATED_SUBTREES)
    assert taxonomy.collapsed(cut).size == 40  # cut at level 1: its 40 groups (level 2 would show 700)
    plots.plot_trees(tmp_path / "t.png", Z, h, "W", distance="euc", run="a_run")
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG


# ------------------------------------------------------------------ labels, names, history
def test_label_font_fits_what_it_can():
    font, fits = plots._label_font([20.0, 10.0, 5.0])
    assert font == pytest.approx(8.0) and fits.tolist() == [True, True, False]  # 5 pt cannot hold 6 pt text
    font, fits = plots._label_font([9.0, 30.0])
    assert font == pytest.approx(7.2) and fits.all()
    font, fits = plots._label_font([3.0, 4.0])
    assert not fits.any()


def test_group_names_add_the_parent_where_two_groups_share_a_name():
    h = Hierarchy(["p", "q", "r"], [["A", "x", "p"], ["B", "x", "q"], ["B", "y", "r"]])
    assert plots.group_names(h, 1) == ["A > x", "B > x", "y"]
    assert plots.group_names(h, 0) == ["A", "B"]


def test_history_panels_show_the_scale_only_where_it_changes():
    fixed = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.0], "val_acc": [0.2, 0.4, 0.5],
                          "scale": [10.0, 10.0, 10.0]})
    assert [p[0] for p in plots.history_panels(fixed)] == ["loss", "accuracy"]
    dynamic = fixed.assign(scale=[7.9, 8.1, 8.4])
    panels = plots.history_panels(dynamic)
    assert [p[0] for p in panels] == ["loss", "accuracy", "scale"]
    assert panels[1][2] == [("val_acc", "val (W)")]  # one line, still named in a legend


def test_every_figure_is_written(tmp_path):
    h = ragged()
    rng = np.random.default_rng(5)
    x = rng.normal(size=(h.n_classes, 4))
    D = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0))
    Z = linkage(pdist(x), "weighted")
    plots.plot_trees(tmp_path / "tree.png", Z, h, "W", distance="arccos", run="run")
    plots.plot_distances(tmp_path / "d.png", D, h, "W", "euc", run="run")
    labels = np.repeat(np.arange(h.n_classes), 3)
    sim = h.similarities("euc")
    plots.plot_hs_curve(tmp_path / "hs.png", chance.hs_chance_curve(labels, sim, 250) * 1.1,
                        chance.hs_chance_curve(labels, sim, 250),
                        run="run", n_test=labels.size)
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "scale": [10.0, 10.0]})
    assert plots.plot_history(tmp_path / "h.png", history, run="run") is True
    for name in ("tree.png", "d.png", "hs.png", "h.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
