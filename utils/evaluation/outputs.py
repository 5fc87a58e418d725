"""Any model's test outputs (``evaluate.py --outputs FILE --hierarchy FILE``): the arrays, read and checked.

The ``.npz`` (docs/evaluate.md, 'Any model's outputs') holds plain arrays
under the names a record's ``outputs_test.npz`` uses; only ``labels`` and
``scores`` are required, and each optional array adds the measures it allows:

==================  ==========  =====================================================================
name                shape       adds
==================  ==========  =====================================================================
``labels``          [N] int     (required) the true class of each test image, 0..C-1
``scores``          [N, C]      (required) classification and calibration (``_W``); softmax is taken
                                of them, so logits are right; -inf is allowed, NaN and +inf are not
``scores_proto``    [N, C]      the same measures for a second score matrix (``_proto``)
``embeddings``      [N, D]      retrieval: ``hs@k``, ``ahs250``
``representatives`` [C, D]      hierarchical inference of the class vectors (``_W``): correlations,
                                ``mapr``, trees
``prototypes``      [C, D]      the same for a second set of class vectors (``_proto``)
==================  ==========  =====================================================================

Rows of ``embeddings``, ``representatives`` and ``prototypes`` that are not
unit length (within ``utils.record.NORM_TOLERANCE``) are L2-normalised, so an
array that already is (a record's) is used bit for bit.  Class ``c`` of every
array is row ``c`` of the hierarchy.  Bad input raises :class:`utils.errors.UserError`.
"""
import os
import zipfile

import numpy as np

from utils.errors import UserError, did_you_mean
from utils.record import NORM_TOLERANCE

REQUIRED = ("labels", "scores")
SCORES = ("scores", "scores_proto")
VECTORS = ("embeddings", "representatives", "prototypes")
NAMES = REQUIRED + ("scores_proto",) + VECTORS


def _unit_rows(name, array, where):
    """``array`` itself when its rows have unit length, else its L2-normalised rows (float32)."""
    if not np.isfinite(array).all():
        raise UserError(f"{where}: array '{name}' holds NaN or inf values")
    norms = np.linalg.norm(array.astype(np.float64), axis=1)
    if (norms == 0).any():
        raise UserError(f"{where}: array '{name}' row {int(np.flatnonzero(norms == 0)[0])} is all zeros")
    if (np.abs(norms - 1.0) <= NORM_TOLERANCE).all():
        return array
    return (array / norms[:, None]).astype(np.float32)


def load_model_outputs(path, n_classes):
    """The arrays of ``path`` (see the module docstring) for a hierarchy of ``n_classes`` classes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"--outputs {path} does not exist; give an .npz with the arrays labels and scores")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise ValueError("one array, not named arrays")
        with data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"{path} is not a readable .npz of plain arrays ({err}); save it with "
                        "numpy.savez(FILE, labels=..., scores=...)") from None
    for name in arrays:
        if name not in NAMES:
            raise UserError(f"{path}: array '{name}' is not one of {', '.join(NAMES)}{did_you_mean(name, NAMES)}")
    for name in REQUIRED:
        if name not in arrays:
            raise UserError(f"{path}: array '{name}' is missing (labels [N] and scores [N, C] are required)")
    labels = arrays["labels"]
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.size == 0:
        raise UserError(f"{path}: array 'labels' must be a non-empty 1-D integer array, got {labels.dtype} "
                        f"{labels.shape}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise UserError(f"{path}: array 'labels' has values outside 0..{n_classes - 1} (the hierarchy's classes)")
    n = labels.size
    out = {"labels": labels.astype(np.int64)}
    for name, value in arrays.items():
        if name == "labels":
            continue
        if value.ndim != 2 or value.dtype.kind not in "fiu":
            raise UserError(f"{path}: array '{name}' must be a 2-D array of numbers, got {value.dtype} {value.shape}")
        rows = n if name in SCORES or name == "embeddings" else n_classes
        if value.shape[0] != rows or (name in SCORES and value.shape[1] != n_classes):
            want = f"[{rows}, {n_classes}]" if name in SCORES else f"[{rows}, D]"
            raise UserError(f"{path}: array '{name}' has shape {value.shape}, expected {want} (N = {n} labels, "
                            f"C = {n_classes} classes of the hierarchy)")
        value = value.astype(np.float32, copy=False)
        if name in SCORES:
            if np.isnan(value).any() or np.isposinf(value).any():
                raise UserError(f"{path}: array '{name}' holds NaN or +inf values")
            if np.isneginf(value).all(axis=1).any():
                raise UserError(f"{path}: array '{name}' has a row where every score is -inf")
            out[name] = value
        else:
            out[name] = _unit_rows(name, value, path)
    return out
