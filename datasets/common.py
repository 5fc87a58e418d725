"""Shared pieces of every loader: the result type, image decoding, checking, splits.

Every dataset item is ``(image, label, wh)``:

* ``image``: float32 tensor ``[C, S, S]`` in [0, 1] (no mean/std normalisation);
* ``label``: int, the index of the class in the loader's hierarchy;
* ``wh``: float32 tensor ``[2]``, the original (width, height) in pixels before
  resizing (the input of ``--size_inform``).

Datasets hold plain arrays, lists and tensors only (no lambdas), so they pickle
into ``DataLoader`` workers; randomness (augmentation) comes from torch's RNG,
so seeding torch (and the workers, as the DataLoader does) makes runs repeatable.
"""
import concurrent.futures
import copy
import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from utils.errors import UserError
from utils.hierarchy import Hierarchy

#: File name endings (lower case) read as images; everything else is ignored.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
)

#: Decoded, resized images are kept in memory when they fit in this many bytes
#: (uint8, ``N * C * S * S``); larger datasets are decoded from disk every epoch.
CACHE_LIMIT_BYTES = 1 << 30


@dataclass
class DataSplits:
    """What every loader returns (see ``docs/datasets.md``)."""

    name: str
    train: torch.utils.data.Dataset
    val: Optional[torch.utils.data.Dataset]
    test: torch.utils.data.Dataset
    hierarchy: Hierarchy
    in_channels: int
    train_labels: np.ndarray
    image_size: int
    #: Per split (``"train"``, ``"val"``, ``"test"``), the names of the images its
    #: ``indices`` point into: path relative to the data root, or ``train/<row>``
    #: / ``test/<row>`` (row in the official file) for CIFAR-100.
    image_ids: Optional[dict] = None

    @property
    def n_classes(self):
        return self.hierarchy.n_classes

    def split_table(self):
        """One row per image: ``image``, ``label`` (class index), ``split`` (the record's ``split.csv``).

        Rows come split by split (train, val, test), each in its item order (so
        the k-th ``test`` row is the k-th row of the test outputs), then the
        images of the loaded files that no split uses (``unused``, e.g.
        CIFAR-100 ``--small`` without ``--use_val``) in file order.
        """
        import pandas as pd

        frames, used = [], {}
        for split in ("train", "val", "test"):
            part = getattr(self, split)
            if part is None:
                continue
            ids = (self.image_ids or {}).get(split)
            names = np.asarray(ids, dtype=object) if ids is not None else np.arange(len(part.labels)).astype(str)
            idx = np.asarray(part.indices, dtype=np.int64)
            frames.append(pd.DataFrame({"image": names[idx], "label": part.labels[idx], "split": split}))
            key = id(ids) if ids is not None else id(part.labels)
            seen = used.setdefault(key, (names, part.labels, np.zeros(len(part.labels), dtype=bool)))[2]
            seen[idx] = True
        for names, labels, seen in used.values():
            rest = np.flatnonzero(~seen)
            if len(rest):
                frames.append(pd.DataFrame({"image": names[rest], "label": labels[rest], "split": "unused"}))
        return pd.concat(frames, ignore_index=True)

    def summary(self):
        """One line: name, classes, levels and split sizes."""
        val = "-" if self.val is None else str(len(self.val))
        return (
            f"{self.name}: {self.n_classes} classes, {self.hierarchy.n_levels} levels, "
            f"train {len(self.train)} / val {val} / test {len(self.test)} images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}"
        )


def is_image_file(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def check_resize(resize):
    if isinstance(resize, bool) or not isinstance(resize, (int, np.integer)) or resize <= 0:
        raise UserError(f"--resize must be a positive number of pixels, got {resize!r}")
    return int(resize)


def require_folder(folder, what, hint):
    """A readable folder, or a UserError naming it and ``hint`` (what to do)."""
    if not os.path.isdir(folder):
        state = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise UserError(f"{what} {folder} {state}; {hint}")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise UserError(f"{what} {folder} is not readable; check its permissions")


# ------------------------------------------------------------------ decoding
def _to_mode(img, gray):
    """Convert a PIL image to 8-bit ``L`` (gray) or ``RGB``.

    16-bit and 32-bit gray images are scaled to 0..255 (16-bit by 1/257, others
    by their own maximum) instead of being clipped.
    """
    mode = "L" if gray else "RGB"
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            top = float(arr.max()) if arr.size else 0.0
            arr = arr * (255.0 / top) if top > 255.0 else arr
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if img.mode != mode:
        img = img.convert(mode)
    return img


def decode_image(path, gray, resize):
    """Open, fully decode and resize one image.

    Returns ``(width, height, array)`` with ``array`` uint8 ``[C, S, S]``;
    the resize squashes to S x S (no crop) with PIL's antialiased bilinear
    filter, like torchvision's ``Resize``.  Raises on a corrupt image.
    """
    with Image.open(path) as img:
        width, height = img.size
        img.load()
        if width <= 0 or height <= 0:
            raise ValueError("image has no pixels")
        img = _to_mode(img, gray)
        if img.size != (resize, resize):
            img = img.resize((resize, resize), Image.Resampling.BILINEAR)
        arr = np.array(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return width, height, np.ascontiguousarray(arr)


def should_cache(n_images, channels, resize, cache=None):
    """The caching rule: ``cache=None`` caches in memory when the uint8 images fit in ``CACHE_LIMIT_BYTES``
    (larger sets go to the disk cache, ``datasets.disk_cache``); ``cache="disk"`` forces the disk cache."""
    if cache == "disk":
        return False
    if cache is not None:
        return bool(cache)
    return n_images * channels * resize * resize <= CACHE_LIMIT_BYTES


def probe_image(path):
    """Open and fully decode one image (nothing kept); returns ``(width, height)``.  Raises on a corrupt image."""
    with Image.open(path) as img:
        width, height = img.size
        img.load()
    if width <= 0 or height <= 0:
        raise ValueError("image has no pixels")
    return width, height


def available_cpus():
    """CPUs this process may run on (at most 16): the thread count for checking images."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(16, count))


def _check_chunk(files, start, stop, gray, resize, sizes, store):
    errors = []
    for i in range(start, stop):
        try:
            if store is None:
                sizes[i] = probe_image(files[i])
            else:
                width, height, arr = decode_image(files[i], gray, resize)
                sizes[i] = (width, height)
                store[i] = arr
        except Exception as err:  # noqa: BLE001 - any failure to decode is a bad image
            reason = " ".join(str(err).split()) or type(err).__name__
            errors.append((i, reason))
    return stop - start, errors


def check_images(files, *, gray, resize, cache=None, desc="checking images", workers=None):
    """Open and decode every image once, up front.

    Returns ``(sizes, images)``: ``sizes`` float32 ``[N, 2]`` original (width,
    height); ``images`` a uint8 tensor ``[N, C, S, S]`` of the resized images
    when the caching rule says so (see :func:`should_cache`): in memory, or
    mapped from the disk cache (which, once built, spares the decoding), else ``None``.
    A corrupt or unreadable image raises a UserError naming the file.
    Runs in a thread pool (PIL releases the GIL while decoding) with a progress
    bar on a terminal.
    """
    n = len(files)
    channels = 1 if gray else 3
    store = None
    if should_cache(n, channels, resize, cache):
        store = np.empty((n, channels, resize, resize), dtype=np.uint8)
    elif cache is None or cache == "disk":
        from datasets import disk_cache

        cached = disk_cache.load_or_build(
            files, gray=gray, resize=resize,
            fill=lambda sizes, images: _decode_all(files, gray, resize, sizes, images, desc, workers))
        if cached is not None:
            return cached
    sizes = np.zeros((n, 2), dtype=np.float32)
    _decode_all(files, gray, resize, sizes, store, desc, workers)
    if store is None:
        return sizes, None
    # in shared memory, so that DataLoader workers map it instead of copying it
    return sizes, torch.from_numpy(store).share_memory_()


def _decode_all(files, gray, resize, sizes, store, desc, workers):
    """Fill ``sizes`` (and ``store`` unless None) from every file; UserError naming the first bad image."""
    from tqdm import tqdm

    n = len(files)
    workers = workers or available_cpus()
    chunk = max(16, min(512, math.ceil(n / (4 * workers))))
    errors = []
    with tqdm(total=n, desc=desc, unit="img", disable=None, leave=False) as bar:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_check_chunk, files, s, min(n, s + chunk), gray, resize, sizes, store)
                for s in range(0, n, chunk)
            ]
            for fut in concurrent.futures.as_completed(futures):
                done, errs = fut.result()
                errors.extend(errs)
                bar.update(done)
    if errors:
        errors.sort()
        index, reason = errors[0]
        more = f" ({len(errors) - 1} more bad images)" if len(errors) > 1 else ""
        raise UserError(
            f"corrupt or unreadable image {files[index]}: {reason}{more}; remove or replace it"
        )


# ------------------------------------------------------------------ datasets
def to_float(image_uint8, resize=None):
    """uint8 ``[C, h, w]`` tensor -> float32 in [0, 1], resized to ``resize`` if given."""
    x = image_uint8.to(torch.float32).div_(255.0)
    if resize is not None and tuple(x.shape[-2:]) != (resize, resize):
        x = F.interpolate(x[None], size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)[0]
        x = x.clamp_(0.0, 1.0)
    return x


class _SplitDataset(torch.utils.data.Dataset):
    """Common part: one split (``indices``) of a shared set of images."""

    #: Items keep their uint8 image (converted by ``to_float`` on the training device): see :meth:`uint8_view`.
    yield_uint8 = False

    def __init__(self, labels, sizes, indices, transform=None):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.float32)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.indices)

    @property
    def targets(self):
        """The labels of this split, in item order (int64)."""
        return self.labels[self.indices]

    def uint8_view(self):
        """The same split yielding uint8 images (the caller converts them with ``to_float``; used by
        ``utils.training.speed.uint8_view`` only where that is the whole conversion)."""
        view = copy.copy(self)
        view.yield_uint8 = True
        return view

    def _finish(self, j, x):
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[j]), torch.from_numpy(self.sizes[j].copy())


class ImageFileDataset(_SplitDataset):
    """Images on disk (plankton, taxonomy folders, NABirds).

    ``cache`` (uint8 ``[N, C, S, S]`` tensor of all images, or None) holds the
    decoded, resized images when they fit in memory; otherwise each item is
    decoded from its file.
    """

    def __init__(self, files, labels, sizes, indices, *, resize, gray, cache=None, transform=None):
        super().__init__(labels, sizes, indices, transform)
        self.files = list(files)
        self.resize = int(resize)
        self.gray = bool(gray)
        self.cache = cache

    def __getitem__(self, i):
        j = int(self.indices[i])
        if self.cache is not None:
            image = self.cache[j]
        else:
            image = torch.from_numpy(decode_image(self.files[j], self.gray, self.resize)[2])
        return self._finish(j, image if self.yield_uint8 else to_float(image))

    def file(self, i):
        return self.files[int(self.indices[i])]


class TensorImageDataset(_SplitDataset):
    """Images already in memory as uint8 ``[N, C, h, w]`` (CIFAR-100)."""

    def __init__(self, images, labels, sizes, indices, *, resize=None, transform=None):
        super().__init__(labels, sizes, indices, transform)
        self.images = images
        self.resize = None if resize is None else int(resize)

    def __getitem__(self, i):
        j = int(self.indices[i])
        image = self.images[j]
        return self._finish(j, image if self.yield_uint8 else to_float(image, self.resize))


def train_augmentation():
    """``--aug``: random affine (rotation 15 deg, translation 0.1, scale 0.9-1.1, shear 10) + horizontal flip.

    torchvision v2 transforms on tensors; their randomness is torch's RNG.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10),
            v2.RandomHorizontalFlip(),
        ]
    )


# ------------------------------------------------------------------ splits
def paper_permutation(n, seed):
    """The paper's draw: ``torch.randperm(n)`` from a ``torch.Generator`` seeded with ``seed``.

    ``torch.utils.data.random_split(..., generator=torch.Generator().manual_seed(seed))``
    draws exactly this permutation and cuts it into consecutive parts.
    """
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(int(n), generator=generator).numpy().astype(np.int64)


def cut_permutation(n, counts, seed, what="images"):
    """Consecutive parts of :func:`paper_permutation`: ``counts`` (the first parts), then the rest.

    Each part keeps the permutation order (as ``torch.utils.data.Subset`` does).
    A UserError when a part would be empty.
    """
    counts = [int(c) for c in counts]
    if min(counts + [n - sum(counts)]) <= 0:
        raise UserError(f"too few {what} ({n}) for this split (parts of {', '.join(map(str, counts))} and the "
                        "rest); add images or drop --use_val/--small")
    perm = paper_permutation(n, seed)
    bounds = np.cumsum([0] + counts + [n - sum(counts)])
    return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def random_split(n, *, use_val, seed):
    """The paper's train / val / test split of ``n`` images (docs/datasets.md).

    With ``use_val``: the first ``int(0.7 n)`` of :func:`paper_permutation`
    train, the next ``int(0.1 n)`` validate, the rest test; without: the first
    ``int(0.9 n)`` train, the rest test (``val`` is None).  Parts keep the
    permutation order.
    """
    if use_val:
        return tuple(cut_permutation(n, [int(0.7 * n), int(0.1 * n)], seed))
    train, test = cut_permutation(n, [int(0.9 * n)], seed)
    return train, None, test


def split_train_pool(pool, *, use_val, seed, small=False, what="training"):
    """Split an official training pool (indices, in file order) into train and optional val.

    ``use_val``: the first ``int(0.9 n)`` of :func:`paper_permutation` of the
    pool train, the rest validate (CIFAR-100: 45,000 / 5,000).
    ``small``: the first ``int(0.1 n)`` train (5,000); with ``use_val`` the
    rest validate.  Neither: the whole pool in file order trains.
    Parts keep the permutation order.
    """
    pool = np.asarray(pool, dtype=np.int64)
    n = len(pool)
    if not small and not use_val:
        if n == 0:
            raise UserError(f"no {what} images; add images")
        return pool, None
    first = int(0.1 * n) if small else int(0.9 * n)
    train, rest = cut_permutation(n, [first], seed, what=f"{what} images")
    return pool[train], (pool[rest] if use_val else None)
