"""Taxonomy-folder datasets: MicroS, MicroL, MesoZ, the synthetic set, any user folder (docs/datasets.md).

A dataset folder's sub-folder tree is the taxonomy.  Every folder that directly
holds images is a class (also when it has sub-folders: such a class is an
ancestor of other classes); its path is its folder path below the dataset
folder.  Classes are ordered by sorted path (lists of names compared element by
element, so an ancestor comes right before its descendants).

The original two-CSV description (a class table ``Class,Path,Number`` and an
image table ``Filepath,Class``) is also read; see :func:`load_csv_description`.
There the class order is ``Number`` (the paper's class index) and the image
order is the image table's row order; for folders the image order is sorted path.

The split is the paper's seeded draw unless the dataset brings its own: top
folders named ``train``, ``val`` (or ``valid``) and ``test`` with the same class
tree below each (the ``ImageFolder`` layout; :func:`split_folder_parts`), or a
``split.csv`` in the dataset folder (``image,split``, the file every record
writes; :func:`read_split_file`).  ``DataSplits.split_source`` says which.
"""
import csv
import json
import os

import numpy as np

from datasets.common import (
    DataSplits,
    ImageFileDataset,
    check_images,
    check_resize,
    is_image_file,
    random_split,
    require_folder,
    split_warnings,
)
from utils.errors import UserError, did_you_mean
from utils.hierarchy import Hierarchy
from utils.record import SPLIT as SPLIT_FILE

#: First path components of a ``Filepath`` that are a literal placeholder for ``--data_root``.
PLACEHOLDERS = ("DATA_init", "$DATA_init", "${DATA_init}", "{DATA_init}", "<DATA_init>",
                "data_root", "$data_root", "{data_root}", "<data_root>")

CLASS_COLUMNS = ("Class", "Path", "Number")
IMAGE_COLUMNS = ("Filepath", "Class")

#: Top folder names of a dataset that ships its split (``MyData/train/cat/...``) and the part each holds.
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "test": "test"}

#: ``split`` values of a ``split.csv`` (``SPLIT_FILE``, as every record writes it) and the part each names.
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "test": "test", "unused": "unused"}
SPLIT_COLUMNS = ("image", "split")


# ------------------------------------------------------------- common tail
def relative_ids(files, root):
    """Each file's path relative to ``root``, ``/``-separated (the image names of ``split.csv``)."""
    root = os.path.abspath(os.fspath(root))
    return [os.path.relpath(os.path.abspath(f), root).replace(os.sep, "/") for f in files]


def build_file_splits(name, files, labels, hierarchy, *, gray, resize, use_val, seed, cache=None,
                      transform=None, split=None, root=None, split_source=None, warnings=()):
    """Check every image once, split, and wrap the three parts as datasets.

    ``files`` is the image order the split draws from.  ``split`` (train,
    val, test index arrays) overrides the paper's random split
    (:func:`datasets.common.random_split`).  ``transform`` is applied to the
    training part only.  ``root``: the folder image names in ``split.csv`` are
    relative to (the data root; None: the folder above the first image's class tree).
    ``split_source`` (:attr:`DataSplits.split_source`): ``"random"`` without
    ``split``, else ``"given"`` unless named.  ``warnings`` come first in the
    result's, followed by those of :func:`datasets.common.split_warnings`.
    """
    resize = check_resize(resize)
    labels = np.asarray(labels, dtype=np.int64)
    sizes, images = check_images(files, gray=gray, resize=resize, cache=cache, desc=f"checking {name} images")
    train, val, test = split if split is not None else random_split(len(files), use_val=use_val, seed=seed)
    ids = relative_ids(files, root if root is not None else os.path.dirname(os.path.commonpath(
        [os.path.abspath(f) for f in files])))
    class_names = ["/".join(p) for p in hierarchy.paths]
    notes = list(warnings) + split_warnings(labels, {"training": train, "validation": val, "test": test},
                                            class_names)

    def part(indices, tf=None):
        return ImageFileDataset(files, labels, sizes, indices, resize=resize, gray=gray, cache=images, transform=tf)

    return DataSplits(
        name=name,
        train=part(train, transform),
        val=None if val is None else part(val),
        test=part(test),
        hierarchy=hierarchy,
        in_channels=1 if gray else 3,
        train_labels=labels[train],
        image_size=resize,
        image_ids={"train": ids, "val": ids, "test": ids},
        split_source=split_source or ("random" if split is None else "given"),
        warnings=notes,
    )


def read_split_file(path, ids, alt_ids=None, *, use_val):
    """The split a ``split.csv`` gives: ``((train, val, test), warnings)``, index arrays into ``ids``.

    Columns ``image`` and ``split`` at least (a record's ``split.csv`` works
    as it is; other columns, such as its ``label``, are ignored).  ``image``
    names an image as ``ids`` do (its path below the data root, ``/``-separated)
    or, when all names match those, as ``alt_ids`` do (below the dataset
    folder).  ``split`` is one of ``train``, ``val`` (or ``valid``), ``test``,
    ``unused``.  Each part keeps the file's row order.  Without ``use_val``
    the ``val`` rows are unused.  Images the file does not list are unused
    (a warning says how many).
    """
    rows = read_csv(path, SPLIT_COLUMNS)
    if not rows:
        raise UserError(f"{path} lists no images; add one row per image (image,split)")
    names = [row["image"].replace("\\", "/").strip("/") for row in rows]
    tables = [{n: i for i, n in enumerate(ids)}]
    if alt_ids is not None:
        tables.append({n: i for i, n in enumerate(alt_ids)})
    table = max(tables, key=lambda t: sum(n in t for n in names))  # ties: the record's names
    position, seen = [], set()
    for line, (image, row) in enumerate(zip(names, rows), start=2):
        if image not in table:
            raise UserError(f"{path} line {line}: image {row['image']!r} is not in the dataset (image names are "
                            "paths below the data root, as records write them, or below the dataset folder); "
                            "fix the name or remove the row")
        if image in seen:
            raise UserError(f"{path} line {line}: image {image!r} is listed twice; keep one row per image")
        seen.add(image)
        if row["split"].lower() not in SPLIT_VALUES:
            raise UserError(f"{path} line {line}: split {row['split']!r} is not one of "
                            f"{', '.join(SPLIT_VALUES)}; fix the value")
        position.append(table[image])
    position = np.asarray(position, dtype=np.int64)
    part = np.array([SPLIT_VALUES[row["split"].lower()] for row in rows])
    return _given_split(position, part, use_val, f"{path}", "rows", len(ids) - len(seen))


def _given_split(position, part, use_val, where, what, n_unlisted=0):
    """``((train, val, test), warnings)`` from each image's index ``position`` and its ``part`` name."""
    train, val, test = (position[part == p] for p in ("train", "val", "test"))
    notes = []
    if not len(train) or not len(test):
        raise UserError(f"{where} gives no {'training' if not len(train) else 'test'} images; "
                        f"give the split train and test {what}")
    if use_val and not len(val):
        raise UserError(f"{where} gives no validation images; add val {what} or drop --use_val")
    if not use_val and len(val):
        notes.append(f"the {len(val)} validation images of {where} are unused without --use_val")
    if n_unlisted:
        notes.append(f"{n_unlisted} images of the dataset are not in {where} and are unused")
    return (train, val if use_val else None, test), notes


def order_classes(paths):
    """Sorted class paths and a map from each path (a tuple) to its class index."""
    keys = sorted(set(tuple(p) for p in paths))
    index = {k: i for i, k in enumerate(keys)}
    return [list(k) for k in keys], index


# ---------------------------------------------------------- taxonomy folder
def scan_taxonomy(folder):
    """``{path tuple: [image files]}`` for every folder below ``folder`` that directly holds images.

    Hidden files and folders (names starting with '.') are skipped; symbolic
    links are followed (each real folder is visited once).
    """
    return _walk_taxonomy(folder)[0]


def _walk_taxonomy(folder):
    """:func:`scan_taxonomy`'s classes and the path tuple of every (non-hidden) folder below ``folder``."""

    def fail(err):
        raise UserError(f"cannot read folder {err.filename}: {err.strerror}; check its permissions")

    classes = {}
    folders = []
    root_images = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        if rel != os.curdir:
            folders.append(tuple(rel.split(os.sep)))
        images = sorted(f for f in filenames if is_image_file(f))
        if not images:
            continue
        if rel == os.curdir:
            root_images = images
            continue
        classes[tuple(rel.split(os.sep))] = [os.path.join(dirpath, f) for f in images]
    if root_images and not classes:
        raise UserError(
            f"{folder} holds images ({root_images[0]}, ...) but no class sub-folders; "
            "sort the images into one folder per class (sub-folders form the taxonomy)"
        )
    if root_images:
        raise UserError(
            f"{folder} holds images directly ({root_images[0]}, ...), which belong to no class; "
            "move them into a class sub-folder or remove them"
        )
    return classes, folders


def empty_folders(classes, folders):
    """The topmost folders (path tuples) below which no image lies, in sorted order."""
    full = {key[:k] for key in classes for k in range(1, len(key) + 1)}
    return [f for f in sorted(folders) if f not in full and (len(f) == 1 or f[:-1] in full)]


def split_folder_parts(classes, folder):
    """For a dataset folder whose top folders are ``train``, ``val``/``valid``, ``test``: ``{class key: part}``.

    None when no top folder has such a name (a plain taxonomy folder).  A
    UserError when split folders are mixed with other top folders, when
    ``train`` or ``test`` is missing, or when the class trees below the split
    folders differ (naming the first difference, in sorted path order).
    """
    tops = sorted({key[0] for key in classes})
    parts = list(dict.fromkeys(SPLIT_FOLDERS.values()))  # train, val, test
    given = sorted((t for t in tops if t in SPLIT_FOLDERS), key=lambda t: parts.index(SPLIT_FOLDERS[t]))
    if not given:
        return None
    other = [t for t in tops if t not in SPLIT_FOLDERS]
    if other:
        raise UserError(f"{folder} mixes split folders ({', '.join(given)}) with other top folders ({other[0]}); "
                        "put every class folder inside each split folder, or rename the split folders")
    if "val" in given and "valid" in given:
        raise UserError(f"{folder} has both val/ and valid/ split folders; merge them into one")
    for need in ("train", "test"):
        if need not in given:
            state = "holds no images" if os.path.isdir(os.path.join(folder, need)) else "is missing"
            raise UserError(f"{folder} has split folders ({', '.join(given)}) but {need}/ {state}; "
                            f"add {need}/ with the same class folders as the others")
    flat = [key for key in classes if len(key) == 1]
    if flat:
        raise UserError(f"{os.path.join(folder, flat[0][0])} holds images directly, which belong to no class; "
                        "sort them into one sub-folder per class, the same in every split folder")
    trees = {t: {key[1:] for key in classes if key[0] == t} for t in given}
    union = sorted(set().union(*trees.values()))
    for path in union:
        have = [t for t in given if path in trees[t]]
        if len(have) < len(given):
            lack = next(t for t in given if path not in trees[t])
            state = "holds no images" if os.path.isdir(os.path.join(folder, lack, *path)) else "does not exist"
            raise UserError(f"the split folders of {folder} differ: {'/'.join((have[0], *path))} holds images "
                            f"but {'/'.join((lack, *path))} {state}; give every split folder the same class folders")
    return {key: SPLIT_FOLDERS[key[0]] for key in classes}


def class_paths(folder, classes=None):
    """The sorted class paths of a taxonomy folder (``classes``: its :func:`scan_taxonomy`, read when None), the
    tree below its split folders when it has them, and ``{class key: part}`` (None without split folders)."""
    classes = scan_taxonomy(folder) if classes is None else classes
    parts = split_folder_parts(classes, folder)
    return order_classes(key[1:] if parts else key for key in classes)[0], parts


def load_taxonomy_folder(folder, *, name=None, gray=False, resize=128, use_val=False, seed=0, cache=None):
    """Read a taxonomy-folder dataset (docs/datasets.md); returns :class:`DataSplits`.

    Image order: sorted path below the folder (``/``-separated strings).
    Split: the split folders' (``MyData/train/...``, ``MyData/val/...``,
    ``MyData/test/...``; classes are the tree below them, the val folder is
    used with ``use_val``), else the folder's ``split.csv``, else the paper's
    draw, 70/10/20 train/val/test with ``use_val``, else 90/10.
    ``warnings`` of the result name empty folders and classes a part lacks.
    ``cache``: keep the decoded, resized images in memory (None: when they fit
    in ``CACHE_LIMIT_BYTES``).
    """
    folder = os.fspath(folder)
    name = name or os.path.basename(os.path.normpath(folder))
    require_folder(folder, "dataset folder", "put the images there, one sub-folder per class, or fix --data_root")
    classes, folders = _walk_taxonomy(folder)
    if not classes:
        raise UserError(
            f"no images found in {folder} (image files: .jpg, .png, .tif, ... in its sub-folders); "
            "put the images there, one sub-folder per class"
        )
    empty = empty_folders(classes, folders)
    notes = [f"{len(empty)} empty folder(s) (no images, so no class): "
             + ", ".join("/".join(f) for f in empty)] if empty else []
    paths, parts = class_paths(folder, classes)
    index = {tuple(p): i for i, p in enumerate(paths)}
    class_of = {key: key[1:] if parts else key for key in classes}  # split folders: the tree below them
    files, labels, part = [], [], []
    for key in sorted(classes):
        files.extend(classes[key])
        labels.extend([index[class_of[key]]] * len(classes[key]))
        part.extend([parts[key] if parts else ""] * len(classes[key]))
    rel = relative_ids(files, folder)
    order = sorted(range(len(files)), key=rel.__getitem__)  # image order: sorted path
    files, labels, part = [files[i] for i in order], [labels[i] for i in order], np.array([part[i] for i in order])
    hierarchy = Hierarchy([p[-1] for p in paths], paths)
    root = os.path.dirname(os.path.abspath(folder))
    split, source, more = _split_of_folder(folder, files, part if parts else None, root, use_val)
    return build_file_splits(name, files, labels, hierarchy, gray=gray, resize=resize, use_val=use_val,
                             seed=seed, cache=cache, root=root, split=split, split_source=source,
                             warnings=notes + more)


def _split_of_folder(folder, files, part, root, use_val):
    """``(split, source, warnings)``: the split folders' (``part``: each image's part), the folder's ``split.csv``,
    or none (``(None, "random", [])``: the paper's draw)."""
    split_file = os.path.join(folder, SPLIT_FILE)
    has_file = os.path.isfile(split_file)
    if part is not None:
        if has_file:
            raise UserError(f"{folder} has split folders and a {SPLIT_FILE}; remove one of the two")
        split, more = _given_split(np.arange(len(files)), part, use_val, f"the split folders of {folder}", "folders")
        return split, "folders", more
    if has_file:
        split, more = read_split_file(split_file, relative_ids(files, root), relative_ids(files, folder),
                                      use_val=use_val)
        return split, SPLIT_FILE, more
    return None, "random", []


# ------------------------------------------------------------ CSV description
def read_csv(path, required):
    """The rows of a UTF-8 CSV file as dicts of stripped strings; refuses a file lacking a ``required`` column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise UserError(
                    f"{path} lacks the column(s) {', '.join(missing)}; expected a header {','.join(required)}"
                )
            reader.fieldnames = header
            rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is not a readable CSV file ({err}); save it as UTF-8 CSV") from None
    return rows


def parse_class_path(text, cls, where):
    """A class table ``Path`` cell -> list of node names ending with the class.

    Either a JSON array or names joined by ``/``; when the last name is not the
    class itself, the class is appended (the path may name only its parent).
    """
    text = text.strip()
    if text.startswith("["):
        try:
            path = json.loads(text)
        except ValueError:
            raise UserError(f"{where}: Path {text!r} is not a valid JSON array") from None
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            raise UserError(f"{where}: Path {text!r} must be a JSON array of names")
    else:
        path = [p for p in text.replace("\\", "/").split("/") if p.strip()]
    path = [p.strip() for p in path]
    if not path or path[-1] != cls:
        path.append(cls)
    return path


def _is_placeholder(component):
    """A literal ``--data_root`` placeholder folder (``DATA_init``, ``$DATA_init``, ``{data_root}``, ...)."""
    return component in PLACEHOLDERS


def strip_class_prefix(paths, name):
    """Remove the placeholder prefix of class-table paths (lists of names ending with the class).

    Everything up to and including the last folder named ``name`` (the dataset
    folder) in the part all paths share (the class itself excluded) is the
    placeholder: ``DATA_init/plankton_datasets/MicroS/Ciliophora/x`` becomes
    ``Ciliophora/x``.  When the shared part has no folder of that name, only a
    shared leading literal placeholder folder (``DATA_init``, ...) is removed.
    """
    common = []
    for level in zip(*[p[:-1] for p in paths]):
        if any(x != level[0] for x in level):
            break
        common.append(level[0])
    cut = max((i + 1 for i, c in enumerate(common) if c == name), default=0) if name else 0
    if cut == 0 and common and _is_placeholder(common[0]):
        cut = 1
    return [list(p[cut:]) for p in paths]


def read_class_table(class_csv, name=None):
    """The original class table (``Class,Path,Number``) as ``(names, paths)``, ordered by class index.

    ``Number`` is the paper's class index: it must be a permutation of
    0..C-1; ``names[k]``, ``paths[k]`` belong to the class with ``Number == k``.
    ``paths[k]`` is a list of node names below the dataset folder ending with
    the class (see :func:`parse_class_path`); the placeholder prefix is
    removed by :func:`strip_class_prefix`, with ``name`` the dataset folder
    name (None: the name of the folder holding ``class_csv``).
    Bad input raises a UserError naming the file and line.
    """
    class_csv = os.fspath(class_csv)
    if name is None:
        name = os.path.basename(os.path.dirname(os.path.abspath(class_csv)))
    rows = read_csv(class_csv, CLASS_COLUMNS)
    if not rows:
        raise UserError(f"{class_csv} lists no classes; add one row per class (Class,Path,Number)")
    names, raw_paths, numbers = [], [], []
    for line, row in enumerate(rows, start=2):
        cls = row["Class"]
        if not cls:
            raise UserError(f"{class_csv} line {line}: empty Class")
        if cls in names:
            raise UserError(f"{class_csv} line {line}: class {cls!r} is listed twice; keep one row per class")
        try:
            number = int(row["Number"])
        except ValueError:
            raise UserError(f"{class_csv} line {line}: Number {row['Number']!r} is not an integer; "
                            "Number is the class index 0..C-1") from None
        names.append(cls)
        raw_paths.append(parse_class_path(row["Path"], cls, f"{class_csv} line {line}"))
        numbers.append(number)
    if sorted(numbers) != list(range(len(rows))):
        raise UserError(f"{class_csv}: the Number column must hold each class index 0..{len(rows) - 1} once "
                        "(Number is the paper's class index, not an image count); fix the column")
    paths = strip_class_prefix(raw_paths, name)  # distinct: each ends with its own class name
    order = np.argsort(numbers)
    return [names[i] for i in order], [paths[i] for i in order]


def _split_components(path):
    return [c for c in path.replace("\\", "/").split("/")]


def resolve_filepaths(filepaths, *, data_root, name, csv_folder, where):
    """Map ``Filepath`` entries onto ``data_root`` (the placeholder rule).

    1. An entry whose first folder is a literal placeholder (``DATA_init``,
       ``$DATA_init``, ``{DATA_init}``, ``<DATA_init>``, ``data_root``, ...) has
       that folder replaced by ``data_root``.
    2. Otherwise the placeholder prefix is the common leading part of all
       entries up to (not including) the last folder in it named like the
       dataset (``name``): ``/old/place/MicroS/Ciliophora/x.jpg`` becomes
       ``<data_root>/MicroS/Ciliophora/x.jpg``.
    3. Otherwise relative entries are relative to the folder holding the CSVs.
    """
    comps = [_split_components(p) for p in filepaths]
    common = []
    if comps:
        for level in zip(*[c[:-1] for c in comps]):
            if any(x != level[0] for x in level):
                break
            common.append(level[0])
    cut = max((i for i, c in enumerate(common) if c == name), default=None)
    resolved = []
    for raw, c in zip(filepaths, comps):
        if c and c[0] in PLACEHOLDERS:
            resolved.append(os.path.join(data_root, *c[1:]))
        elif cut is not None:
            resolved.append(os.path.join(data_root, *c[cut:]))
        elif not os.path.isabs(raw) and not raw.startswith(("/", "\\")) and ":" not in c[0]:
            resolved.append(os.path.join(csv_folder, *[x for x in c if x]))
        else:
            raise UserError(
                f"{where}: cannot tell which part of Filepath {raw!r} is the placeholder prefix for --data_root; "
                f"start every Filepath with DATA_init/ or include the dataset folder {name}/ in it"
            )
    return resolved


def load_csv_description(class_csv, image_csv, *, data_root, gray=False, resize=128, use_val=False, seed=0,
                         name=None, cache=None):
    """Read the original two-CSV description (docs/datasets.md).

    ``class_csv``: columns ``Class,Path,Number``, read by :func:`read_class_table`
    (``Number`` is the class index; placeholder prefix removed from ``Path``).
    ``image_csv``: columns ``Filepath,Class`` where ``Class`` is a name from the
    class table; its row order is the image order the split draws from.
    Filepaths are mapped onto ``data_root`` by :func:`resolve_filepaths`.
    A ``split.csv`` beside the tables gives the split (:func:`read_split_file`).
    """
    class_csv, image_csv = os.fspath(class_csv), os.fspath(image_csv)
    csv_folder = os.path.dirname(os.path.abspath(class_csv))
    name = name or os.path.basename(csv_folder)
    names, paths = read_class_table(class_csv, name)
    image_rows = read_csv(image_csv, IMAGE_COLUMNS)
    if not image_rows:
        raise UserError(f"{image_csv} lists no images; add one row per image (Filepath,Class)")
    index = {cls: k for k, cls in enumerate(names)}

    filepaths, labels = [], []
    for line, row in enumerate(image_rows, start=2):
        cls = row["Class"]
        if cls not in index:
            raise UserError(f"{image_csv} line {line}: class {cls!r} is not in {class_csv}; add it there")
        if not row["Filepath"]:
            raise UserError(f"{image_csv} line {line}: empty Filepath")
        filepaths.append(row["Filepath"])
        labels.append(index[cls])
    empty = [names[k] for k in sorted(set(range(len(names))) - set(labels))]
    if empty:
        raise UserError(
            f"class {empty[0]!r} in {class_csv} has no image in {image_csv}"
            + (f" ({len(empty) - 1} more such classes)" if len(empty) > 1 else "")
            + "; add images or remove the class"
        )

    files = resolve_filepaths(filepaths, data_root=os.fspath(data_root), name=name, csv_folder=csv_folder,
                              where=image_csv)
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise UserError(
            f"{len(missing)} of the {len(files)} images listed in {image_csv} are missing, e.g. {missing[0]}; "
            "check --data_root (it replaces the placeholder prefix of the Filepath entries)"
        )
    hierarchy = Hierarchy(names, paths)
    split, source, more = _split_of_folder(csv_folder, files, None, data_root, use_val)
    return build_file_splits(name, files, labels, hierarchy, gray=gray, resize=resize, use_val=use_val,
                             seed=seed, cache=cache, root=data_root, split=split, split_source=source, warnings=more)


def csv_header(path):
    """The stripped column names of a CSV file's first row, or None when it cannot be read as CSV text."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def find_csv_description(folder):
    """The (class table, image table) pair among ``folder``'s ``*.csv`` files, or None.

    The files are recognised by their header, whatever their names: the class
    table has the columns ``Class,Path,Number``, the image table ``Filepath,Class``.
    """
    class_tables, image_tables = [], []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for fname in names:
        if not fname.lower().endswith(".csv") or fname.startswith("."):
            continue
        path = os.path.join(folder, fname)
        header = csv_header(path)
        if header is None:
            continue
        if all(c in header for c in CLASS_COLUMNS):
            class_tables.append(path)
        elif all(c in header for c in IMAGE_COLUMNS):
            image_tables.append(path)
    if not class_tables and not image_tables:
        return None
    if len(class_tables) != 1 or len(image_tables) != 1:
        raise UserError(
            f"{folder} must hold exactly one class table (Class,Path,Number) and one image table "
            f"(Filepath,Class); found {len(class_tables)} and {len(image_tables)}"
        )
    return class_tables[0], image_tables[0]


# ------------------------------------------------------------------ plankton
def dataset_folders(data_root):
    """The (non-hidden) folders in ``data_root``: the taxonomy-folder datasets there (none when it is unreadable)."""
    try:
        return sorted(e.name for e in os.scandir(data_root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def load_plankton(data_root, name, *, use_val=False, seed=0, resize=None, gray=None, cache=None):
    """``<data_root>/<name>/`` as a plankton / taxonomy dataset (docs/datasets.md).

    * ``gray`` and ``resize`` default to the dataset's entry in ``datasets/registry.py`` (gray for MesoZ;
      128, the synthetic presets 32 and 24).
    * When the folder holds a class table and an image table (see
      :func:`find_csv_description`), the CSV description is read with
      ``data_root`` replacing the Filepath prefix; otherwise the folder tree.
    * ``name == "synthetic"``: the synthetic set is generated there with its
      default parameters on first use (call :func:`ensure_synthetic` first for
      other parameters).
    """
    from datasets import registry
    from datasets.synthetic import SYNTHETIC_NAME, ensure_synthetic

    data_root = os.fspath(data_root)
    folder = os.path.join(data_root, name)
    if name == SYNTHETIC_NAME and not os.path.exists(folder):
        ensure_synthetic(data_root)
    entry = registry.get(name)
    resize = entry.resize if resize is None else resize
    gray = entry.gray if gray is None else gray
    if not os.path.isdir(folder):
        near = did_you_mean(name, list(registry.REGISTRY) + dataset_folders(data_root))
        if near:
            raise UserError(f"dataset folder for {name} {folder} does not exist{near}; check the name's spelling "
                            "and case, or point --data_root at the folder that holds it")
    require_folder(
        folder, f"dataset folder for {name}",
        f"put the dataset there (one sub-folder per class) or point --data_root at the folder that holds {name}/",
    )
    tables = find_csv_description(folder)
    if tables is not None:
        return load_csv_description(*tables, data_root=data_root, gray=gray, resize=resize, use_val=use_val,
                                    seed=seed, name=name, cache=cache)
    return load_taxonomy_folder(folder, name=name, gray=gray, resize=resize, use_val=use_val, seed=seed,
                                cache=cache)
