"""The class hierarchy: one type that owns class paths, tree distances and levels.

A class is described by its *path*: the node names from the top level down to
the class itself, e.g. ``["Animals", "Mammals", "large_carnivores", "bear"]``.
The root is implicit.  Paths are lists, never ``/``-joined strings, because node
names may contain ``/`` (NABirds: "Female/juvenile").  Paths may differ in
length, and one class may be an ancestor of another (a plankton folder can hold
images and sub-folders).

Formulas:

* tree distance ``d_T(i, j) = (len_i - k) + (len_j - k)`` where ``k`` is the
  number of leading path elements the two paths share (edges on the shortest
  path through the tree);
* level ``l`` of a class is its path prefix of length ``l + 1``; a class whose
  path is shorter is its own group at that level (groups are compared by their
  full prefix, never by the bare node name);
* the transform ``T`` and the class similarity used by MDS and HS@R.
"""
import csv
import io
import json

import numpy as np

from utils.errors import UserError
from utils.io import write_text

DISTANCES = ("euc", "arccos")


def transform(d, distance="euc", beta=1.0):
    """Map tree distances to representative-space distances.

    ``euc``: ``sqrt(2) d / (beta + d)`` (a chord length in [0, sqrt 2));
    ``arccos``: ``(pi/2) d / (beta + d)`` (an angle in [0, pi/2)).
    """
    d = np.asarray(d, dtype=np.float64)
    ratio = d / (beta + d)
    if distance == "euc":
        return np.sqrt(2.0) * ratio
    if distance == "arccos":
        return (np.pi / 2) * ratio
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def class_similarity(d, distance="euc", beta=1.0):
    """Similarity of two classes at tree distance ``d`` (HS@R).

    ``euc``: ``1 - T(d)^2 / 2`` (the cosine of the chord); ``arccos``: ``cos T(d)``.
    Identical classes have similarity 1.
    """
    t = transform(d, distance, beta)
    if distance == "euc":
        return 1.0 - t**2 / 2.0
    return np.cos(t)


class Hierarchy:
    """Class names and paths in a fixed class order (index = label).

    ``distances`` is the C x C tree-distance matrix (int16: 20,000 classes take
    0.8 GB; int64 for a tree over 16,000 levels deep), ``n_levels`` the
    number of levels (longest path length) and ``level_groups(l)`` the group id
    of every class at level ``l``.
    """

    def __init__(self, names, paths):
        names = [str(n) for n in names]
        paths = [[str(node) for node in p] for p in paths]
        if len(names) != len(paths):
            raise ValueError("names and paths must have the same length")
        if not names:
            raise ValueError("a hierarchy needs at least one class")
        for name, path in zip(names, paths):
            if not path:
                raise ValueError(f"class {name!r} has an empty path")
        keys = [tuple(p) for p in paths]
        if len(set(keys)) != len(keys):
            raise ValueError("two classes have the same path")
        self.names = names
        self.paths = paths
        self.lengths = np.array([len(p) for p in paths], dtype=np.int64)
        self.n_levels = int(self.lengths.max())
        self._groups = [self._prefix_ids(level) for level in range(self.n_levels)]
        self._distances = None

    # ------------------------------------------------------------------ basics
    def __len__(self):
        return len(self.names)

    @property
    def n_classes(self):
        return len(self.names)

    def __repr__(self):
        return f"Hierarchy({self.n_classes} classes, {self.n_levels} levels)"

    def __eq__(self, other):
        return isinstance(other, Hierarchy) and self.names == other.names and self.paths == other.paths

    # ------------------------------------------------------------------ levels
    def _prefix_ids(self, level):
        """Group id per class at ``level``: equal ids <=> equal path prefix of length level+1.

        A class whose path is shorter than ``level + 1`` keeps its full path as
        its prefix, which no other class shares at that level (paths are unique
        and every other class there has a longer prefix), so it is its own group.
        """
        keys = [tuple(p[: level + 1]) for p in self.paths]
        lookup = {}
        return np.array([lookup.setdefault(k, len(lookup)) for k in keys], dtype=np.int64)

    def level_groups(self, level):
        """Group id (0..G-1, in order of first appearance) of each class at ``level``."""
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be in 0..{self.n_levels - 1}, got {level}")
        return self._groups[level]

    def level_names(self, level):
        """The group names at ``level`` (the prefix joined by ' > '), indexed by group id."""
        groups = self.level_groups(level)
        names = {}
        for cls, gid in enumerate(groups):
            names.setdefault(int(gid), " > ".join(self.paths[cls][: level + 1]))
        return [names[g] for g in range(len(names))]

    def n_groups(self, level):
        return int(self.level_groups(level).max()) + 1

    # --------------------------------------------------------------- distances
    @property
    def distances(self):
        """``d_T``, built on first use (a hierarchy read only to check a file never builds it)."""
        if self._distances is None:
            self._distances = self._tree_distances()
        return self._distances

    def _tree_distances(self, block_bytes=64 << 20):
        """``d_T`` for all pairs, vectorised over classes (one pass per level), a block of rows at a time.

        Two classes share the prefix of length l + 1 exactly when they are in
        one group at level l (a class shorter than that is a group of its own).
        """
        n = self.n_classes
        d = np.empty((n, n), dtype=np.int16 if 2 * self.n_levels < 2**15 else np.int64)
        rows = max(1, block_bytes // (8 * n))
        same = np.empty((rows, n), dtype=bool)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            shared = np.zeros((r1 - r0, n), dtype=np.int16)  # levels shared by each pair
            for level in range(self.n_levels):
                ids = self._groups[level]
                np.equal(ids[r0:r1, None], ids[None, :], out=same[: r1 - r0])
                shared += same[: r1 - r0]
            block = d[r0:r1]
            np.add(self.lengths[r0:r1, None], self.lengths[None, :], out=block, casting="unsafe")
            block -= 2 * shared
            block[np.arange(r1 - r0), np.arange(r0, r1)] = 0
        return d

    def transformed_distances(self, distance="euc", beta=1.0):
        """``T(d_T)``: the target distances of ``--mds_W``."""
        return transform(self.distances, distance, beta)

    def similarities(self, distance="euc", beta=1.0):
        """Class similarity matrix used by HS@R."""
        return class_similarity(self.distances, distance, beta)

    # ----------------------------------------------------------------- subsets
    def living_mask(self):
        """Classes whose top-level group name does not start with ``non``.

        (Plankton: nonliving, nonplankton, nonzooplankton are not "living".)
        """
        return np.array([not p[0].lower().startswith("non") for p in self.paths], dtype=bool)

    def subset(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return Hierarchy([self.names[i] for i in indices], [self.paths[i] for i in indices])

    # ---------------------------------------------------------------- file I/O
    def to_csv_text(self):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["index", "class", "path"])
        for i, (name, path) in enumerate(zip(self.names, self.paths)):
            writer.writerow([i, name, json.dumps(path, ensure_ascii=False)])
        return buf.getvalue()

    def to_csv(self, path):
        """Write ``index,class,path`` with ``path`` a JSON array (atomic)."""
        write_text(path, self.to_csv_text())

    @classmethod
    def from_csv(cls, path):
        """Read a ``hierarchy.csv`` written by :meth:`to_csv`."""
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as err:
            raise UserError(f"cannot read hierarchy file {path}: {err.strerror}") from None
        try:
            rows.sort(key=lambda r: int(r["index"]))
            indices = [int(r["index"]) for r in rows]
            names = [r["class"] for r in rows]
            paths = [json.loads(r["path"]) for r in rows]
        except (KeyError, TypeError, ValueError):
            raise UserError(
                f"{path} is not a hierarchy file: expected columns index,class,path with path a JSON array"
            ) from None
        if indices != list(range(len(rows))) or not all(isinstance(p, list) for p in paths):
            raise UserError(f"{path} is not a hierarchy file: indices must run 0..C-1 and paths be JSON arrays")
        return cls(names, paths)
