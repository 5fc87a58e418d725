"""Reading what ``evaluate.py --weights`` inspects: a classifier's class vectors and the hierarchy of its classes.

:func:`load_weights` (``.npy`` / ``.npz`` / PyTorch state dict or checkpoint,
the tensor chosen by ``key`` or found by its row count) and
:func:`load_hierarchy` (record-format CSV, class table, or taxonomy-folder
dataset).  Bad input raises :class:`utils.errors.UserError`.
"""
import os

import numpy as np

from utils.errors import UserError
from utils.hierarchy import Hierarchy

NUMPY_EXTENSIONS = (".npy", ".npz")
RECORD_COLUMNS = ("index", "class", "path")
CLASS_TABLE_COLUMNS = ("Class", "Path", "Number")
MAX_LISTED = 12  # candidates named in an error message


# ------------------------------------------------------------------ weights
def _flatten(obj, prefix, out, in_optimizer=False):
    """Every array-like leaf of a nested state dict / checkpoint as ``dotted.name -> (array, in_optimizer)``.

    ``in_optimizer`` marks tensors inside an optimiser state dict (a mapping
    with ``state`` and ``param_groups``): their moments have the shape of the
    weights but are not class vectors, so the automatic search skips them.
    """
    if hasattr(obj, "detach") or isinstance(obj, np.ndarray):
        out[prefix] = (obj, in_optimizer)
    elif isinstance(obj, dict):
        in_optimizer = in_optimizer or ("state" in obj and "param_groups" in obj)
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, in_optimizer)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}.{i}" if prefix else str(i), out, in_optimizer)


def _as_numpy(value, where):
    """A tensor or array as float64 numpy, or a UserError for non-numeric data."""
    if hasattr(value, "detach"):
        import torch

        if value.is_complex() or value.dtype == torch.bool:
            raise UserError(f"{where} has dtype {value.dtype}; class vectors must be real numbers")
        value = value.detach().to("cpu", torch.float64).numpy()
    value = np.asarray(value)
    if value.dtype.kind not in "fiu":
        raise UserError(f"{where} has dtype {value.dtype}; class vectors must be real numbers")
    return value.astype(np.float64)


def _shape(value):
    return "x".join(str(int(s)) for s in value.shape)


def _read_file(path):
    """``(array, None)`` for a single array, ``(None, {name: (array, in_optimizer)})`` for a collection."""
    if not os.path.isfile(path):
        state = "is a folder" if os.path.isdir(path) else "does not exist"
        raise UserError(f"weights file {path} {state}; give a .npy/.npz array or a PyTorch state dict / checkpoint")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    ext = os.path.splitext(path)[1].lower()
    numpy_first = ext in NUMPY_EXTENSIONS or magic == b"\x93NUMPY"
    loaders = [_read_numpy, _read_torch] if numpy_first else [_read_torch, _read_numpy]
    for loader in loaders:
        found = loader(path)
        if found is not None:
            return found
    raise UserError(
        f"{path} is neither a NumPy array (.npy/.npz, no pickles) nor a PyTorch state dict or checkpoint "
        "readable with torch.load(weights_only=True), which refuses a whole pickled model; "
        "save the model's state_dict() or the class vectors as a .npy array"
    )


def _read_numpy(path):
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data, None
        with data:
            arrays = {name: data[name] for name in data.files}
    except Exception:  # not a NumPy file, pickled objects, truncated: the caller tries torch / reports
        return None
    arrays = {name: (value, False) for name, value in arrays.items() if isinstance(value, np.ndarray)}
    return (None, arrays) if arrays else None


def _read_torch(path):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or one that needs unpickling code (weights_only refuses it)
        return None
    if hasattr(obj, "detach"):
        return obj, None
    if not isinstance(obj, (dict, list, tuple)):
        return None
    tensors = {}
    _flatten(obj, "", tensors)
    return None, tensors


def _list(names, tensors):
    shown = [f"{n} [{_shape(tensors[n][0])}]" for n in names[:MAX_LISTED]]
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(shown) + more


def select_tensor(tensors, n_classes, key, where):
    """The name of the class-vector tensor in a flat ``{name: (array, in_optimizer)}`` collection.

    With ``key``: that name, or else the one name ending with ``.<key>``
    (``fc.weight`` finds ``module.fc.weight``).  Without: the one 2-D floating
    tensor outside optimiser states whose first dimension is ``n_classes``.
    """
    matrices = [n for n, (v, _) in tensors.items() if len(v.shape) == 2]
    if key is not None:
        if key in tensors:
            return key
        ending = [n for n in tensors if n.endswith("." + key)]
        if len(ending) == 1:
            return ending[0]
        if len(ending) > 1:
            raise UserError(f"--key {key} matches several tensors in {where}: {_list(ending, tensors)}; give the full name")
        listed = _list(matrices, tensors) if matrices else "none"
        raise UserError(f"--key {key} is not in {where}; its 2-D tensors are: {listed}")

    def floating(value):
        kind = getattr(value, "dtype", None)
        return getattr(kind, "is_floating_point", None) or getattr(kind, "kind", "") == "f"

    candidates = [
        n for n in matrices if int(tensors[n][0].shape[0]) == n_classes and not tensors[n][1] and floating(tensors[n][0])
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        listed = _list(matrices, tensors) if matrices else "none"
        raise UserError(
            f"{where} holds no 2-D tensor with {n_classes} rows (one per class of the hierarchy); "
            f"its 2-D tensors are: {listed}; name the class vectors with --key"
        )
    raise UserError(
        f"{where} holds several 2-D tensors with {n_classes} rows: {_list(candidates, tensors)}; "
        "choose the class vectors with --key"
    )


def load_weights(path, n_classes, key=None):
    """The class vectors ``[C, D]`` (float64) from a file, and the name of the tensor (None for a plain array).

    ``n_classes``: the number of classes of the hierarchy (the row count the
    matrix must have).  Refuses (UserError) a missing key, a wrong row count,
    NaN / inf, an all-zero row, and a file that is not an array or state dict.
    """
    path = os.fspath(path)
    array, tensors = _read_file(path)
    name = None
    if array is None:
        if not tensors:
            raise UserError(f"{path} holds no tensors; give the file with the classifier's weights")
        name = select_tensor(tensors, n_classes, key, path)
        array = tensors[name][0]
    elif key is not None:
        raise UserError(f"{path} holds a single array, so there is nothing for --key {key} to choose; drop --key")
    where = f"{path} [{name}]" if name else path
    W = _as_numpy(array, where)
    if W.ndim != 2:
        raise UserError(f"{where} has shape {W.shape}; the class vectors must be a 2-D matrix [classes, dimensions]")
    if W.shape[0] != n_classes:
        hint = " (its columns match: transpose it)" if W.shape[1] == n_classes else ""
        raise UserError(
            f"{where} has {W.shape[0]} rows but the hierarchy has {n_classes} classes{hint}; "
            "row i must be the vector of class i of the hierarchy"
        )
    finite = np.isfinite(W).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise UserError(f"{where} holds NaN or inf (first in row {row}); fix the weights")
    zero = ~W.any(axis=1)
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise UserError(f"{where} row {row} is all zeros, so class {row} has no direction; fix the weights")
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(W, axis=1)
    extreme = (norms == 0) | ~np.isfinite(norms)  # the squares under- or overflow: rescale those rows first
    W[extreme] /= np.abs(W[extreme]).max(axis=1, keepdims=True)
    return W, name


# ------------------------------------------------------------------ hierarchy
def class_table_hierarchy(class_csv, name=None):
    """A class table (``Class,Path,Number``): row ``Number`` of the weights is that class."""
    from datasets.taxonomy import read_class_table  # the one class-table reader (docs/datasets.md)

    names, paths = read_class_table(class_csv, name=name)
    return Hierarchy(names, paths)


def dataset_hierarchy(folder, name=None):
    """The classes of a taxonomy-folder dataset in the order training gives them (no image is decoded).

    A folder holding a class table and an image table is read from its class
    table; otherwise every folder that directly holds images is a class, in
    sorted-path order (:func:`datasets.taxonomy.scan_taxonomy`).
    """
    from datasets.common import require_folder
    from datasets.taxonomy import order_classes, find_csv_description, scan_taxonomy

    name = name or os.path.basename(os.path.normpath(folder))
    require_folder(folder, f"dataset folder for {name}", "point --data_root at the folder that holds it")
    tables = find_csv_description(folder)
    if tables is not None:
        return class_table_hierarchy(tables[0], name=name)
    classes = scan_taxonomy(folder)
    if not classes:
        raise UserError(f"no images found in {folder}, so it names no classes; give a hierarchy CSV instead")
    paths, _ = order_classes(classes)
    return Hierarchy([p[-1] for p in paths], paths)


def load_hierarchy(spec, data_root=None):
    """The hierarchy named by ``--hierarchy`` (and ``--data_root``); returns ``(hierarchy, dataset name or None)``.

    * ``--data_root ROOT``: ``spec`` is a dataset name, ``ROOT/<spec>/`` its folder;
    * a folder: a taxonomy-folder dataset;
    * a CSV with the columns ``index,class,path`` (a record's ``hierarchy.csv``)
      or ``Class,Path,Number`` (the paper's class table).
    """
    spec = os.fspath(spec)
    if data_root is not None:
        return dataset_hierarchy(os.path.join(os.fspath(data_root), spec), spec), spec
    if os.path.isdir(spec):
        return dataset_hierarchy(spec), os.path.basename(os.path.normpath(spec))
    if not os.path.isfile(spec):
        raise UserError(
            f"hierarchy file {spec} does not exist; give a hierarchy CSV (index,class,path or Class,Path,Number), "
            "or a dataset name together with --data_root"
        )
    from datasets.taxonomy import csv_header

    header = csv_header(spec)
    if header is None:
        raise UserError(f"cannot read hierarchy file {spec} as UTF-8 CSV text; give a hierarchy CSV")
    if all(c in header for c in RECORD_COLUMNS):
        return Hierarchy.from_csv(spec), None
    if all(c in header for c in CLASS_TABLE_COLUMNS):
        return class_table_hierarchy(spec), None
    raise UserError(
        f"{spec} is not a hierarchy file: expected the columns index,class,path (path a JSON array) "
        "or Class,Path,Number (the class table)"
    )
