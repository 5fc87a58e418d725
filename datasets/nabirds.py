"""NABirds from the folder as distributed (docs/datasets.md).

``<data_root>/nabirds/`` holds ``images/<class id>/*.jpg`` and the text tables
(space-separated, one record a line):

* ``images.txt``: ``<image id> <path below images/>``
* ``classes.txt``: ``<class id> <name>`` (names contain spaces and ``/``)
* ``hierarchy.txt``: ``<child id> <parent id>``
* ``image_class_labels.txt``: ``<image id> <class id>``
* ``train_test_split.txt``: ``<image id> <1 = train, 0 = test>``

Classes are the class ids that have images (555 in NABirds), ordered by
ascending id.  A class's path runs from the root (``Birds``) down to the class,
following parent *ids* in ``hierarchy.txt`` (names repeat across levels, e.g. a
species node and its single leaf class).  Whole images, resized.

Image order (what the split draws from): the rows of the paper's image list
(a ``Filepath,Class`` CSV in the folder) when present, read from
``images_128/`` (the paper's resized copy) or else the same files in
``images/``; otherwise the images of ``images.txt`` in sorted path order.
"""
import os

import numpy as np

from datasets.common import cut_permutation, random_split, require_folder, split_train_pool, train_augmentation
from datasets.taxonomy import IMAGE_COLUMNS, read_csv, build_file_splits, csv_header
from utils.errors import UserError
from utils.hierarchy import Hierarchy

FOLDER = "nabirds"
TABLES = ("images.txt", "classes.txt", "hierarchy.txt", "image_class_labels.txt", "train_test_split.txt")
#: The paper's resized copy of ``images/`` (read instead of ``images/`` when present with an image list).
RESIZED_FOLDER = "images_128"
#: Images in the distributed NABirds; ``--small`` counts are for this many.
FULL_SIZE = 48562
#: ``--small``: training and (with ``--use_val``) validation images of the full set.
SMALL_TRAIN, SMALL_VAL = 5000, 30000


def _read_table(folder, fname, n_fields):
    """Rows of ``fname`` split on whitespace into ``n_fields`` (the last keeps its spaces)."""
    path = os.path.join(folder, fname)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {folder} must be the NABirds folder as distributed "
                        f"({', '.join(TABLES)} and images/)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path} ({getattr(err, 'strerror', None) or err}); "
                        "restore it from the NABirds archive") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=n_fields - 1)
        if len(parts) != n_fields:
            raise UserError(f"{path} line {number} is malformed ({line.strip()!r}); expected {n_fields} fields")
        rows.append((number, parts))
    return path, rows


def _int(text, path, number):
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{path} line {number}: {text!r} is not an integer id") from None


def class_paths(names, parents, class_ids):
    """Path (list of names, root first) of every id in ``class_ids``, walking parent ids."""
    paths = []
    for cid in class_ids:
        chain, node, seen = [], cid, set()
        while node is not None:
            if node in seen:
                raise UserError(f"hierarchy.txt has a cycle through class id {node}; restore it from the archive")
            if node not in names:
                raise UserError(f"hierarchy.txt refers to class id {node}, which classes.txt lacks")
            seen.add(node)
            chain.append(names[node])
            node = parents.get(node)
        paths.append(chain[::-1])
    return paths


def small_counts(n):
    """``--small``: (train, val) image counts for ``n`` images.

    5,000 and 30,000 for the full set (``n >= FULL_SIZE``); a smaller archive
    gets the same fractions of its size, ``int(5000 n / 48562)`` and
    ``int(30000 n / 48562)``, at least 1 each.
    """
    if n >= FULL_SIZE:
        return SMALL_TRAIN, SMALL_VAL
    return max(1, int(SMALL_TRAIN * n / FULL_SIZE)), max(1, int(SMALL_VAL * n / FULL_SIZE))


def find_image_list(folder):
    """The paper's image list in ``folder``: the one ``*.csv`` with the columns ``Filepath,Class``, or None."""
    found = []
    for fname in sorted(os.listdir(folder)):
        if fname.startswith(".") or not fname.lower().endswith(".csv"):
            continue
        path = os.path.join(folder, fname)
        header = csv_header(path)
        if header is not None and all(c in header for c in IMAGE_COLUMNS):
            found.append(path)
    if len(found) > 1:
        raise UserError(f"{folder} holds {len(found)} image lists (Filepath,Class): "
                        f"{', '.join(os.path.basename(f) for f in found)}; keep one")
    return found[0] if found else None


def image_list_order(list_csv, rel_paths):
    """Positions in ``rel_paths`` (paths below ``images/``) of the image list's rows, in row order.

    A Filepath's part after its last ``images_128`` or ``images`` folder is
    the path below ``images/``.
    """
    position = {rel.replace("\\", "/"): i for i, rel in enumerate(rel_paths)}
    order = []
    for line, row in enumerate(read_csv(list_csv, IMAGE_COLUMNS), start=2):
        parts = [p for p in row["Filepath"].replace("\\", "/").split("/") if p]
        cut = max((i for i, p in enumerate(parts) if p in (RESIZED_FOLDER, "images")), default=None)
        rel = None if cut is None else "/".join(parts[cut + 1:])
        if rel not in position:
            raise UserError(f"{list_csv} line {line}: {row['Filepath']!r} is not an image of images.txt "
                            f"(expected .../{RESIZED_FOLDER}/<class id>/<file>); fix the list or remove it")
        order.append(position[rel])
    if not order:
        raise UserError(f"{list_csv} lists no images; add one row per image (Filepath,Class) or remove it")
    if len(set(order)) != len(order):
        raise UserError(f"{list_csv} lists an image twice; keep one row per image")
    return np.asarray(order, dtype=np.int64)


def load_nabirds(data_root, *, use_val=False, seed=0, resize=128, aug=False, official_split=False, small=False,
                 cache=None):
    """NABirds (docs/datasets.md); returns :class:`DataSplits`.

    Split: the paper's draw (:func:`datasets.common.random_split`), 70/10/20
    (``use_val``) or 90/10, over the image order (module docstring).
    ``small``: the first :func:`small_counts` images of the same draw train
    (and, with ``use_val``, the next validate), the rest test.  With
    ``official_split`` the test set is ``train_test_split.txt``'s test images
    and, with ``use_val``, 10% of its training images validate.
    ``aug``: random affine + horizontal flip on the training split only.
    ``resize``: side in pixels (None: 128).
    """
    resize = 128 if resize is None else resize
    folder = os.path.join(os.fspath(data_root), FOLDER)
    require_folder(folder, "NABirds folder", "unpack the NABirds archive there or fix --data_root")

    names_path, rows = _read_table(folder, "classes.txt", 2)
    names = {}
    for number, (cid, name) in rows:
        names[_int(cid, names_path, number)] = name.strip()
    hier_path, rows = _read_table(folder, "hierarchy.txt", 2)
    parents = {}
    for number, (child, parent) in rows:
        child, parent = _int(child, hier_path, number), _int(parent, hier_path, number)
        if child != parent:  # a root listed as its own parent is still the root
            parents[child] = parent

    if small and official_split:
        raise UserError("--small and --official_split contradict each other (--small draws its own split); "
                        "drop one of them")
    images_path, rows = _read_table(folder, "images.txt", 2)
    image_ids = [img for _, (img, _) in rows]
    rel_paths = [rel.strip() for _, (_, rel) in rows]
    if not image_ids:
        raise UserError(f"{images_path} lists no images; restore it from the NABirds archive")
    if len(set(image_ids)) != len(image_ids):
        raise UserError(f"{images_path} lists an image id twice; restore it from the archive")
    image_list = find_image_list(folder)
    if image_list is not None:
        order = image_list_order(image_list, rel_paths)
        resized = os.path.isdir(os.path.join(folder, RESIZED_FOLDER))
        image_folder = RESIZED_FOLDER if resized else "images"
    else:
        order = np.asarray(sorted(range(len(rel_paths)), key=rel_paths.__getitem__), dtype=np.int64)
        image_folder = "images"
    image_ids = [image_ids[i] for i in order]
    rel_paths = [rel_paths[i] for i in order]

    labels_path, rows = _read_table(folder, "image_class_labels.txt", 2)
    class_of = {img: _int(cid, labels_path, number) for number, (img, cid) in rows}
    missing = [img for img in image_ids if img not in class_of]
    if missing:
        raise UserError(f"{labels_path} has no class for image {missing[0]} ({len(missing)} images); "
                        "restore it from the archive")
    image_class = np.array([class_of[img] for img in image_ids], dtype=np.int64)
    class_ids = np.unique(image_class)  # ascending
    unknown = [int(c) for c in class_ids if int(c) not in names]
    if unknown:
        raise UserError(f"{labels_path} uses class id {unknown[0]}, which classes.txt lacks")
    paths = class_paths(names, parents, [int(c) for c in class_ids])
    hierarchy = Hierarchy([names[int(c)] for c in class_ids], paths)
    labels = np.searchsorted(class_ids, image_class)

    files = [os.path.join(folder, image_folder, *rel.replace("\\", "/").split("/")) for rel in rel_paths]
    absent = [f for f in files if not os.path.isfile(f)]
    if absent:
        raise UserError(f"{len(absent)} of the {len(files)} images listed in {images_path} are missing, "
                        f"e.g. {absent[0]}; unpack the whole NABirds archive")

    if official_split:
        split_path, rows = _read_table(folder, "train_test_split.txt", 2)
        is_train = {img: flag.strip() for _, (img, flag) in rows}
        lacking = [img for img in image_ids if img not in is_train]
        if lacking:
            raise UserError(f"{split_path} has no entry for image {lacking[0]} ({len(lacking)} images); "
                            "restore it from the archive")
        flags = np.array([is_train[img] == "1" for img in image_ids])
        train, val = split_train_pool(np.flatnonzero(flags), use_val=use_val, seed=seed, what="NABirds training")
        test = np.flatnonzero(~flags)
        if len(test) == 0:
            raise UserError(f"{split_path} marks no test image; restore it from the archive")
        split = (train, val, test)
    elif small:
        n_train, n_val = small_counts(len(files))
        if use_val:
            split = tuple(cut_permutation(len(files), [n_train, n_val], seed, what="NABirds images"))
        else:
            train, test = cut_permutation(len(files), [n_train], seed, what="NABirds images")
            split = (train, None, test)
    else:
        split = random_split(len(files), use_val=use_val, seed=seed)
    return build_file_splits("nabirds", files, labels, hierarchy, gray=False, resize=resize, use_val=use_val,
                             seed=seed, cache=cache, transform=train_augmentation() if aug else None,
                             split=split, root=data_root)
