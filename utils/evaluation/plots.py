"""Plots of one run (PNG, matplotlib's Agg backend: no display needed).

* :func:`plot_trees` - the learned class tree (WPGMA of the representative
  distances) above the tree of the taxonomy (WPGMA of ``d_T``), as dendrograms
  with a strip of leaf colours under each: the leaf's group at the strip level
  (:func:`strip_level`), the same colours in both, with a legend of the groups;
  leaf labels (coloured the same) where they fit;
* :func:`plot_distances` - the representative distance matrix beside ``d_T``,
  both with the classes ordered by the taxonomy (sorted paths);
* :func:`plot_history` - training curves from ``history.csv`` (tolerates
  missing columns and empty values).
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402,F401
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import dendrogram  # noqa: E402

from utils.io import atomic_path  # noqa: E402
from utils.trees import first_level_with_groups  # noqa: E402

MAX_LABELS = 120  # above this many classes, leaf and tick labels are left out


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def taxonomy_order(hierarchy):
    """Class indices sorted by path (the reading order of the taxonomy)."""
    return sorted(range(hierarchy.n_classes), key=lambda c: hierarchy.paths[c])


def strip_level(hierarchy):
    """The level whose groups colour the tree plots: the first with at least 3 groups.

    Falls back to the first level with 2 groups, then to level 0 (a level with
    one group, e.g. NABirds ``Birds``, says nothing).
    """
    for at_least in (3, 2):
        level = first_level_with_groups(hierarchy, at_least)
        if level is not None:
            return level
    return 0


def group_palette(n_groups):
    """``[n_groups, 4]`` RGBA colours: tab10 / tab20, then tab20 + tab20b + tab20c (60), cycled beyond."""
    if n_groups <= 10:
        base = plt.get_cmap("tab10").colors
    elif n_groups <= 20:
        base = plt.get_cmap("tab20").colors
    else:
        base = sum((list(plt.get_cmap(name).colors) for name in ("tab20", "tab20b", "tab20c")), [])
    base = np.array([matplotlib.colors.to_rgba(c) for c in base])
    return base[np.arange(n_groups) % len(base)]


def leaf_colours(hierarchy, level):
    """Colour of every class (``[C, 4]``, by class index) by its group at ``level``, and the legend.

    The legend is a list of ``(group name, colour)`` in group order; a group is
    named by its last path node.
    """
    groups = hierarchy.level_groups(level)
    palette = group_palette(hierarchy.n_groups(level))
    names = [name.split(" > ")[-1] for name in hierarchy.level_names(level)]
    return palette[groups], list(zip(names, palette))


def strip_colours(Z, hierarchy, level):
    """The colour strip of one dendrogram: leaf colours (:func:`leaf_colours`) in the dendrogram's leaf order."""
    order = dendrogram(Z, no_plot=True)["leaves"]
    return leaf_colours(hierarchy, level)[0][order], order


def _dendrogram(fig, ax, Z, hierarchy, level, title):
    n = hierarchy.n_classes
    dendrogram(Z, ax=ax, orientation="top", no_labels=True, color_threshold=0, above_threshold_color="0.3")
    ax.set_title(title)
    ax.set_ylabel("merge distance")
    ax.set_xticks([])
    ax.set_xlim(0, 10 * n)  # scipy puts leaf k at x = 10 k + 5
    colours, order = strip_colours(Z, hierarchy, level)
    box = ax.get_position()
    strip = fig.add_axes([box.x0, box.y0 - 0.06 * box.height - 0.005, box.width, 0.05 * box.height])
    strip.imshow(colours[None], aspect="auto", extent=(0, 10 * n, 0, 1), interpolation="nearest")
    strip.set_xlim(0, 10 * n)
    strip.set_yticks([])
    if n <= MAX_LABELS:
        strip.set_xticks(10 * np.arange(n) + 5, [hierarchy.names[c] for c in order], rotation=90)
        strip.tick_params(axis="x", labelsize=max(3, min(8, 700 // max(n, 1))), length=0)
        for tick, colour in zip(strip.get_xticklabels(), colours):
            tick.set_color(colour)
    else:
        strip.set_xticks([])
    return strip


def plot_trees(path, Z_learned, Z_true, hierarchy, title="W"):
    """Dendrograms: the learned tree above the taxonomy's tree, each over a strip of group colours.

    The strip colours every leaf by its group at :func:`strip_level` (the same
    colours for both trees); the legend names the groups.  Leaf labels are
    drawn up to ``MAX_LABELS`` classes.
    """
    n = hierarchy.n_classes
    level = strip_level(hierarchy)
    _, legend = leaf_colours(hierarchy, level)
    width = max(10.0, min(30.0, 0.12 * n))
    label_room = 1.6 if n <= MAX_LABELS else 0.0
    fig = plt.figure(figsize=(width + 3.0, 2 * (4.0 + label_room) + 0.6))
    # two dendrogram panels, leaving room under each for its strip (and labels) and on the right for the legend
    (top, bottom, panel_h) = (0.63, 0.17, 0.25) if label_room else (0.58, 0.1, 0.36)  # labels need the gap
    axes = [fig.add_axes([0.05, top, 0.72, panel_h]), fig.add_axes([0.05, bottom, 0.72, panel_h])]
    _dendrogram(fig, axes[0], Z_learned, hierarchy, level, f"learned tree ({title}, WPGMA)")
    _dendrogram(fig, axes[1], Z_true, hierarchy, level, "taxonomy (WPGMA of tree distances)")
    handles = [matplotlib.patches.Patch(color=colour, label=name) for name, colour in legend]
    columns = int(np.ceil(len(handles) / 40))
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.79, 0.95),
        fontsize=7 if len(handles) <= 40 else 5,
        ncol=columns,
        title=f"level {level} groups",
        title_fontsize=8,
        frameon=False,
    )
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
