"""Small fake datasets written in the exact formats of the real ones (for tests).

* :func:`write_fake_cifar100`: ``cifar-100-python/{train,test,meta}`` (or the
  ``.tar.gz``) as Python-2 protocol-2 pickles, byte for byte the structure of
  the official files (``str`` keys, a numpy uint8 ``data`` array).
* :func:`write_fake_nabirds`: ``nabirds/`` with ``images/<4-digit id>/``, the
  five text tables and ``sizes.txt``.
* :func:`write_fake_plankton`: a taxonomy folder of variable depth, with a class
  that is also an ancestor of another class, images of different sizes, and
  optionally the original two-CSV description.

Every function is deterministic and fast (well under a second).
"""
import io
import os
import struct
import tarfile

import numpy as np
from PIL import Image

# ------------------------------------------------------------------ CIFAR-100
#: The official CIFAR-100 superclasses (coarse label order) and their classes.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
CIFAR100_COARSE = list(CIFAR100_SUPERCLASSES)
CIFAR100_FINE = sorted(c for members in CIFAR100_SUPERCLASSES.values() for c in members)
CIFAR100_FINE_TO_COARSE = [
    next(i for i, s in enumerate(CIFAR100_COARSE) if f in CIFAR100_SUPERCLASSES[s]) for f in CIFAR100_FINE
]


class Py2Pickler:
    """Writes objects as Python 2's ``cPickle.dump(obj, f, 2)`` did.

    Python-2 ``str`` is written with the (SHORT_)BINSTRING opcodes (Python 3
    would write bytes through ``_codecs.encode``), and numpy arrays the way
    numpy 1.x under Python 2 reduced them: ``numpy.core.multiarray._reconstruct``
    plus a ``BUILD`` with ``(1, shape, dtype, is_fortran, raw bytes)``.
    Supported: dict, list, tuple, str (latin-1), bytes, int, bool, None,
    numpy arrays, and :class:`Global` (a reference to ``module.name``).
    """

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo = 0

    def _put(self):
        self.out += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)
        self.memo += 1

    def _string(self, raw):
        if len(raw) < 256:
            self.out += b"U" + bytes([len(raw)]) + raw
        else:
            self.out += b"T" + struct.pack("<i", len(raw)) + raw
        self._put()

    def _global(self, module, name):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        self._put()

    def _tuple(self, items):
        if len(items) == 0:
            self.out += b")"
            return
        if len(items) <= 3:
            for item in items:
                self.dump(item)
            self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(items)]
        else:
            self.out += b"("
            for item in items:
                self.dump(item)
            self.out += b"t"
        self._put()

    def _array(self, arr):
        arr = np.ascontiguousarray(arr)
        self._global("numpy.core.multiarray", "_reconstruct")
        self.out += b"("
        self._global("numpy", "ndarray")
        self._tuple((0,))
        self._string(b"b")
        self.out += b"t"
        self._put()
        self.out += b"R"
        self._put()
        # state: (version, shape, dtype, is_fortran, raw data)
        self.out += b"("
        self.dump(1)
        self._tuple(tuple(int(s) for s in arr.shape))
        self._global("numpy", "dtype")
        self._tuple((arr.dtype.str[1:], 0, 1))
        self.out += b"R"
        self._put()
        self._tuple((3, arr.dtype.str[0], None, None, None, -1, -1, 0))
        self.out += b"b"
        self.dump(False)
        self._string(arr.tobytes())
        self.out += b"t"
        self._put()
        self.out += b"b"

    def dump(self, obj):
        if obj is None:
            self.out += b"N"
        elif obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, (int, np.integer)):
            v = int(obj)
            if 0 <= v < 256:
                self.out += b"K" + bytes([v])
            elif 0 <= v < 65536:
                self.out += b"M" + struct.pack("<H", v)
            else:
                self.out += b"J" + struct.pack("<i", v)
        elif isinstance(obj, str):
            self._string(obj.encode("latin1"))
        elif isinstance(obj, bytes):
            self._string(obj)
        elif isinstance(obj, Global):
            self._global(obj.module, obj.name)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self.out += b"]"
            self._put()
            for start in range(0, len(obj), 1000):  # cPickle batches APPENDS by 1000
                self.out += b"("
                for item in obj[start : start + 1000]:
                    self.dump(item)
                self.out += b"e"
        elif isinstance(obj, dict):
            self.out += b"}"
            self._put()
            if obj:
                self.out += b"("
                for key, value in obj.items():
                    self.dump(key)
                    self.dump(value)
                self.out += b"u"
        elif isinstance(obj, np.ndarray):
            self._array(obj)
        else:
            raise TypeError(f"Py2Pickler cannot write {type(obj).__name__}")

    def getvalue(self):
        return bytes(self.out) + b"."


class Global:
    """A reference to ``module.name`` in a pickle (to write hostile test files)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


def py2_pickle(obj):
    writer = Py2Pickler()
    writer.dump(obj)
    return writer.getvalue()


def fake_cifar100_arrays(n_train_per_class=2, n_test_per_class=1, seed=0):
    """The content the fake archive holds: ``{"train": {...}, "test": {...}, "meta": {...}}``.

    Each part has ``data`` (uint8 ``[N, 3072]``, random pixels), ``fine_labels``,
    ``coarse_labels`` (lists, classes in a shuffled order) and ``filenames``.
    """
    rng = np.random.default_rng(seed)
    out = {"meta": {"fine_label_names": list(CIFAR100_FINE), "coarse_label_names": list(CIFAR100_COARSE)}}
    for part, per_class in (("train", n_train_per_class), ("test", n_test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        n = len(fine)
        out[part] = {
            "filenames": [f"{CIFAR100_FINE[f]}_s_{i:06d}.png" for i, f in enumerate(fine)],
            "batch_label": "training batch 1 of 1" if part == "train" else "testing batch 1 of 1",
            "fine_labels": [int(f) for f in fine],
            "coarse_labels": [CIFAR100_FINE_TO_COARSE[f] for f in fine],
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        }
    return out


def write_fake_cifar100(root, n_train_per_class=2, n_test_per_class=1, *, seed=0, as_tar=False, parts=None):
    """Write a fake ``cifar-100-python/`` (or ``cifar-100-python.tar.gz``) under ``root``; returns ``root``.

    ``parts`` replaces the content of some files (``{"meta": obj}``; obj is
    written with :func:`py2_pickle`, or as is when it is bytes).
    """
    root = os.fspath(root)
    content = fake_cifar100_arrays(n_train_per_class, n_test_per_class, seed)
    content.update(parts or {})
    blobs = {name: (obj if isinstance(obj, bytes) else py2_pickle(obj)) for name, obj in content.items()}
    os.makedirs(root, exist_ok=True)
    if as_tar:
        with tarfile.open(os.path.join(root, "cifar-100-python.tar.gz"), "w:gz") as tar:
            folder = tarfile.TarInfo("cifar-100-python")
            folder.type = tarfile.DIRTYPE
            folder.mode = 0o755
            tar.addfile(folder)
            for name in ("file.txt~", "meta", "test", "train"):
                blob = blobs.get(name, b"")
                info = tarfile.TarInfo(f"cifar-100-python/{name}")
                info.size = len(blob)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(blob))
    else:
        folder = os.path.join(root, "cifar-100-python")
        os.makedirs(folder, exist_ok=True)
        for name, blob in blobs.items():
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(blob)
    return root


# -------------------------------------------------------------------- NABirds
#: (id, name, parent id) of the fake NABirds tree; classes with images: FAKE_NABIRDS_IMAGES.
FAKE_NABIRDS_NODES = [
    (0, "Birds", None),
    (1, "Ducks, Geese, and Swans", 0),
    (2, "Perching Birds", 0),
    (3, "Wood-Warblers", 2),
    (10, "Mallard", 1),
    (11, "Common Eider", 1),
    (12, "Yellow Warbler", 3),
    (295, "Common Eider (Adult male)", 11),
    (463, "Common Eider (Female/juvenile)", 11),
    (500, "Mallard", 10),  # a leaf class named like its species node
    (600, "Yellow Warbler", 12),
    (700, "Yellow Warbler (no images)", 12),
    (1005, "Ducks, Geese, and Swans", 1),  # a name repeated on another level, id > 999
]
#: Class id -> number of images in the fake folder.
FAKE_NABIRDS_IMAGES = {295: 3, 463: 2, 500: 4, 600: 3, 1005: 2}


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


def write_fake_nabirds(root, images_per_class=None, *, seed=0, image_list=False, resized=False):
    """Write ``<root>/nabirds/`` as distributed (tables, ``images/<4-digit id>/<uuid>.jpg``); returns ``root``.

    Image ids are uuid-like strings; image ``k`` overall is ``(20 + k) x (16 + 2k)``
    pixels.  Every third image is a training image in ``train_test_split.txt``.
    ``image_list``: also the paper's image list ``nabirds_info.csv``
    (``Filepath,Class``; Filepath ``/DATA_init/nabirds/images_128/<id>/<file>``,
    Class the class id) with the images in a seeded shuffled order.
    ``resized``: also the paper's resized copy ``images_128/`` (the same
    files, each ``(4 + k % 5) x 6`` pixels).
    """
    root = os.fspath(root)
    folder = os.path.join(root, "nabirds")
    counts = dict(images_per_class or FAKE_NABIRDS_IMAGES)
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    _write_lines(os.path.join(folder, "classes.txt"), [f"{i} {name}" for i, name, _ in FAKE_NABIRDS_NODES])
    _write_lines(os.path.join(folder, "hierarchy.txt"),
                 [f"{i} {parent}" for i, _, parent in FAKE_NABIRDS_NODES if parent is not None])
    images, labels, split, sizes = [], [], [], []
    k = 0
    for cid in sorted(counts, key=lambda c: -counts[c]):  # most images first: not in class order
        sub = f"{cid:04d}"
        os.makedirs(os.path.join(folder, "images", sub), exist_ok=True)
        for _ in range(counts[cid]):
            hexid = "".join(f"{b:02x}" for b in rng.integers(0, 256, 16))
            image_id = f"{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-{hexid[20:]}"
            width, height = 20 + k, 16 + 2 * k
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(os.path.join(folder, "images", sub, f"{hexid}.jpg"), quality=90)
            images.append(f"{image_id} {sub}/{hexid}.jpg")
            labels.append(f"{image_id} {cid}")
            split.append(f"{image_id} {1 if k % 3 == 0 else 0}")
            sizes.append(f"{image_id} {width} {height}")
            k += 1
    if resized:
        for k, line in enumerate(images):
            rel = line.split()[1]
            os.makedirs(os.path.join(folder, "images_128", os.path.dirname(rel)), exist_ok=True)
            small = rng.integers(0, 256, size=(6, 4 + k % 5, 3), dtype=np.uint8)
            Image.fromarray(small, "RGB").save(os.path.join(folder, "images_128", rel), quality=90)
    if image_list:
        rows = [f"/DATA_init/nabirds/images_128/{line.split()[1]},{cls.split()[1]}" for line, cls in zip(images, labels)]
        _write_lines(os.path.join(folder, "nabirds_info.csv"),
                     ["Filepath,Class"] + [rows[i] for i in rng.permutation(len(rows))])
    _write_lines(os.path.join(folder, "images.txt"), images)
    _write_lines(os.path.join(folder, "image_class_labels.txt"), labels)
    _write_lines(os.path.join(folder, "train_test_split.txt"), split)
    _write_lines(os.path.join(folder, "sizes.txt"), sizes)
    return root


# ------------------------------------------------------------------- plankton
#: Class folders of the fake plankton set -> number of images (sorted-path order).
FAKE_PLANKTON_CLASSES = {
    ("Ciliophora", "Oligotrichea", "Strombidium"): 3,  # holds images and a sub-folder class
    ("Ciliophora", "Oligotrichea", "Strombidium", "Strombidium conicum"): 4,
    ("Ciliophora", "Tintinnida sp"): 3,
    ("Diatoms", "Chaetoceros", "Chaetoceros spp"): 5,
    ("Diatoms", "Coscinodiscus"): 3,
    ("nonliving", "detritus"): 2,
}


def fake_plankton_size(class_index, k):
    """Original (width, height) of image ``k`` of class ``class_index`` in the fake plankton set."""
    return 12 + 5 * class_index + k, 10 + 3 * class_index + 2 * k


def write_fake_plankton(root, name="FakePlankton", *, classes=None, mode="RGB", as_csv=False,
                        csv_prefix="/home/someone/data", seed=0, paper=False, numbers=None):
    """Write ``<root>/<name>/`` as a taxonomy folder; returns that folder.

    Image ``k`` of the ``i``-th class (sorted path) is :func:`fake_plankton_size`
    pixels, PNG for even ``k`` and JPEG for odd ``k``, in ``mode`` (RGB or L).
    Also written: an empty folder, a hidden folder with an image, and a text
    file, which the loader must ignore.  With ``as_csv`` the folder also holds
    ``classes.csv`` (``Class,Path,Number``; ``Number`` = ``numbers[i]`` for the
    ``i``-th class, default ``i``) and ``images.csv`` (``Filepath,Class``, in
    sorted-path order) whose Filepaths start with ``csv_prefix/<name>/``.
    ``paper``: the paper's tables instead, ``<name>_cls.csv`` and
    ``<name>_info.csv``, both with paths starting
    ``/DATA_init/plankton_datasets/<name>/`` (class Paths too), and the image
    rows in a seeded shuffled order.
    """
    folder = os.path.join(os.fspath(root), name)
    classes = dict(classes or FAKE_PLANKTON_CLASSES)
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    image_rows = []
    for i, path in enumerate(sorted(classes)):
        cls_folder = os.path.join(folder, *path)
        os.makedirs(cls_folder, exist_ok=True)
        for k in range(classes[path]):
            width, height = fake_plankton_size(i, k)
            shape = (height, width, channels) if channels == 3 else (height, width)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            fname = f"img_{k:03d}.png" if k % 2 == 0 else f"img_{k:03d}.jpg"
            Image.fromarray(pixels, mode).save(os.path.join(cls_folder, fname))
            image_rows.append(([*path, fname], path[-1]))
    os.makedirs(os.path.join(folder, "Diatoms", "Empty"), exist_ok=True)
    os.makedirs(os.path.join(folder, ".thumbnails", "x"), exist_ok=True)
    Image.new(mode, (5, 5)).save(os.path.join(folder, ".thumbnails", "x", "a.png"))
    with open(os.path.join(folder, "Diatoms", "notes.txt"), "w") as fh:
        fh.write("not an image\n")
    if as_csv or paper:
        import csv

        order = sorted(classes)
        numbers = list(range(len(order))) if numbers is None else list(numbers)
        class_prefix = ""
        class_file, image_file = "classes.csv", "images.csv"
        if paper:
            csv_prefix = "/DATA_init/plankton_datasets"
            class_prefix = f"{csv_prefix}/{name}/"
            class_file, image_file = f"{name}_cls.csv", f"{name}_info.csv"
            image_rows = [image_rows[i] for i in rng.permutation(len(image_rows))]
        with open(os.path.join(folder, class_file), "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Class", "Path", "Number"])
            for path in sorted(classes, reverse=True):  # not in class order
                writer.writerow([path[-1], class_prefix + "/".join(path), numbers[order.index(path)]])
        with open(os.path.join(folder, image_file), "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Filepath", "Class"])
            writer.writerows(("/".join([csv_prefix.rstrip("/"), name, *rel]), cls) for rel, cls in image_rows)
    return folder


def train_synthetic(data_root, record_dir, *flags, epochs=1):
    """One ``train.py`` run on the synthetic demo set (batch 64, ``epochs`` epochs); returns its run folder."""
    import train

    argv = ["--data_root", str(data_root), "--record_dir", str(record_dir), "--epochs", str(epochs),
            "--batch_size", "64", *flags]
    return train.main(argv)
