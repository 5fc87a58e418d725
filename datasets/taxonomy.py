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
)
from utils.errors import UserError
from utils.hierarchy import Hierarchy

#: First path components of a ``Filepath`` that are a literal placeholder for ``--data_root``.
PLACEHOLDERS = ("DATA_init", "$DATA_init", "${DATA_init}", "{DATA_init}", "<DATA_init>",
                "data_root", "$data_root", "{data_root}", "<data_root>")

CLASS_COLUMNS = ("Class", "Path", "Number")
IMAGE_COLUMNS = ("Filepath", "Class")


# ------------------------------------------------------------- common tail
def relative_ids(files, root):
    """Each file's path relative to ``root``, ``/``-separated (the image names of ``split.csv``)."""
    root = os.path.abspath(os.fspath(root))
    return [os.path.relpath(os.path.abspath(f), root).replace(os.sep, "/") for f in files]


def build_file_splits(name, files, labels, hierarchy, *, gray, resize, use_val, seed, cache=None,
                      transform=None, split=None, root=None):
    """Check every image once, split, and wrap the three parts as datasets.

    ``files`` is the image order the split draws from.  ``split`` (train,
    val, test index arrays) overrides the paper's random split
    (:func:`datasets.common.random_split`).  ``transform`` is applied to the
    training part only.  ``root``: the folder image names in ``split.csv`` are
    relative to (the data root; None: the folder above the first image's class tree).
    """
    resize = check_resize(resize)
    labels = np.asarray(labels, dtype=np.int64)
    sizes, images = check_images(files, gray=gray, resize=resize, cache=cache, desc=f"checking {name} images")
    train, val, test = split if split is not None else random_split(len(files), use_val=use_val, seed=seed)
    ids = relative_ids(files, root if root is not None else os.path.dirname(os.path.commonpath(
        [os.path.abspath(f) for f in files])))

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
    )


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

    def fail(err):
        raise UserError(f"cannot read folder {err.filename}: {err.strerror}; check its permissions")

    classes = {}
    root_images = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        images = sorted(f for f in filenames if is_image_file(f))
        if not images:
            continue
        rel = os.path.relpath(dirpath, folder)
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
    return classes


def load_taxonomy_folder(folder, *, name=None, gray=False, resize=128, use_val=False, seed=0, cache=None):
    """Read a taxonomy-folder dataset (docs/datasets.md); returns :class:`DataSplits`.

    Image order: sorted path below the folder (``/``-separated strings).
    Split: the paper's draw, 70/10/20 train/val/test with ``use_val``, else 90/10.
    ``cache``: keep the decoded, resized images in memory (None: when they fit
    in ``CACHE_LIMIT_BYTES``).
    """
    folder = os.fspath(folder)
    name = name or os.path.basename(os.path.normpath(folder))
    require_folder(folder, "dataset folder", "put the images there, one sub-folder per class, or fix --data_root")
    classes = scan_taxonomy(folder)
    if not classes:
        raise UserError(
            f"no images found in {folder} (image files: .jpg, .png, .tif, ... in its sub-folders); "
            "put the images there, one sub-folder per class"
        )
    paths, index = order_classes(classes)
    files, labels = [], []
    for key in map(tuple, paths):
        files.extend(classes[key])
        labels.extend([index[key]] * len(classes[key]))
    rel = relative_ids(files, folder)
    order = sorted(range(len(files)), key=rel.__getitem__)  # image order: sorted path
    files, labels = [files[i] for i in order], [labels[i] for i in order]
    hierarchy = Hierarchy([p[-1] for p in paths], paths)
    return build_file_splits(name, files, labels, hierarchy, gray=gray, resize=resize, use_val=use_val,
                             seed=seed, cache=cache, root=os.path.dirname(os.path.abspath(folder)))


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
    return build_file_splits(name, files, labels, hierarchy, gray=gray, resize=resize, use_val=use_val,
                             seed=seed, cache=cache, root=data_root)


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
