"""Inspect any classifier's class vectors against a taxonomy, without training (``evaluate.py --weights``).

    python evaluate.py --weights fc.npy --hierarchy hierarchy.csv --out inspect_fc
    python evaluate.py --weights checkpoint_last.pt --key head.W --hierarchy record/<run>/hierarchy.csv
    python evaluate.py --weights model.pt --hierarchy MicroS --data_root data

The class vectors (rows of the weight matrix, row i = class i of the
hierarchy) are L2-normalised and compared with the tree distances ``d_T`` with
the same hierarchical-inference measures that ``evaluate.py`` computes for W
in a run record (:func:`utils.metrics.evaluation.representation_metrics`),
once with the euclidean (chord) and once with the angular distance between the
normalised vectors: the names get the suffix ``_euc`` / ``_arccos``.

Pieces: :func:`load_weights` (``.npy`` / ``.npz`` / PyTorch state dict or
checkpoint, the tensor chosen by ``key`` or found by its row count),
:func:`load_hierarchy` (record-format CSV, class table, or taxonomy-folder
dataset), :func:`inspect` (arrays in, measures out, pure) and
:func:`write_results` (the files).  Bad input raises
:class:`utils.errors.UserError`.
"""
import csv
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from utils import trees
from utils.errors import UserError
from utils.hierarchy import Hierarchy
from utils.io import write_dataframe_csv, write_json, write_npz, write_text
from utils.metrics import representation as rep_m
from utils.metrics.evaluation import N_PERM, add_reference_trees, reference_trees, representation_metrics, wants_living

#: Distances between the normalised class vectors, as (name suffix, distance of representative_distances).
DISTANCES = (("euc", "euc"), ("arccos", "arccos"))
NUMPY_EXTENSIONS = (".npy", ".npz")
RECORD_COLUMNS = ("index", "class", "path")
CLASS_TABLE_COLUMNS = ("Class", "Path", "Number")
MAX_LISTED = 12  # candidates named in an error message


# ------------------------------------------------------------------ command line
def add_arguments(parser):
    """``--weights`` mode: any classifier's class vectors against a taxonomy (utils/inspect_weights.py)."""
    g = parser.add_argument_group(
        "inspect any classifier (instead of RUN)",
        "python evaluate.py --weights FILE --hierarchy FILE [--key NAME] [--out DIR]",
    )
    g.add_argument("--weights", metavar="FILE",
                   help="class vectors [C, D]: a .npy/.npz array or a PyTorch state dict / checkpoint")
    g.add_argument("--hierarchy", metavar="FILE",
                   help="hierarchy CSV (index,class,path or Class,Path,Number; row i = class i), "
                   "or a taxonomy-folder dataset name with --data_root")
    g.add_argument("--key", metavar="NAME",
                   help="the tensor in a state dict / .npz, dotted for nested checkpoints (fc.weight, head.W); "
                   "default: the one 2-D tensor with C rows")
    g.add_argument("--out", metavar="DIR", help="output folder (default: inspect_<weights file name>)")
    g.add_argument("--data_root", metavar="DIR", help="folder holding the dataset named by --hierarchy")


def check_arguments(parser, args):
    """Usage errors (exit 2) of the --weights options against RUN folders."""
    if args.weights is None:
        given = [f"--{n}" for n in ("hierarchy", "key", "out", "data_root") if getattr(args, n) is not None]
        if given:
            parser.error(f"{', '.join(given)} only go with --weights")
        if not args.runs:
            parser.error("give at least one RUN, or --weights FILE --hierarchy FILE")
        return
    if args.runs:
        parser.error("give either RUN folders or --weights, not both")
    if args.hierarchy is None:
        parser.error("--weights needs --hierarchy (a hierarchy CSV, or a dataset name with --data_root)")
    if args.last or args.summary_dir is not None:
        parser.error("--last and --summary_dir are for RUN folders, not --weights")


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
def _header(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except OSError as err:
        raise UserError(f"cannot read hierarchy file {path}: {err.strerror}") from None
    except (UnicodeDecodeError, csv.Error):
        raise UserError(f"hierarchy file {path} is not a UTF-8 CSV file") from None


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
    from datasets.taxonomy import _order_classes, find_csv_description, scan_taxonomy

    name = name or os.path.basename(os.path.normpath(folder))
    require_folder(folder, f"dataset folder for {name}", "point --data_root at the folder that holds it")
    tables = find_csv_description(folder)
    if tables is not None:
        return class_table_hierarchy(tables[0], name=name)
    classes = scan_taxonomy(folder)
    if not classes:
        raise UserError(f"no images found in {folder}, so it names no classes; give a hierarchy CSV instead")
    paths, _ = _order_classes(classes)
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
    header = _header(spec)
    if all(c in header for c in RECORD_COLUMNS):
        return Hierarchy.from_csv(spec), None
    if all(c in header for c in CLASS_TABLE_COLUMNS):
        return class_table_hierarchy(spec), None
    raise UserError(
        f"{spec} is not a hierarchy file: expected the columns index,class,path (path a JSON array) "
        "or Class,Path,Number (the class table)"
    )


# ------------------------------------------------------------------ measures
@dataclass
class Inspection:
    metrics: dict  # flat name -> value: n_classes, dim, then <measure>_euc, then <measure>_arccos
    distances: dict = field(default_factory=dict)  # "euc", "arccos" -> C x C distances of the normalised vectors
    linkage: dict = field(default_factory=dict)  # "euc", "arccos", "true" -> WPGMA linkage matrix
    newick: dict = field(default_factory=dict)  # "euc", "arccos", "true", "taxonomy" -> Newick text


def _pair_ranks(D):
    i, j = np.triu_indices(D.shape[0], 1)
    return stats.rankdata(D[i, j])


def _maybe(value):
    return None if value is None or not np.isfinite(value) else float(value)


def inspect(W, hierarchy, *, living=False, n_perm=N_PERM, seed=0):
    """Hierarchical inference of the class vectors ``W`` [C, D] for both distances (pure: arrays in, results out)."""
    W = np.asarray(W)
    result = Inspection({"n_classes": int(W.shape[0]), "dim": int(W.shape[1])})
    reference = reference_trees(hierarchy)
    first = None  # (D, corr_perm_p) of the first distance
    for suffix, distance in DISTANCES:
        # The permutation test depends on the ranks of the pair distances only; the angle is a monotone
        # function of the chord, so it is run once and reused when the ranks are indeed the same.
        reuse = first is not None and n_perm > 0
        values, D, Z = representation_metrics(
            W, hierarchy, distance, living=living, n_perm=0 if reuse else n_perm, seed=seed, reference=reference
        )
        if reuse:
            same = np.array_equal(_pair_ranks(D), _pair_ranks(first[0]))
            values["corr_perm_p"] = first[1] if same else _maybe(rep_m.corr_perm_p(D, hierarchy.distances, n_perm=n_perm, seed=seed))
        first = first or (D, values["corr_perm_p"])
        result.metrics.update({f"{k}_{suffix}": v for k, v in values.items()})
        result.distances[suffix] = D
        result.linkage[suffix] = Z
        result.newick[suffix] = trees.linkage_newick(Z, hierarchy.names)
    add_reference_trees(result, hierarchy)
    return result


# ------------------------------------------------------------------ files
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
SOURCE_JSON = "source.json"
DISTANCES_NPZ = "distances.npz"


def write_results(out, result, hierarchy, source, plots=True):
    """metrics.json/.csv, source.json, distances.npz, tree_<euc|arccos|true|taxonomy>.nwk and the PNG plots."""
    path = lambda name: os.path.join(out, name)  # noqa: E731
    write_json(path(METRICS_JSON), result.metrics)
    write_dataframe_csv(
        path(METRICS_CSV), pd.DataFrame({"name": list(result.metrics), "value": list(result.metrics.values())})
    )
    write_json(path(SOURCE_JSON), source)
    write_npz(path(DISTANCES_NPZ), d_T=hierarchy.distances, **result.distances)
    for kind, text in result.newick.items():
        write_text(path(f"tree_{kind}.nwk"), text)
    if not plots or hierarchy.n_classes < 2:
        return
    from utils import plots as P

    for suffix, distance in DISTANCES:
        P.plot_trees(path(f"tree_{suffix}.png"), result.linkage[suffix], result.linkage["true"], hierarchy,
                     f"weights, {'chord' if distance == 'euc' else 'angle'}")
        P.plot_distances(path(f"distances_{suffix}.png"), result.distances[suffix], hierarchy, "weights", distance)


def default_out(weights):
    """``inspect_<file stem>`` in the current folder."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(os.fspath(weights))))[0]
    return f"inspect_{stem}"


def _fmt(value):
    if value is None:
        return "-".rjust(9)
    return (str(value) if isinstance(value, int) else f"{value:.4f}").rjust(9)


def summary_block(result, where, hierarchy):
    """A readable block of the main measures for both distances."""
    names = ["corr_mean", "corr_elem", "corr_perm_p", "mapr_0", "rf_norm", "rf_taxonomy"]
    lines = [
        f"{where}: {result.metrics['n_classes']} classes x {result.metrics['dim']} dimensions; "
        f"hierarchy {hierarchy.n_classes} classes, {hierarchy.n_levels} levels",
        "  " + " " * 8 + "".join(n.rjust(12) for n in names),
    ]
    for suffix, _ in DISTANCES:
        lines.append(f"  {suffix:<8}" + "".join(_fmt(result.metrics.get(f"{n}_{suffix}")).rjust(12) for n in names))
    return "\n".join(lines)


def run(args):
    """``evaluate.py --weights``: ``args`` has weights, hierarchy, key, out, data_root, n_perm, perm_seed, no_plots, quiet."""
    hierarchy, dataset = load_hierarchy(args.hierarchy, args.data_root)
    W, name = load_weights(args.weights, hierarchy.n_classes, args.key)
    living = wants_living({"dataset": dataset or ""}, hierarchy)
    result = inspect(W, hierarchy, living=living, n_perm=args.n_perm, seed=args.perm_seed)
    out = args.out or default_out(args.weights)
    source = {
        "weights": os.path.abspath(args.weights),
        "key": name,
        "hierarchy": os.path.abspath(args.hierarchy) if args.data_root is None else args.hierarchy,
        "data_root": None if args.data_root is None else os.path.abspath(args.data_root),
        "shape": [int(s) for s in W.shape],
        "n_perm": args.n_perm,
        "perm_seed": args.perm_seed,
    }
    try:
        write_results(out, result, hierarchy, source, plots=not args.no_plots)
    except OSError as err:
        raise UserError(f"cannot write the results into {out}: {err.strerror or err}; choose another --out") from None
    where = f"{args.weights} [{name}]" if name else args.weights
    if not args.quiet:
        print(summary_block(result, where, hierarchy))
    print(f"written to {out}/ ({METRICS_JSON}, {METRICS_CSV}, trees and plots)")
    return 0
