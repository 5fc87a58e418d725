"""An on-disk uint8 cache of decoded, resized images, for datasets too large to keep in memory.

The first load decodes and resizes every image once into a memory-mapped
``uint8 [N, C, S, S]`` file; later epochs and later runs map it instead of
decoding JPEGs (see ``docs/datasets.md``, "Image cache on disk").

Where: ``<common folder of the image files>/.cache/`` (for NABirds
``<data_root>/nabirds/images/.cache/``), or the folder named by the environment
variable ``IMAGE_CACHE_DIR``.  Three files share one name
``<folder name>-<rgb|gray><S>-<key>``:

* ``.u8``         the images, raw uint8 in C order;
* ``.sizes.npy``  float32 ``[N, 2]`` original (width, height);
* ``.json``       the manifest (key, shape), written last.

The key is a SHA-256 of the cache format, the resize, gray/RGB and the file
list (path, byte size and modification time of every file), so a changed file
list, resize or image gives a new cache; old ones stay until removed (deleting
``.cache`` is always safe).  A cache counts as complete only when its manifest
names the same key and the data file has the expected length: every file is
written under a temporary name and renamed into place, the manifest last, so a
killed build never leaves a cache that looks complete.
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch

from utils.errors import UserError
from utils.io import atomic_path, write_json

#: Folder name of the cache beside the images (hidden: the folder scanners skip it).
CACHE_FOLDER = ".cache"
#: Environment variable naming another cache folder (e.g. when the dataset is read-only).
CACHE_DIR_ENV = "IMAGE_CACHE_DIR"
FORMAT_VERSION = 1


def cache_key(files, gray, resize):
    """SHA-256 (hex) of the format, resize, mode and every file's path, size and mtime; OSError if one is missing."""
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, bool(gray), int(resize)]).encode())
    for path in files:
        st = os.stat(path)
        h.update(f"\n{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def cache_base(files, gray, resize, key, folder=None):
    """Path of the cache files without their ending."""
    common = os.path.commonpath([os.path.abspath(f) for f in files])
    if not os.path.isdir(common):
        common = os.path.dirname(common)
    folder = folder or os.environ.get(CACHE_DIR_ENV) or os.path.join(common, CACHE_FOLDER)
    label = os.path.basename(common.rstrip(os.sep)) or "images"
    return os.path.join(folder, f"{label}-{'gray' if gray else 'rgb'}{int(resize)}-{key[:20]}")


def _shape(n, gray, resize):
    return (n, 1 if gray else 3, int(resize), int(resize))


def load(base, key, shape):
    """``(sizes, images)`` of a complete cache at ``base``, else None."""
    try:
        with open(base + ".json", encoding="utf-8") as fh:
            manifest = json.load(fh)
        if manifest.get("key") != key or tuple(manifest.get("shape", ())) != shape:
            return None
        if os.path.getsize(base + ".u8") != int(np.prod(shape)):
            return None
        sizes = np.load(base + ".sizes.npy", allow_pickle=False)
        if sizes.shape != (shape[0], 2) or sizes.dtype != np.float32:
            return None
    except (OSError, ValueError):
        return None
    # copy-on-write mapping: writable for torch, never written back
    images = np.memmap(base + ".u8", dtype=np.uint8, mode="c", shape=shape)
    return sizes, torch.from_numpy(images)


def build(base, key, shape, fill):
    """Decode every image into a new cache at ``base`` with ``fill(sizes, images)``; returns what :func:`load` does."""
    folder = os.path.dirname(base)
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(base + ".json"):
        os.remove(base + ".json")  # the old manifest goes first: nothing half-replaced looks complete
    tmp = f"{base}.u8.tmp-{os.getpid()}"
    nbytes = int(np.prod(shape))
    try:
        with open(tmp, "wb") as fh:
            try:
                os.posix_fallocate(fh.fileno(), 0, nbytes)  # no room: an error now, not a crash later
            except (AttributeError, OSError) as err:
                if getattr(err, "errno", None) == 28:
                    raise UserError(f"no room for the image cache in {folder} ({nbytes / 2**30:.1f} GiB); free "
                                    f"space or point {CACHE_DIR_ENV} at another disk") from None
                fh.truncate(nbytes)
        images = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=shape)
        sizes = np.zeros((shape[0], 2), dtype=np.float32)
        fill(sizes, images)
        images.flush()
        del images
        os.replace(tmp, base + ".u8")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    with atomic_path(base + ".sizes.npy") as tmp_sizes:
        with open(tmp_sizes, "wb") as fh:
            np.save(fh, sizes)
    write_json(base + ".json", {"key": key, "shape": list(shape), "format": FORMAT_VERSION, "n_files": shape[0]})
    return load(base, key, shape)


def load_or_build(files, *, gray, resize, fill, folder=None):
    """The cached ``(sizes, images)`` for ``files``, building the cache on first use.

    ``fill(sizes, images)`` decodes every image into the arrays (raising on a bad
    image).  None when there is nothing to cache or the cache folder cannot be
    written (the caller then decodes images every epoch).
    """
    if len(files) == 0:
        return None
    shape = _shape(len(files), gray, resize)
    try:
        key = cache_key(files, gray, resize)
    except OSError:
        return None  # a missing file: the caller's check names it
    base = cache_base(files, gray, resize, key, folder)
    found = load(base, key, shape)
    if found is not None:
        return found
    try:
        return build(base, key, shape, fill)
    except OSError as err:  # a read-only or foreign folder
        print(f"notice: cannot write the image cache {base}.u8 ({err.strerror or err}); decoding images every epoch "
              f"(set {CACHE_DIR_ENV} to a writable folder)", file=sys.stderr)
        return None
