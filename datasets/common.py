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

    @property
    def n_classes(self):
        return self.hierarchy.n_classes

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

    #: Items keep their uint8 image (converted by ``to_float`` on the training device); set by the trainer
    #: only where there is no transform and no resize (see ``utils.trainer.uint8_view``).
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
def _count(n, fraction):
    """Images in a part of ``fraction`` of n: round half up."""
    return int(math.floor(n * fraction + 0.5))


def random_split(n, *, use_val, seed, val_fraction=0.1, test_fraction=None):
    """Seeded random train / val / test split of ``n`` items (docs/datasets.md).

    With ``use_val``: 70 / 10 / 20 (test 20%, val 10%, train the rest); without:
    90 / 10 (test 10%, train the rest).  One ``numpy.random.default_rng(seed)``
    permutation; its first items are the train part, then val, then test.
    Each part is returned sorted.  ``val`` is None without ``use_val``.
    """
    if test_fraction is None:
        test_fraction = 0.2 if use_val else 0.1
    n_test = _count(n, test_fraction)
    n_val = _count(n, val_fraction) if use_val else 0
    n_train = n - n_test - n_val
    if n_train <= 0 or n_test <= 0 or (use_val and n_val <= 0):
        raise UserError(
            f"too few images ({n}) to split into train/{'val/' if use_val else ''}test; add images"
        )
    perm = np.random.default_rng(seed).permutation(n)
    train = np.sort(perm[:n_train])
    val = np.sort(perm[n_train : n_train + n_val]) if use_val else None
    test = np.sort(perm[n_train + n_val :])
    return train, val, test


def split_train_pool(pool, *, use_val, seed, small=False, val_fraction=0.1, small_fraction=0.1, what="training"):
    """Split an official training pool (indices) into train and optional val.

    ``use_val``: val = 10% of the pool, train the rest (CIFAR: 45,000 / 5,000).
    ``small``: train = 10% of the pool; with ``use_val`` the rest is val.
    Seeded permutation of the pool; parts returned sorted.
    """
    pool = np.asarray(pool, dtype=np.int64)
    n = len(pool)
    perm = pool[np.random.default_rng(seed).permutation(n)]
    if small:
        n_train = _count(n, small_fraction)
        train, val = perm[:n_train], (perm[n_train:] if use_val else None)
    elif use_val:
        n_val = _count(n, val_fraction)
        train, val = perm[n_val:], perm[:n_val]
    else:
        train, val = perm, None
    if len(train) == 0 or (val is not None and len(val) == 0):
        raise UserError(f"too few {what} images ({n}) for this split; add images or drop --small/--use_val")
    return np.sort(train), (None if val is None else np.sort(val))
