"""Plots of one run (PNG, matplotlib's Agg backend: no display needed).

Every figure is titled with its run (or ``--weights`` file) and, where one is
used, the distance; every figure stays readable from a dozen to 10,000+
classes and is written in seconds:

* :func:`plot_trees` - the learned class tree (WPGMA of the representative
  distances) above the taxonomy itself (its own nodes: a node with several
  children is drawn as one node), each over a strip of leaf colours: the
  leaf's group at the strip level (:func:`strip_level`), the same colours in
  both, with the legend beside the panels.  A tree with more than
  ``MAX_DRAWN_LEAVES`` leaves is drawn truncated to its top
  ``TRUNCATED_SUBTREES`` subtrees (grey wedges; the strip still colours every
  class).  Leaf labels are drawn where they fit (``LABEL_PT``);
* :func:`plot_distances` - the representative distance matrix beside ``d_T``,
  classes in taxonomy order (sorted paths), the top-level groups named on the
  axes, the zero diagonal left out of the colour range; above
  ``MAX_PIXELS`` classes each cell is the mean over a bin of consecutive
  classes (:func:`binned_means`);
* :func:`plot_history` - training curves from ``history.csv`` (tolerates
  missing columns and empty values), the scale panel only where the scale
  changes;
* :func:`plot_hs_curve` - ``hs@k`` beside the curve of random embeddings
  (:func:`utils.evaluation.chance.hs_chance_curve`), its end point explained.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy.cluster.hierarchy import leaves_list  # noqa: E402

from utils.io import atomic_path  # noqa: E402
from utils.evaluation.retrieval import HS_K_MAX, ahs  # noqa: E402
from utils.trees import first_level_with_groups  # noqa: E402

DPI = 110
LABEL_PT = 6.0  # the smallest label font (points): a label with less room than this is left out
LABEL_MAX_PT = 8.0
LABEL_CHARS = 32  # longer labels are shortened
MAX_DRAWN_LEAVES = 600  # a tree with more leaves is drawn truncated ...
TRUNCATED_SUBTREES = 300  # ... to at most this many subtrees
MAX_PIXELS = 600  # a distance matrix with more classes is averaged over this many bins of classes
MAX_LEGEND = 60  # legend entries at most (the palette has 60 colours)
DISTANCE_NAMES = {"euc": "chord", "arccos": "angle"}
DISTANCE_UNITS = {"euc": "chord distance (0 to 2)", "arccos": "angle (radians)"}


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def _suptitle(fig, what, run=None, distance=None):
    """The figure's title: the run (or ``--weights`` file) on the first line, what is shown (and the distance)."""
    if distance is not None:
        what = f"{what}; {DISTANCE_NAMES.get(distance, distance)} distance"
    fig.suptitle(f"{run}\n{what}" if run else what, fontsize=11)


def _short(text):
    text = str(text)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def _label_font(rooms_pt):
    """Font size (points) for labels side by side with ``rooms_pt`` of room each, and which of them fit.

    The font is the largest up to ``LABEL_MAX_PT`` that every label with room
    for ``LABEL_PT`` can take; labels with less room are left out.
    """
    rooms = np.asarray(rooms_pt, dtype=np.float64)
    usable = rooms[rooms >= 1.25 * LABEL_PT]
    if usable.size == 0:
        return LABEL_PT, np.zeros(rooms.size, dtype=bool)
    font = float(np.clip(usable.min() / 1.25, LABEL_PT, LABEL_MAX_PT))
    return font, rooms >= 1.25 * font


# ------------------------------------------------------------------ colours
def taxonomy_order(hierarchy):
    """Class indices sorted by path (the reading order of the taxonomy; every group is contiguous)."""
    return np.array(sorted(range(hierarchy.n_classes), key=lambda c: hierarchy.paths[c]), dtype=np.int64)


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


def label_level(hierarchy):
    """The level whose groups name the axes of the distance matrices: the first with at least 2 groups."""
    level = first_level_with_groups(hierarchy, 2)
    return 0 if level is None else level


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


def group_names(hierarchy, level):
    """Short names of the groups at ``level``: the last path node, with its parent where two share it."""
    full = [name.split(" > ") for name in hierarchy.level_names(level)]
    last = [parts[-1] for parts in full]
    taken = {name: last.count(name) for name in set(last)}
    return [name if taken[name] == 1 or len(parts) < 2 else f"{parts[-2]} > {name}" for name, parts in zip(last, full)]


def leaf_colours(hierarchy, level):
    """Colour of every class (``[C, 4]``, by class index) by its group at ``level``, and the legend.

    The legend is a list of ``(group name, colour)`` in group order; a group is
    named by its last path node (and its parent where two groups share it).
    """
    groups = hierarchy.level_groups(level)
    palette = group_palette(hierarchy.n_groups(level))
    return palette[groups], list(zip(group_names(hierarchy, level), palette))


def strip_colours(Z, hierarchy, level):
    """The colour strip of one dendrogram: leaf colours (:func:`leaf_colours`) in the dendrogram's leaf order."""
    order = leaves_list(np.asarray(Z, dtype=np.float64)) if hierarchy.n_classes > 1 else np.zeros(1, dtype=np.int64)
    return leaf_colours(hierarchy, level)[0][order], [int(c) for c in order]


# -------------------------------------------------------------------- trees
class DrawnTree:
    """A rooted tree laid out for drawing: leaves are the classes ``0..C-1``, internal nodes follow.

    ``children[i]`` (an int array) are the children of internal node ``C + i``;
    internal nodes come children first, the root last.  ``height`` is per
    node (leaves 0); ``order`` is the leaf order left to right.  Leaf ``c``
    occupies the slot ``[p, p + 1]`` with ``p`` its place in ``order``; an
    internal node sits at the midpoint of its outermost children (``x``) and
    spans the slots ``[lo, hi]`` of its leaves.
    """

    def __init__(self, children, height, order):
        self.children = [np.asarray(k, dtype=np.int64) for k in children]
        self.height = np.asarray(height, dtype=np.float64)
        self.order = np.asarray(order, dtype=np.int64)
        n = self.n_leaves = self.order.size
        total = n + len(self.children)
        place = np.empty(n)
        place[self.order] = np.arange(n)
        self.x, self.lo, self.hi = np.empty(total), np.empty(total), np.empty(total)
        self.x[:n], self.lo[:n], self.hi[:n] = place + 0.5, place, place + 1.0
        for i, kids in enumerate(self.children):
            xs = self.x[kids]
            self.x[n + i] = (xs.min() + xs.max()) / 2.0
            self.lo[n + i] = self.lo[kids].min()
            self.hi[n + i] = self.hi[kids].max()

    def expanded(self, max_subtrees):
        """Which internal nodes are drawn with their children: the highest, keeping at most ``max_subtrees`` visible.

        Expanding every node at or above a height shows ``1 + sum(children - 1)``
        subtrees; the cut is the lowest height for which that stays within
        ``max_subtrees`` (nodes at one height are expanded together, so a
        taxonomy is cut at a level).  The root is always expanded.  Needs
        heights that never decrease towards the root (WPGMA trees and the
        taxonomy have that).
        """
        heights = self.height[self.n_leaves:]
        if not heights.size:
            return np.zeros(0, dtype=bool)
        gain = np.array([k.size - 1 for k in self.children], dtype=np.int64)
        levels, inverse = np.unique(-heights, return_inverse=True)  # distinct heights, highest first
        shown = 1 + np.cumsum(np.bincount(inverse, weights=gain, minlength=levels.size))
        last = max(0, int(np.searchsorted(shown, max_subtrees, side="right")) - 1)
        return heights >= -levels[last]

    def segments(self, expanded):
        """Line segments of the expanded nodes (a bar over the children, a stem to each) and wedges of the others."""
        n = self.n_leaves
        lines, wedges = [], []
        for i in np.flatnonzero(expanded):
            kids = self.children[i]
            top = self.height[n + i]
            xs, hs = self.x[kids], self.height[kids]
            lines.append(np.array([[[xs.min(), top], [xs.max(), top]]]))
            lines.append(np.stack([np.stack([xs, hs], 1), np.stack([xs, np.full_like(xs, top)], 1)], 1))
            for c in kids[kids >= n]:
                if not expanded[c - n]:
                    wedges.append([(self.lo[c], 0.0), (self.x[c], self.height[c]), (self.hi[c], 0.0)])
        return np.concatenate(lines) if lines else np.zeros((0, 2, 2)), wedges

    def collapsed(self, expanded):
        """The visible subtrees drawn as wedges: internal nodes whose parent is expanded but which are not."""
        n = self.n_leaves
        out = [c for i in np.flatnonzero(expanded) for c in self.children[i] if c >= n and not expanded[c - n]]
        return np.array(out, dtype=np.int64)

    def visible_leaves(self, expanded):
        """Classes hanging directly from an expanded node (drawn as leaves)."""
        n = self.n_leaves
        out = [c for i in np.flatnonzero(expanded) for c in self.children[i] if c < n]
        return np.array(out, dtype=np.int64)


def linkage_tree(Z):
    """The :class:`DrawnTree` of a linkage matrix (scipy's format), leaves in scipy's dendrogram order."""
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0] + 1
    order = leaves_list(Z) if n > 1 else np.zeros(1, dtype=np.int64)
    return DrawnTree(Z[:, :2].astype(np.int64), np.concatenate([np.zeros(n), Z[:, 2]]), order)


def taxonomy_tree(hierarchy):
    """The :class:`DrawnTree` of the taxonomy's own nodes (multifurcating), leaves in taxonomy order.

    An internal node is a path prefix shared by the classes below it; the
    root is the empty prefix.  A node with prefix length ``k`` sits at height
    ``n_levels - k`` (in levels), every class at 0; a class whose path is also
    the prefix of other classes hangs from its own node.  Internal node ``C +
    i`` has the ``i``-th prefix, longest prefixes first.
    """
    paths = [tuple(p) for p in hierarchy.paths]
    n = len(paths)
    prefixes = {p[:k] for p in paths for k in range(len(p))}
    ancestors = {p for p in paths if p in prefixes}  # classes that are also internal nodes
    internal = sorted(prefixes, key=lambda p: (-len(p), p))
    index = {p: n + i for i, p in enumerate(internal)}
    children = [[] for _ in internal]
    for p in internal[:-1]:  # every prefix but the root has a parent
        children[index[p[:-1]] - n].append(index[p])
    for c, p in enumerate(paths):
        children[index[p if p in ancestors else p[:-1]] - n].append(c)
    height = np.concatenate([np.zeros(n), [hierarchy.n_levels - len(p) for p in internal]])
    return DrawnTree(children, height, taxonomy_order(hierarchy)), internal


def _tree_width(n_visible):
    return float(np.clip(0.1 * n_visible + 4.0, 10.0, 24.0))


def _strip(ax, colours, n_slots):
    """A strip of leaf colours attached under ``ax`` (inset axes: no gap, the same x range)."""
    strip = ax.inset_axes([0.0, -0.07, 1.0, 0.07])
    strip.imshow(colours[None], aspect="auto", extent=(0, n_slots, 0, 1), interpolation="antialiased")
    strip.set_xlim(0, n_slots)
    strip.set_yticks([])
    strip.set_xticks([])
    return strip


def _leaf_labels(strip, tree, expanded, names, colours, width_pt, group_label):
    """Labels under the strip where they fit: visible classes (coloured), and wedges named by ``group_label``."""
    leaves = tree.visible_leaves(expanded)
    wedges = tree.collapsed(expanded)
    items = [(tree.x[c], names[c], colours[c]) for c in leaves]
    rooms = [width_pt / tree.n_leaves] * len(leaves)
    if group_label is not None:
        for w in wedges:
            items.append((tree.x[w], group_label(w), "0.2"))
            rooms.append(width_pt * (tree.hi[w] - tree.lo[w]) / tree.n_leaves)
    font, fits = _label_font(rooms)
    shown = [item for item, ok in zip(items, fits) if ok]
    if not shown:
        return 0
    strip.set_xticks([x for x, _, _ in shown], [_short(t) for _, t, _ in shown], rotation=90, fontsize=font)
    strip.tick_params(axis="x", length=0)
    for tick, (_, _, colour) in zip(strip.get_xticklabels(), shown):
        tick.set_color(colour)
    return max(len(_short(t)) for _, t, _ in shown) * font


def plot_trees(path, Z_learned, hierarchy, title="W", distance=None, run=None):
    """The learned tree (WPGMA, ``Z_learned``) above the taxonomy's own tree, each over a strip of group colours.

    ``title`` names the representatives (``W``, ``proto``, ``weights``),
    ``distance`` (``euc`` or ``arccos``) gives the unit of the merge heights,
    ``run`` the run folder or ``--weights`` file for the figure's title.
    The WPGMA tree of ``d_T`` is not drawn: its merges at equal heights stand
    for one multifurcating node of the taxonomy, which the lower panel draws
    as one node.  The strip colours
    every class by its group at :func:`strip_level`; the legend beside the
    panels names the level (and its depth) and the groups.
    """
    n = hierarchy.n_classes
    level = strip_level(hierarchy)
    colours, legend = leaf_colours(hierarchy, level)
    learned = linkage_tree(Z_learned)
    taxonomy, prefixes = taxonomy_tree(hierarchy)
    limit = TRUNCATED_SUBTREES if n > MAX_DRAWN_LEAVES else n
    expanded = [learned.expanded(limit), taxonomy.expanded(limit)]
    visible = max(min(n, limit), 2)
    tree_w = _tree_width(visible)
    entries = legend if len(legend) <= MAX_LEGEND else legend[: MAX_LEGEND - 1]
    columns = int(np.ceil(len(entries) / 30))
    chars = max([len(_short(name)) for name, _ in entries] + [24])
    legend_w = columns * (0.075 * chars + 0.5)
    fig = plt.figure(figsize=(tree_w + legend_w, 9.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[tree_w, legend_w])
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])]
    width_pt = 72.0 * tree_w * 0.9
    unit = DISTANCE_UNITS.get(distance, "representative distance")
    names = [str(name) for name in hierarchy.names]

    for ax, tree, shown in zip(axes, (learned, taxonomy), expanded):
        lines, wedges = tree.segments(shown)
        ax.add_collection(LineCollection(lines, colors="0.25", linewidths=0.8 if visible <= 200 else 0.5))
        if wedges:
            ax.add_collection(PolyCollection(wedges, facecolors="0.85", edgecolors="0.55", linewidths=0.4))
        ax.set_xlim(0, n)
        ax.set_ylim(0, max(float(tree.height.max()), 1e-9) * 1.04)
        ax.set_xticks([])
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    truncated = [bool(tree.collapsed(shown).size) for tree, shown in zip((learned, taxonomy), expanded)]

    axes[0].set_ylabel(f"WPGMA merge height\n{unit}")
    axes[0].set_title(
        f"learned tree of {title} (WPGMA)"
        + (f": its top {learned.collapsed(expanded[0]).size + learned.visible_leaves(expanded[0]).size} subtrees, "
           "grey wedges hold the classes below" if truncated[0] else ""),
        fontsize=10,
    )
    levels = hierarchy.n_levels
    axes[1].set_yticks(np.arange(levels + 1), [f"level {levels - 1 - h}" if h < levels else "root" for h in range(levels + 1)],
                       fontsize=8)
    axes[1].set_ylabel("taxonomy level")
    wedge_level = None
    if truncated[1]:
        wedge_level = levels - 1 - int(taxonomy.height[taxonomy.collapsed(expanded[1])].max())
    axes[1].set_title(
        "taxonomy (a node with several children is one node)"
        + (f": drawn to level {wedge_level}, grey wedges are its groups" if truncated[1] else ""),
        fontsize=10,
    )

    strips = [_strip(ax, colours[tree.order], n) for ax, tree in zip(axes, (learned, taxonomy))]
    _leaf_labels(strips[0], learned, expanded[0], names, colours, width_pt, None)
    if not _leaf_labels(strips[1], taxonomy, expanded[1], names, colours, width_pt,
                        lambda w: prefixes[w - n][-1] if prefixes[w - n] else "root"):
        # no class or wedge label fits: name the colour groups, contiguous in taxonomy order
        _group_ticks(strips[1], hierarchy, taxonomy.order, level, "x", width_pt, lines=False)
        strips[1].tick_params(axis="x", length=0)

    key = fig.add_subplot(grid[:, 1])
    key.axis("off")
    handles = [matplotlib.patches.Patch(color=colour, label=_short(name)) for name, colour in entries]
    if len(legend) > len(entries):
        handles.append(matplotlib.patches.Patch(color="w", label=f"... {len(legend) - len(entries)} more groups"))
    key.legend(
        handles=handles, loc="upper left", ncol=columns, fontsize=8 if len(handles) <= 30 else 7, frameon=False,
        title=f"strip colour: the {hierarchy.n_groups(level)} groups\nof level {level} (depth {level + 1} below the root)",
        title_fontsize=8, borderaxespad=0.0,
    )
    _suptitle(fig, f"learned class tree of {title} above the taxonomy ({n} classes)", run, distance)
    _save(fig, path)


# ---------------------------------------------------------------- distances
def binned_means(M, order, n_bins, chunk_entries=1 << 22):
    """``[n_bins, n_bins]`` means of ``M[order][:, order]`` over bins of consecutive classes, and the bin edges.

    The bins split ``0..C`` into ``n_bins`` parts of (almost) equal size; the
    diagonal entries ``M[i, i]`` are left out of every mean, so with one class
    per bin the result is the reordered matrix with NaN on the diagonal.
    Rows are read in chunks of about ``chunk_entries`` entries (memory
    O(C n_bins) beyond ``M`` itself).
    """
    order = np.asarray(order, dtype=np.int64)
    C = order.size
    edges = np.linspace(0, C, n_bins + 1).round().astype(np.int64)
    sizes = np.diff(edges)
    bin_of = np.repeat(np.arange(n_bins), sizes)
    sums = np.zeros((n_bins, n_bins))
    step = max(1, int(chunk_entries) // max(C, 1))
    for start in range(0, C, step):
        rows = order[start : start + step]
        block = np.add.reduceat(np.asarray(M[rows][:, order], dtype=np.float64), edges[:-1], axis=1)
        bins = bin_of[start : start + step]
        first = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])  # the chunk's rows fall in consecutive bins
        sums[bins[first]] += np.add.reduceat(block, first, axis=0)
    diagonal = np.asarray(M[order, order], dtype=np.float64)
    sums[np.arange(n_bins), np.arange(n_bins)] -= np.bincount(bin_of, weights=diagonal, minlength=n_bins)
    counts = sizes[:, None] * sizes[None, :] - np.diag(sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, edges


def _group_ticks(ax, hierarchy, order, level, axis, size_pt, lines=True):
    """Name the groups of ``level`` at the centres of their blocks (where they fit) and line their borders.

    Returns the number of groups named."""
    groups = hierarchy.level_groups(level)[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(groups)) + 1])
    ends = np.concatenate([starts[1:], [groups.size]])
    names = group_names(hierarchy, level)
    rooms = size_pt * (ends - starts) / groups.size
    font, fits = _label_font(rooms)
    centres = ((starts + ends) / 2.0)[fits]
    labels = [_short(names[groups[s]]) for s in starts[fits]]
    if axis == "x":
        ax.set_xticks(centres, labels, fontsize=font)
        for tick, text, room in zip(ax.get_xticklabels(), labels, rooms[fits]):
            tick.set_rotation(0 if 0.6 * font * len(text) <= room else 90)
    else:
        ax.set_yticks(centres, labels, fontsize=font)
    if lines and starts.size <= 200:
        for edge in starts[1:]:
            ax.axhline(edge, color="w", lw=0.6)
            ax.axvline(edge, color="w", lw=0.6)
    return int(fits.sum())


def plot_distances(path, D, hierarchy, title="W", distance="euc", run=None):
    """The representative distance matrix beside ``d_T``, classes in taxonomy order (sorted paths).

    The zero diagonal is grey and left out of the colour range; the groups of
    :func:`label_level` name the axes (the classes too, up to 40); above
    ``MAX_PIXELS`` classes every cell is a mean over bins of consecutive
    classes (:func:`binned_means`), so the figure costs one pass over ``D``.
    """
    n = hierarchy.n_classes
    order = taxonomy_order(hierarchy)
    n_bins = min(n, MAX_PIXELS)
    level = label_level(hierarchy)
    binned = n_bins < n
    note = f"\neach cell: the mean over bins of about {n / n_bins:.1f} classes" if binned else ""
    fig, axes = plt.subplots(1, 2, figsize=(14, 7.6), layout="constrained", sharey=True)
    panels = [
        (D, f"{title}: distances between representatives", DISTANCE_UNITS.get(distance, str(distance))),
        (hierarchy.distances, "taxonomy: tree distances d_T", "tree distance d_T (edges)"),
    ]
    size_pt = 72.0 * 5.2
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.8")
    for ax, (matrix, name, unit) in zip(axes, panels):
        means, _ = binned_means(matrix, order, n_bins)
        finite = means[np.isfinite(means)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        image = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, interpolation="nearest", extent=(0, n, n, 0),
                          vmin=low, vmax=high if high > low else low + 1e-9)
        ax.set_title(name, fontsize=10)
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label(unit + note, fontsize=8)
        if matrix is hierarchy.distances and not binned:
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
        _group_ticks(ax, hierarchy, order, level, "x", size_pt)
    font, fits = _label_font([size_pt / n] * n)
    if n <= 40 and fits.all():
        axes[0].set_yticks(np.arange(n) + 0.5, [_short(hierarchy.names[c]) for c in order], fontsize=font)
    else:
        _group_ticks(axes[0], hierarchy, order, level, "y", size_pt)
    axes[0].set_xlabel(f"level {level} groups, classes in taxonomy order", fontsize=8)
    axes[1].set_xlabel(f"level {level} groups, classes in taxonomy order", fontsize=8)
    _suptitle(fig, f"distances between the {n} classes; the diagonal (0) is grey, left out of the colour range",
              run, distance)
    _save(fig, path)


# ------------------------------------------------------------------ history
def _column(history, name):
    if history is None or name not in history.columns:
        return None
    import pandas as pd

    values = pd.to_numeric(history[name], errors="coerce")
    return values if values.notna().any() else None


def _varies(values):
    v = values.dropna().to_numpy(dtype=np.float64)
    return v.size > 1 and float(v.max() - v.min()) > 1e-9 * max(1.0, float(np.abs(v).max()))


def history_panels(history):
    """The panels of :func:`plot_history`: ``[(title, y label, [(column, legend label), ...]), ...]``.

    Loss and accuracies where their columns hold numbers; the scale only where
    it changes (a fixed scale is named in the title instead).
    """
    if history is None or len(history) == 0:
        return []
    scale = _column(history, "scale")
    panels = [
        ("loss", "training loss", [("train_loss", "train")]),
        ("accuracy", "accuracy (fraction)",
         [("train_acc", "train"), ("val_acc", "val (W)"), ("val_acc_proto", "val (prototypes)"), ("test_acc", "test (W)")]),
    ]
    if scale is not None and _varies(scale):
        panels.append(("scale", "scale s", [("scale", "s")]))
    panels = [(t, unit, [(c, lab) for c, lab in cols if _column(history, c) is not None]) for t, unit, cols in panels]
    return [p for p in panels if p[2]]


def plot_history(path, history, run=None):
    """Training curves (:func:`history_panels`): loss, accuracies (train / val with W / val with prototypes), scale.

    Epoch ticks are integers; every panel has a legend, even for one line.
    Returns False (and writes nothing) when there is nothing to draw.
    """
    panels = history_panels(history)
    if not panels:
        return False
    import pandas as pd

    epoch = _column(history, "epoch")
    x = epoch if epoch is not None else pd.Series(np.arange(1, len(history) + 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.9), squeeze=False, layout="constrained")
    for ax, (title, unit, cols) in zip(axes[0], panels):
        for col, label in cols:
            y = _column(history, col)
            ok = y.notna() & x.notna()
            ax.plot(x[ok], y[ok], marker="o" if ok.sum() < 30 else None, ms=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    what = "training curves"
    scale = _column(history, "scale")
    if scale is not None and not _varies(scale):
        what += f"; scale s fixed at {float(scale.dropna().iloc[0]):g}"
    _suptitle(fig, what, run)
    _save(fig, path)
    return True


# ------------------------------------------------------------------ hs@k
def plot_hs_curve(path, curve, chance=None, run=None, n_test=None, distance=None):
    """``hs@k`` against k, beside the expected curve of random embeddings.

    ``chance``: :func:`utils.evaluation.chance.hs_chance_curve` of the test labels.

    ``n_test`` (the number of test images) explains the end point: a curve
    that reaches k = N - 1 ends at 1 for any embedding (every other image is
    a neighbour); otherwise it ends at k = 250, the range of ``ahs250``.
    """
    curve = np.asarray(curve, dtype=np.float64)
    k = np.arange(1, curve.size + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    area = ahs(curve)
    ax.plot(k, curve, label="this model" + (f" (ahs250 {area:.3f})" if area is not None else ""))
    if chance is not None:
        chance = np.asarray(chance, dtype=np.float64)
        area = ahs(chance)
        ax.plot(np.arange(1, chance.size + 1), chance, "--", color="0.45",
                label="random embeddings, expected" + (f" (ahs250 {area:.3f})" if area is not None else ""))
    if curve.size:
        end = int(k[-1])
        ax.plot([end], [curve[-1]], "o", color="C0", ms=4)
        if n_test is not None and end == int(n_test) - 1:
            text = f"k = N - 1 = {end}: every other test image is a\nneighbour, so hs@k = 1 for any embedding"
        elif end == HS_K_MAX:
            text = f"ends at k = {end}: ahs250 is the area\nunder hs@1 .. hs@250"
        else:
            text = f"ends at k = {end}"
        ax.annotate(text, xy=(end, curve[-1]), xytext=(0.97, 0.08), textcoords="axes fraction", ha="right",
                    fontsize=8, arrowprops=dict(arrowstyle="->", color="0.4", lw=0.7))
    ax.set_xlabel("k (nearest test images)")
    ax.set_ylabel("hs@k (share of the best possible\nclass similarity of k neighbours)")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(int(k[-1]) if k.size else 1, 1) * 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False, ncol=2)
    _suptitle(fig, "hierarchical similarity of the nearest test images (hs@k)", run,
              None if distance is None else distance)
    _save(fig, path)
