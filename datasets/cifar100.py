"""CIFAR-100 from the official "python version" (docs/datasets.md).

Input: ``<data_root>/cifar-100-python/`` with ``train``, ``test`` and ``meta``,
or ``<data_root>/cifar-100-python.tar.gz`` (read in memory, nothing extracted).
The files are Python-2 protocol-2 pickles; they are read with
:class:`RestrictedUnpickler`, which can build only the types those files
contain (dicts, lists, strings, ints and numpy uint8 arrays), so a bad or
malicious file is refused before it can run anything.

Hierarchy: four levels, top group / middle group / superclass / class.  The
project ships ``cifar100_hierarchy.csv`` (``class,superclass,middle_group,top_group``
for the 100 classes); superclass membership is checked against the archive's
own coarse labels, and any disagreement is an error.
"""
import csv
import io
import os
import pickle
import tarfile

import numpy as np
import torch

from datasets.common import (
    DataSplits,
    TensorImageDataset,
    check_resize,
    split_train_pool,
    train_augmentation,
)
from utils.errors import UserError
from utils.hierarchy import Hierarchy

FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
HIERARCHY_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar100_hierarchy.csv")
N_FINE, N_COARSE, SIDE = 100, 20, 32


# ----------------------------------------------------------- safe unpickling
def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: The only globals the official files refer to (numpy arrays of uint8).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for something the CIFAR-100 files never contain."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and numpy arrays.

    Any other global (a function or class to call) raises
    :class:`RefusedPickle` (an ``UnpicklingError``) before it is imported or called.  Python-2
    strings are decoded as latin-1, as numpy requires for its array data.
    """

    def __init__(self, file):
        super().__init__(file, encoding="latin1")

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedPickle(f"refused to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise RefusedPickle("refused a persistent id")


def restricted_load(fileobj, where):
    """Unpickle ``fileobj`` with :class:`RestrictedUnpickler`; a UserError naming ``where`` on failure."""
    try:
        return RestrictedUnpickler(fileobj).load()
    except RefusedPickle as err:
        raise UserError(
            f"{where} is not a CIFAR-100 python-version file ({err}); "
            "replace it with the official cifar-100-python files"
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated or garbled file
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(
            f"{where} is corrupt or not a CIFAR-100 python-version file ({reason}); "
            "replace it with the official cifar-100-python files"
        ) from None


# ------------------------------------------------------------------- reading
def _plain_keys(obj, where):
    if not isinstance(obj, dict):
        raise UserError(f"{where} does not hold a dictionary; it is not a CIFAR-100 python-version file")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(meta, key, n, where):
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != n:
        raise UserError(f"inconsistent CIFAR-100 meta: {where} must list {n} {key}, found "
                        f"{len(names) if isinstance(names, (list, tuple)) else 'none'}")
    out = [(x.decode("latin1") if isinstance(x, bytes) else x) for x in names]
    if not all(isinstance(x, str) for x in out) or len(set(out)) != n:
        raise UserError(f"inconsistent CIFAR-100 meta: {key} in {where} must be {n} distinct names")
    return out


def _labels(batch, key, n_rows, n_max, where):
    values = batch.get(key)
    try:
        labels = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (n_rows,):
        raise UserError(f"{where}: {key} must hold one label per image ({n_rows}); the file is damaged")
    if n_rows and (labels.min() < 0 or labels.max() >= n_max):
        raise UserError(f"{where}: {key} must lie in 0..{n_max - 1}; the file is damaged")
    return labels


def _batch(obj, where):
    batch = _plain_keys(obj, where)
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise UserError(f"{where}: 'data' must be a uint8 array of N x 3072 pixels; the file is damaged")
    n = data.shape[0]
    if n == 0:
        raise UserError(f"{where} holds no images; replace it with the official file")
    fine = _labels(batch, "fine_labels", n, N_FINE, where)
    coarse = _labels(batch, "coarse_labels", n, N_COARSE, where)
    images = torch.from_numpy(np.ascontiguousarray(data.reshape(n, 3, SIDE, SIDE)))
    return images, fine, coarse


def _read_members(data_root):
    """``{"train": obj, "test": obj, "meta": obj}`` from the folder or the archive."""
    folder = os.path.join(data_root, FOLDER)
    archive = os.path.join(data_root, ARCHIVE)
    out = {}
    if os.path.isdir(folder):
        for part in ("meta", "train", "test"):
            path = os.path.join(folder, part)
            if not os.path.isfile(path):
                raise UserError(f"{path} is missing; {folder} must hold train, test and meta "
                                "(unpack the official cifar-100-python.tar.gz there)")
            try:
                with open(path, "rb") as fh:
                    out[part] = restricted_load(fh, path)
            except OSError as err:
                raise UserError(f"cannot read {path}: {err.strerror}") from None
        return out
    if os.path.isfile(archive):
        try:
            with tarfile.open(archive, "r:gz") as tar:  # one pass over the stream
                wanted = {f"{FOLDER}/{part}": part for part in ("meta", "train", "test")}
                for member in tar:
                    name = member.name[2:] if member.name.startswith("./") else member.name
                    if name in wanted and member.isfile():
                        raw = tar.extractfile(member).read()
                        out[wanted[name]] = restricted_load(io.BytesIO(raw), f"{archive}:{name}")
            for part in ("meta", "train", "test"):
                if part not in out:
                    raise UserError(f"{archive} lacks {FOLDER}/{part}; it is not the official CIFAR-100 "
                                    "python-version archive")
        except (tarfile.TarError, OSError, EOFError) as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise UserError(f"cannot read {archive} ({reason}); download the archive again") from None
        return out
    return None


def _download(data_root):
    """Fetch the official archive with torchvision's downloader (md5-checked) and unpack it."""
    try:
        from torchvision.datasets import CIFAR100
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(CIFAR100.url, data_root, filename=CIFAR100.filename, md5=CIFAR100.tgz_md5)
    except Exception as err:  # noqa: BLE001 - network errors of every kind
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(
            f"could not download CIFAR-100 ({reason}); put the official cifar-100-python.tar.gz "
            f"into {data_root} (https://www.cs.toronto.edu/~kriz/cifar.html)"
        ) from None


# ----------------------------------------------------------------- hierarchy
def shipped_hierarchy():
    """``{class: (top_group, middle_group, superclass)}`` from ``cifar100_hierarchy.csv``."""
    with open(HIERARCHY_FILE, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["class"]: (r["top_group"], r["middle_group"], r["superclass"]) for r in rows}


def cifar100_hierarchy(fine_names, coarse_names, fine_to_coarse):
    """Four-level :class:`Hierarchy` in the archive's class order, checked against its coarse labels.

    ``fine_to_coarse[f]`` is the coarse label seen with fine label ``f`` in the
    archive (-1 when the class has no image).
    """
    shipped = shipped_hierarchy()
    unknown = [n for n in fine_names if n not in shipped]
    if unknown or len(set(fine_names)) != len(shipped):
        raise UserError(
            f"inconsistent CIFAR-100 meta: fine_label_names do not match the 100 CIFAR-100 classes "
            f"(unknown: {', '.join(unknown[:3]) or 'none'}); the archive is not the official CIFAR-100"
        )
    superclasses = {v[2] for v in shipped.values()}
    if set(coarse_names) != superclasses:
        odd = sorted(set(coarse_names) - superclasses)
        raise UserError(
            f"inconsistent CIFAR-100 meta: coarse_label_names do not match the 20 CIFAR-100 superclasses "
            f"(unknown: {', '.join(odd[:3]) or 'none'}); the archive is not the official CIFAR-100"
        )
    paths = []
    for f, name in enumerate(fine_names):
        top, middle, superclass = shipped[name]
        c = int(fine_to_coarse[f])
        if c >= 0 and coarse_names[c] != superclass:
            raise UserError(
                f"inconsistent CIFAR-100 meta: class {name!r} has coarse label {coarse_names[c]!r} in the "
                f"archive but belongs to {superclass!r} in CIFAR-100; the archive is not the official CIFAR-100"
            )
        paths.append([top, middle, superclass, name])
    return Hierarchy(list(fine_names), paths)


def _fine_to_coarse(fine, coarse, n_fine, where):
    mapping = np.full(n_fine, -1, dtype=np.int64)
    mapping[fine] = coarse
    clash = mapping[fine] != coarse
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise UserError(f"inconsistent CIFAR-100 labels in {where}: fine label {int(fine[i])} appears with "
                        "two different coarse labels; the archive is damaged")
    return mapping


# -------------------------------------------------------------------- loader
def load_cifar100(data_root, *, use_val=False, small=False, seed=0, resize=None, aug=False, download=False):
    """CIFAR-100 (docs/datasets.md); returns :class:`DataSplits`.

    Test: the official test images.  Train: the official training images;
    with ``use_val`` the paper's draw over them in file order
    (:func:`datasets.common.split_train_pool`): the first 90% train, the rest
    validate (45,000 / 5,000); ``small`` keeps the first 10% for training
    (5,000) and, with ``use_val``, validates on the rest.  ``resize``: side in pixels (None keeps 32).
    ``aug``: random affine + horizontal flip on the training split only.
    ``download``: fetch the archive with torchvision when it is not there.
    """
    data_root = os.fspath(data_root)
    if resize is not None:
        resize = check_resize(resize)
    members = _read_members(data_root)
    if members is None and download:
        os.makedirs(data_root, exist_ok=True)
        _download(data_root)
        members = _read_members(data_root)
    if members is None:
        raise UserError(
            f"CIFAR-100 not found: expected {os.path.join(data_root, FOLDER)}/ (train, test, meta) or "
            f"{os.path.join(data_root, ARCHIVE)}; download the python version from "
            "https://www.cs.toronto.edu/~kriz/cifar.html, or pass --download, or fix --data_root"
        )
    meta = _plain_keys(members["meta"], "CIFAR-100 meta")
    fine_names = _names(meta, "fine_label_names", N_FINE, "CIFAR-100 meta")
    coarse_names = _names(meta, "coarse_label_names", N_COARSE, "CIFAR-100 meta")
    train_images, train_fine, train_coarse = _batch(members["train"], "CIFAR-100 train")
    test_images, test_fine, test_coarse = _batch(members["test"], "CIFAR-100 test")
    del members

    mapping = _fine_to_coarse(np.concatenate([train_fine, test_fine]),
                              np.concatenate([train_coarse, test_coarse]), N_FINE, "train/test")
    hierarchy = cifar100_hierarchy(fine_names, coarse_names, mapping)

    train_idx, val_idx = split_train_pool(np.arange(len(train_fine)), use_val=use_val, seed=seed, small=small,
                                          what="CIFAR-100 training")
    train_images.share_memory_()
    test_images.share_memory_()
    train_sizes = np.full((len(train_fine), 2), SIDE, dtype=np.float32)
    test_sizes = np.full((len(test_fine), 2), SIDE, dtype=np.float32)
    transform = train_augmentation() if aug else None
    train_ids = [f"train/{i}" for i in range(len(train_fine))]

    def part(images, labels, sizes, indices, tf=None):
        return TensorImageDataset(images, labels, sizes, indices, resize=resize, transform=tf)

    return DataSplits(
        name="cifar100",
        train=part(train_images, train_fine, train_sizes, train_idx, transform),
        val=None if val_idx is None else part(train_images, train_fine, train_sizes, val_idx),
        test=part(test_images, test_fine, test_sizes, np.arange(len(test_fine))),
        hierarchy=hierarchy,
        in_channels=3,
        train_labels=train_fine[train_idx],
        image_size=resize or SIDE,
        image_ids={"train": train_ids, "val": train_ids, "test": [f"test/{i}" for i in range(len(test_fine))]},
        split_source="official",
    )
