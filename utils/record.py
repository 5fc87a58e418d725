"""The run record (README, 'Run records') in one place: file names, writing and reading.

One folder per run, ``record/<run name>/``, holds plain files only (JSON, CSV,
``npz`` of plain arrays, torch checkpoints), so opening someone else's record
runs no code.  Training writes the outputs with :func:`save_outputs`;
``evaluate.py`` reads a run with :func:`load_run` and finds runs with
:func:`find_runs`.

Output arrays (``outputs_test.npz``, ``outputs_val.npz``, ``outputs_test_last.npz``):

==================  ==========  =======  ==================================================
name                shape       dtype    meaning
==================  ==========  =======  ==================================================
``labels``          [N]         int64    true class index of each image
``embeddings``      [N, D]      float32  L2-normalised embeddings
``scores``          [N, C]      float32  W-based class scores z (scale and prior included)
``scores_proto``    [N, C]      float32  the same score function with prototypes (optional;
                                         omitted for softmax)
``representatives`` [C, D]      float32  W, L2-normalised rows
``prototypes``      [C, D]      float32  normalised class means of the training embeddings
==================  ==========  =======  ==================================================
"""
import json
import os
import re
import zipfile
from typing import NamedTuple, Optional

import numpy as np

from utils.errors import UserError
from utils.hierarchy import Hierarchy
from utils.io import write_dataframe_csv, write_json, write_npz

# ------------------------------------------------------------------ file names
CONFIG = "config.json"
HIERARCHY = "hierarchy.csv"
SPLIT = "split.csv"
HISTORY = "history.csv"
TRAIN_LOG = "train.log"
CHECKPOINT_BEST = "checkpoint_best.pt"
CHECKPOINT_LAST = "checkpoint_last.pt"
OUTPUTS_TEST = "outputs_test.npz"
OUTPUTS_VAL = "outputs_val.npz"
OUTPUTS_TEST_LAST = "outputs_test_last.npz"

# written by evaluate.py (``--last`` adds the suffix ``_last`` before the extension)
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
PER_CLASS_CSV = "per_class.csv"
CONFUSION_NPZ = "confusion.npz"
HS_CURVE_CSV = "hs_curve.csv"
TREE_W = "tree_W.nwk"
TREE_PROTO = "tree_proto.nwk"
TREE_TRUE = "tree_true.nwk"
TREE_TAXONOMY = "tree_taxonomy.nwk"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"

# ------------------------------------------------------------------ arrays
REQUIRED_ARRAYS = ("labels", "embeddings", "scores", "representatives", "prototypes")
OPTIONAL_ARRAYS = ("scores_proto",)
NORM_TOLERANCE = 1e-3  # |‖row‖ - 1| allowed for float32 rows said to be L2-normalised

SEED_SUFFIX = re.compile(r"_seed(-?\d+)$")


class Run(NamedTuple):
    """A loaded run record (a tuple, so ``config, hierarchy, ... = run`` works too)."""

    path: str
    name: str
    config: dict
    hierarchy: Hierarchy
    history: Optional[object]  # pandas.DataFrame or None when history.csv is absent
    outputs: dict  # array name -> numpy array, see the module docstring
    outputs_file: str


def _to_numpy(value):
    """Accept numpy arrays, lists, and torch tensors (on any device)."""
    if hasattr(value, "detach"):  # torch.Tensor without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _check_normalised(name, array):
    norms = np.linalg.norm(array.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"{name} must have L2-normalised rows; row {bad[0]} has norm {norms[bad[0]]:.6g}"
        )


def _validate(arrays, where, error):
    """Check names, dimensions, shapes, dtypes and values; raise ``error(message)``.

    ``arrays`` maps names to numpy arrays; ``where`` names the file (or call)
    in the message.  Returns the arrays converted to int64 / float32.
    """
    for name in REQUIRED_ARRAYS:
        if name not in arrays:
            raise error(f"{where}: array '{name}' is missing")
    out = {}
    ndim = {"labels": 1}
    for name, value in arrays.items():
        if name not in REQUIRED_ARRAYS + OPTIONAL_ARRAYS:
            continue
        if value.ndim != ndim.get(name, 2):
            raise error(f"{where}: array '{name}' must have {ndim.get(name, 2)} dimension(s), got shape {value.shape}")
        if name == "labels":
            if value.dtype.kind not in "iu":
                raise error(f"{where}: array 'labels' must hold integers, got dtype {value.dtype}")
            out[name] = value.astype(np.int64, copy=False)
        else:
            if value.dtype.kind not in "fiu":
                raise error(f"{where}: array '{name}' must hold numbers, got dtype {value.dtype}")
            out[name] = value.astype(np.float32, copy=False)

    n = out["labels"].shape[0]
    n_classes, dim = out["representatives"].shape
    expected = {
        "embeddings": (n, dim),
        "scores": (n, n_classes),
        "scores_proto": (n, n_classes),
        "representatives": (n_classes, dim),
        "prototypes": (n_classes, dim),
    }
    for name, shape in expected.items():
        if name in out and out[name].shape != shape:
            raise error(
                f"{where}: array '{name}' has shape {out[name].shape} but labels, embeddings and "
                f"representatives imply {shape} (N={n}, C={n_classes}, D={dim})"
            )
    if n == 0:
        raise error(f"{where}: array 'labels' is empty (no test images)")
    if n_classes == 0:
        raise error(f"{where}: array 'representatives' has no classes")
    if out["labels"].min() < 0 or out["labels"].max() >= n_classes:
        raise error(f"{where}: array 'labels' has values outside 0..{n_classes - 1}")
    for name in ("embeddings", "representatives", "prototypes"):
        if not np.isfinite(out[name]).all():
            raise error(f"{where}: array '{name}' holds non-finite values")
    for name in ("scores", "scores_proto"):
        if name in out:
            # -inf is a legitimate score (log prior of a class never seen in training)
            if np.isnan(out[name]).any() or np.isposinf(out[name]).any():
                raise error(f"{where}: array '{name}' holds NaN or +inf values")
            if np.isneginf(out[name]).all(axis=1).any():
                raise error(f"{where}: array '{name}' has a row where every score is -inf")
    return out


def save_outputs(path, labels, embeddings, scores, representatives, prototypes, scores_proto=None):
    """Validate and atomically write an ``outputs_*.npz`` file (see the module docstring).

    Arrays may be numpy arrays or torch tensors (any device).  ``labels`` must
    be integers and is stored as int64; the others are stored as float32.
    ``embeddings``, ``representatives`` and ``prototypes`` must already have
    L2-normalised rows (within 1e-3).  ``scores_proto`` is ``None`` for softmax.
    A wrong call (a bug in the caller) raises ``ValueError``; nothing is written.
    """
    arrays = {
        "labels": _to_numpy(labels),
        "embeddings": _to_numpy(embeddings),
        "scores": _to_numpy(scores),
        "representatives": _to_numpy(representatives),
        "prototypes": _to_numpy(prototypes),
    }
    if scores_proto is not None:
        arrays["scores_proto"] = _to_numpy(scores_proto)
    arrays = _validate(arrays, f"save_outputs({os.fspath(path)})", ValueError)
    for name in ("embeddings", "representatives", "prototypes"):
        _check_normalised(name, arrays[name])
    write_npz(path, **arrays)


def load_outputs(path):
    """Read an ``outputs_*.npz`` (``allow_pickle=False``) and check it.

    Returns a dict of arrays (``scores_proto`` only when present).  A missing,
    unreadable or inconsistent file raises :class:`UserError` naming the file
    and the array.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist; the run has no test outputs (did training finish?)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"{path} is not a readable npz of plain arrays ({err}); re-run the evaluation of that run") from None
    arrays = _validate(arrays, path, UserError)
    for name in ("embeddings", "representatives", "prototypes"):
        try:
            _check_normalised(name, arrays[name])
        except ValueError as err:
            raise UserError(f"{path}: {err}") from None
    return arrays


def is_record(folder):
    """True when ``folder`` holds the files that make a run record (config and hierarchy)."""
    return os.path.isfile(os.path.join(folder, CONFIG)) and os.path.isfile(os.path.join(folder, HIERARCHY))


def is_complete(folder):
    """True when the run in ``folder`` finished: ``outputs_test.npz`` is there and ``config.json`` has an
    ``end_time`` (written last).  A run folder without both was interrupted (or is training)."""
    if not os.path.isfile(os.path.join(folder, OUTPUTS_TEST)):
        return False
    try:
        with open(os.path.join(folder, CONFIG), encoding="utf-8") as fh:
            return json.load(fh).get("end_time") is not None
    except (OSError, ValueError, AttributeError):
        return False


def _not_a_record(folder, missing):
    return UserError(
        f"{folder} is not a run record: {missing} is missing (a run folder written by train.py holds "
        f"{CONFIG}, {HIERARCHY} and {OUTPUTS_TEST})"
    )


def _json_object(path, fix):
    """The JSON object in ``path``; UserError ending in ``fix`` when it is unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not readable JSON ({err}); {fix}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object; {fix}")
    return value


def load_config(run_dir):
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise _not_a_record(run_dir, CONFIG)
    return _json_object(path, "train the run again or restore the file")


def load_history(run_dir):
    """``history.csv`` as a DataFrame, or ``None`` when the run has none (or it is empty)."""
    import pandas as pd

    path = os.path.join(run_dir, HISTORY)
    if not os.path.isfile(path):
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable CSV ({err})") from None
    return frame if len(frame) else None


def load_run(run_dir, outputs=OUTPUTS_TEST):
    """Load a run: config, hierarchy, history (optional) and the named outputs file.

    A folder without ``config.json``, ``hierarchy.csv`` or the outputs file is
    "not a record" (:class:`UserError`); so is one whose outputs disagree with
    the hierarchy's number of classes.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise UserError(f"{run_dir} is not a folder; give a run folder such as record/<run name>")
    config = load_config(run_dir)
    if not os.path.isfile(os.path.join(run_dir, HIERARCHY)):
        raise _not_a_record(run_dir, HIERARCHY)
    hierarchy = Hierarchy.from_csv(os.path.join(run_dir, HIERARCHY))
    outputs_path = os.path.join(run_dir, outputs)
    if not os.path.isfile(outputs_path):
        raise _not_a_record(run_dir, outputs)
    arrays = load_outputs(outputs_path)
    n_classes = arrays["representatives"].shape[0]
    if n_classes != hierarchy.n_classes:
        raise UserError(
            f"{outputs_path}: array 'representatives' has {n_classes} classes but {HIERARCHY} lists "
            f"{hierarchy.n_classes}"
        )
    name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    return Run(run_dir, name, config, hierarchy, load_history(run_dir), arrays, outputs_path)


def group_name(run_name):
    """The run name without its trailing ``_seed<N>``: runs differing only in seed share it."""
    return SEED_SUFFIX.sub("", run_name)


def find_runs(paths, outputs=None, skipped=None):
    """Expand run folders and folders of runs into a sorted, duplicate-free list of run folders.

    A path that is itself a record is taken as it is; otherwise its immediate
    sub-folders that are records are taken.  With ``outputs`` (a file name or
    a tuple of names), a sub-folder holding none of them (a run still
    training) is left out and, if ``skipped`` is a list, appended to it; a run
    named directly is always kept (loading it then says what is missing).
    A path that does not exist, or a folder with no record in it, raises
    :class:`UserError`.
    """
    if isinstance(outputs, str):
        outputs = (outputs,)
    runs = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise UserError(f"{path} does not exist; give run folders (record/<run name>) or a folder of runs")
        if not os.path.isdir(path):
            raise UserError(f"{path} is not a folder; give run folders (record/<run name>) or a folder of runs")
        if is_record(path):
            runs.append(path)
            continue
        children = sorted(
            os.path.join(path, entry) for entry in os.listdir(path) if os.path.isdir(os.path.join(path, entry))
        )
        found = [child for child in children if is_record(child)]
        if not found:
            raise _not_a_record(path, CONFIG) if not children else UserError(
                f"{path} holds no run records (no sub-folder has {CONFIG} and {HIERARCHY})"
            )
        if outputs:
            ready = [c for c in found if any(os.path.isfile(os.path.join(c, name)) for name in outputs)]
            if skipped is not None:
                skipped.extend(c for c in found if c not in ready)
            if not ready:
                raise UserError(f"{path} holds no finished runs: no run folder in it has {outputs[0]}")
            found = ready
        runs.extend(found)
    unique, seen = [], set()
    for run in runs:
        key = os.path.realpath(run)
        if key not in seen:
            seen.add(key)
            unique.append(run)
    return unique


def write_metrics(json_path, csv_path, metrics: dict) -> None:
    """``metrics.json`` (flat ``name: value``) and ``metrics.csv`` (columns ``name,value``) of one evaluation."""
    import pandas as pd

    write_json(json_path, metrics)
    write_dataframe_csv(csv_path, pd.DataFrame({"name": list(metrics), "value": list(metrics.values())}))


def load_metrics(run_dir) -> dict:
    """A run's ``metrics.json`` (written by ``evaluate.py``)."""
    return _json_object(os.path.join(os.fspath(run_dir), METRICS_JSON), f"run evaluate.py on {run_dir}")


def evaluated_runs(folder) -> list:
    """Every run folder at or below ``folder`` that holds a ``config.json`` and a ``metrics.json``, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(os.fspath(folder)):
        dirnames.sort()
        if CONFIG in filenames and METRICS_JSON in filenames:
            found.append(dirpath)
    return found
