"""Plots of one run (PNG, matplotlib's Agg backend: no display needed).

* :func:`plot_trees` - the learned class tree (WPGMA of the representative
  distances) beside the tree of the taxonomy (WPGMA of ``d_T``), as dendrograms
  whose leaf labels are coloured by top-level group;
* :func:`plot_distances` - the representative distance matrix beside ``d_T``,
  both with the classes ordered by the taxonomy (sorted paths);
* :func:`plot_history` - training curves from ``history.csv`` (tolerates
  missing columns and empty values).
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import dendrogram  # noqa: E402

from utils.io import atomic_path  # noqa: E402

MAX_LABELS = 120  # above this many classes, leaf and tick labels are left out


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def taxonomy_order(hierarchy):
    """Class indices sorted by path (the reading order of the taxonomy)."""
    return sorted(range(hierarchy.n_classes), key=lambda c: hierarchy.paths[c])


def _top_colours(hierarchy):
    groups = hierarchy.level_groups(0)
    cmap = plt.get_cmap("tab10" if groups.max() < 10 else "tab20")
    return [cmap(int(g) % cmap.N) for g in groups]


def _dendrogram(ax, Z, hierarchy, title):
    labels = hierarchy.names if hierarchy.n_classes <= MAX_LABELS else None
    info = dendrogram(
        Z,
        ax=ax,
        orientation="left",
        labels=labels,
        no_labels=labels is None,
        color_threshold=0,
        above_threshold_color="0.3",
        leaf_font_size=max(3, min(9, 600 // max(hierarchy.n_classes, 1))),
    )
    if labels is not None:
        colours = _top_colours(hierarchy)
        for tick, leaf in zip(ax.get_ymajorticklabels(), info["leaves"]):
            tick.set_color(colours[leaf])
    ax.set_title(title)
    ax.set_xlabel("merge distance")


def plot_trees(path, Z_learned, Z_true, hierarchy, title="W"):
    """Dendrograms: the learned tree (left) beside the taxonomy's tree (right)."""
    height = max(4.0, min(40.0, 0.14 * hierarchy.n_classes))
    fig, axes = plt.subplots(1, 2, figsize=(14, height))
    _dendrogram(axes[0], Z_learned, hierarchy, f"learned tree ({title}, WPGMA)")
    _dendrogram(axes[1], Z_true, hierarchy, "taxonomy (WPGMA of tree distances)")
    fig.tight_layout()
    _save(fig, path)


def plot_distances(path, D, hierarchy, title="W", distance="euc"):
    """The representative distance matrix beside ``d_T``, classes in taxonomy order."""
    order = taxonomy_order(hierarchy)
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    panels = [
        (np.asarray(D)[np.ix_(order, order)], f"{title} distances ({'chord' if distance == 'euc' else 'angle'})"),
        (hierarchy.distances[np.ix_(order, order)], "tree distances d_T"),
    ]
    for ax, (matrix, name) in zip(axes, panels):
        image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
        ax.set_title(name)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if hierarchy.n_classes <= 40:
            ticks = np.arange(hierarchy.n_classes)
            names = [hierarchy.names[c] for c in order]
            ax.set_xticks(ticks, names, rotation=90, fontsize=6)
            ax.set_yticks(ticks, names, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        # thin lines between top-level groups
        top = hierarchy.level_groups(0)[order]
        for edge in np.flatnonzero(np.diff(top)) + 0.5:
            ax.axhline(edge, color="w", lw=0.5)
            ax.axvline(edge, color="w", lw=0.5)
    fig.tight_layout()
    _save(fig, path)


def _column(history, name):
    if history is None or name not in history.columns:
        return None
    import pandas as pd

    values = pd.to_numeric(history[name], errors="coerce")
    return values if values.notna().any() else None


def plot_history(path, history):
    """Training curves: loss, accuracies (train / val with W / val with prototypes), scale.

    Returns False (and writes nothing) when there is nothing to draw.
    """
    if history is None or len(history) == 0:
        return False
    import pandas as pd

    epoch = _column(history, "epoch")
    x = epoch if epoch is not None else pd.Series(np.arange(1, len(history) + 1))
    panels = [
        ("loss", [("train_loss", "train")]),
        ("accuracy", [("train_acc", "train"), ("val_acc", "val (W)"), ("val_acc_proto", "val (prototypes)"), ("test_acc", "test (W)")]),
        ("scale", [("scale", "s")]),
    ]
    panels = [(t, [(c, lab) for c, lab in cols if _column(history, c) is not None]) for t, cols in panels]
    panels = [p for p in panels if p[1]]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels):
        for col, label in cols:
            y = _column(history, col)
            ok = y.notna() & x.notna()
            ax.plot(x[ok], y[ok], marker="o" if ok.sum() < 30 else None, ms=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(cols) > 1:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_hs_curve(path, curve):
    """hs@k against k."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(curve) + 1), curve)
    ax.set_xlabel("k")
    ax.set_ylabel("hs@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
