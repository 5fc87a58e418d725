"""Atomic file writes: a killed run never leaves a truncated file that looks complete.

Every writer goes to ``<name>.tmp-<pid>`` in the same folder and is renamed over
the final name only once the write has finished (``os.replace`` is atomic on
POSIX and Windows).
"""
import contextlib
import json
import os

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_npz(path, **arrays):
    """Save plain arrays (loadable with ``allow_pickle=False``)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; records hold plain arrays only")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def write_dataframe_csv(path, frame, **kwargs):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **kwargs)


def torch_save(path, obj):
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
