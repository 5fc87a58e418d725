"""Dataset loaders on small fake datasets written in the real formats (tests/fakes.py).

Expected numbers are worked out by hand in the comments.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from datasets.cifar100 import RestrictedUnpickler, restricted_load
from datasets.common import random_split, split_train_pool
from datasets.synthetic import _walk, build_tree
from datasets.taxonomy import resolve_filepaths
from tests import fakes
from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def expected_image(path, size, gray=False):
    """What the loader must return for one file: PIL decode, convert, antialiased bilinear resize, / 255."""
    with Image.open(path) as img:
        img = img.convert("L" if gray else "RGB").resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy()).float() / 255.0


def run_cli(*args):
    """``python -m datasets ...`` in a subprocess: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "datasets", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


# ====================================================================== splits
def torch_split(n, lengths, seed):
    """The paper's call: ``torch.utils.data.random_split`` with a seeded generator; the parts' indices."""
    parts = torch.utils.data.random_split(range(n), lengths, generator=torch.Generator().manual_seed(seed))
    return [list(p.indices) for p in parts]


def test_random_split_is_torchs_random_split():
    # counts by hand: int(0.7 * 1000) = 700, int(0.1 * 1000) = 100; int(0.9 * 1000) = 900
    train, val, test = random_split(1000, use_val=True, seed=1)
    assert [train.tolist(), val.tolist(), test.tolist()] == torch_split(1000, [700, 100, 200], 1)
    train, val, test = random_split(1000, use_val=False, seed=1)
    assert val is None and [train.tolist(), test.tolist()] == torch_split(1000, [900, 100], 1)
    assert not np.array_equal(test, random_split(1000, use_val=False, seed=2)[2])
    # 10 images: int(7.000000000000001) = 7, int(1.0) = 1, 2 left; 14 without val: int(12.6) = 12, 2 left
    assert [p.tolist() for p in random_split(10, use_val=True, seed=0)] == torch_split(10, [7, 1, 2], 0)
    assert [len(p) for p in random_split(14, use_val=True, seed=0)] == [9, 1, 4]  # int(9.8), int(1.4)
    assert len(random_split(3, use_val=False, seed=0)[2]) == 1  # int(2.7) = 2 train
    with pytest.raises(UserError, match=r"too few images \(2\)"):
        random_split(2, use_val=True, seed=0)  # int(0.2) = 0 val images
    with pytest.raises(UserError, match="too few images"):
        random_split(1, use_val=False, seed=0)  # int(0.9) = 0 train images


def test_split_train_pool_is_torchs_random_split():
    pool = np.arange(50000) + 7  # positions 0..49999 of the pool map to 7..50006
    train, val = split_train_pool(pool, use_val=True, seed=3)
    expected = torch_split(50000, [45000, 5000], 3)
    assert train.tolist() == [i + 7 for i in expected[0]] and val.tolist() == [i + 7 for i in expected[1]]
    train, val = split_train_pool(pool, use_val=True, seed=3, small=True)
    expected = torch_split(50000, [5000, 45000], 3)
    assert train.tolist() == [i + 7 for i in expected[0]] and val.tolist() == [i + 7 for i in expected[1]]
    train, val = split_train_pool(pool, use_val=False, seed=3, small=True)
    assert train.tolist() == [i + 7 for i in expected[0]] and val is None
    train, val = split_train_pool(pool, use_val=False, seed=3)
    assert np.array_equal(train, pool) and val is None  # the whole pool in file order


# =================================================================== CIFAR-100
def test_fake_cifar_files_are_python2_pickles(tmp_path):
    root = fakes.write_fake_cifar100(tmp_path)
    blob = (tmp_path / "cifar-100-python" / "train").read_bytes()
    assert blob[:2] == b"\x80\x02"  # protocol 2
    assert b"U\x04data" in blob and b"U\x0bfine_labels" in blob  # Python-2 str keys (SHORT_BINSTRING)
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in blob and b"_codecs" not in blob
    # the standard unpickler reads our own fake exactly as it reads the official files
    plain = pickle.loads(blob, encoding="latin1")
    content = fakes.fake_cifar100_arrays()
    assert sorted(plain) == ["batch_label", "coarse_labels", "data", "filenames", "fine_labels"]
    np.testing.assert_array_equal(plain["data"], content["train"]["data"])
    assert plain["data"].dtype == np.uint8 and plain["data"].shape == (200, 3072)
    assert plain["fine_labels"] == content["train"]["fine_labels"]
    with open(os.path.join(root, "cifar-100-python", "meta"), "rb") as fh:
        meta = RestrictedUnpickler(fh).load()
    assert meta["fine_label_names"][:3] == ["apple", "aquarium_fish", "baby"] and len(meta["coarse_label_names"]) == 20


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_images_labels_hierarchy(tmp_path, as_tar):
    fakes.write_fake_cifar100(tmp_path, n_train_per_class=2, n_test_per_class=1, as_tar=as_tar)
    if as_tar:
        assert not (tmp_path / "cifar-100-python").exists()
    data = datasets.load_cifar100(tmp_path)
    content = fakes.fake_cifar100_arrays(2, 1)
    assert (data.name, data.in_channels, data.image_size) == ("cifar100", 3, 32)
    assert (len(data.train), data.val, len(data.test)) == (200, None, 100)
    h = data.hierarchy
    assert h.names == fakes.CIFAR100_FINE and h.n_classes == 100 and h.n_levels == 4
    assert [h.n_groups(level) for level in range(4)] == [3, 7, 20, 100]
    assert h.paths[h.names.index("bear")] == ["Animals", "Mammals", "large_carnivores", "bear"]
    assert h.paths[h.names.index("sea")] == [
        "Nature_non-animal", "Nature_non-specific_organism", "large_natural_outdoor_scenes", "sea"]
    assert h.paths[h.names.index("tank")] == ["Artificial", "Artificial_outdoor", "vehicles_2", "tank"]
    assert h.paths[h.names.index("crab")][:3] == ["Animals", "Invertebrates", "non-insect_invertebrates"]
    # bear vs wolf: same superclass -> 2; bear vs whale: same middle group -> 4; bear vs tank -> 8
    assert h.distances[h.names.index("bear"), h.names.index("wolf")] == 2
    assert h.distances[h.names.index("bear"), h.names.index("whale")] == 4
    assert h.distances[h.names.index("bear"), h.names.index("tank")] == 8
    for i in (0, 37, 99):
        image, label, wh = data.test[i]
        want = torch.from_numpy(content["test"]["data"][i].reshape(3, 32, 32)).float() / 255.0
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
        assert torch.equal(image, want)
        assert label == content["test"]["fine_labels"][i]
        assert wh.dtype == torch.float32 and wh.tolist() == [32.0, 32.0]
    np.testing.assert_array_equal(data.train_labels, content["train"]["fine_labels"])


def test_cifar_splits_resize_and_aug(tmp_path):
    fakes.write_fake_cifar100(tmp_path, n_train_per_class=10, n_test_per_class=1)
    content = fakes.fake_cifar100_arrays(10, 1)
    data = datasets.load_cifar100(tmp_path, use_val=True, seed=5)
    assert (len(data.train), len(data.val), len(data.test)) == (900, 100, 100)  # 90 / 10 of 1,000
    expected = torch_split(1000, [900, 100], 5)  # the draw over the official training file order
    assert [data.train.indices.tolist(), data.val.indices.tolist()] == expected
    j = data.val.indices[7]
    assert torch.equal(data.val[7][0], torch.from_numpy(content["train"]["data"][j].reshape(3, 32, 32)).float() / 255)
    np.testing.assert_array_equal(data.train_labels, np.asarray(content["train"]["fine_labels"])[data.train.indices])
    again = datasets.load_cifar100(tmp_path, use_val=True, seed=5)
    assert np.array_equal(again.val.indices, data.val.indices)
    assert not np.array_equal(datasets.load_cifar100(tmp_path, use_val=True, seed=6).val.indices, data.val.indices)
    small = datasets.load_cifar100(tmp_path, use_val=True, small=True, seed=5)
    assert [small.train.indices.tolist(), small.val.indices.tolist()] == torch_split(1000, [100, 900], 5)
    assert datasets.load_cifar100(tmp_path, small=True).val is None

    big = datasets.load_cifar100(tmp_path, resize=48, aug=True, seed=5)
    assert big.image_size == 48 and big.test[0][0].shape == (3, 48, 48)
    plain = datasets.load_cifar100(tmp_path, resize=48, seed=5)
    assert torch.equal(big.test[3][0], plain.test[3][0])  # no augmentation outside the training split
    torch.manual_seed(0)
    first = big.train[3][0]
    torch.manual_seed(0)
    assert torch.equal(big.train[3][0], first)  # augmentation follows torch's RNG
    assert not torch.equal(first, plain.train[3][0])
    assert first.min() >= 0 and first.max() <= 1


def _hostile_reduce(target):
    class Hostile:
        def __reduce__(self):
            return (os.mkdir, (str(target),))

    return Hostile()


@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_refuses_calls_without_running_them(tmp_path, protocol):
    target = tmp_path / "pwned"
    blob = pickle.dumps({"fine_label_names": _hostile_reduce(target)}, protocol=protocol)
    with pytest.raises(UserError, match="refused to load global"):
        restricted_load(__import__("io").BytesIO(blob), "meta")
    assert not target.exists()
    # the same through the loader: a meta file calling builtins.eval is refused
    evil = fakes.py2_pickle({"x": (fakes.Global("__builtin__", "eval"), ("1",))})
    evil = evil.replace(b"\x86", b"R", 1)  # turn the (global, args) tuple into a call
    fakes.write_fake_cifar100(tmp_path / "root", parts={"meta": evil})
    with pytest.raises(UserError, match=r"meta is not a CIFAR-100 .*refused to load global __builtin__\.eval"):
        datasets.load_cifar100(tmp_path / "root")


def _cifar_parts(**changes):
    content = fakes.fake_cifar100_arrays(2, 1)
    for key, value in changes.items():
        part, field = key.split("__")
        content[part][field] = value
    return content


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(meta__coarse_label_names=fakes.CIFAR100_COARSE[:-1] + ["vehicles_3"]), "coarse_label_names"),
        (dict(meta__fine_label_names=fakes.CIFAR100_FINE[:99]), "must list 100 fine_label_names"),
        # apple and bear swapped: label 0 is now "bear" but its images have coarse label fruit_and_vegetables
        (dict(meta__fine_label_names=["bear", "aquarium_fish", "baby", "apple"] + fakes.CIFAR100_FINE[4:]),
         "class 'bear' has coarse label 'fruit_and_vegetables'"),
    ],
)
def test_cifar_inconsistent_meta(tmp_path, changes, message):
    fakes.write_fake_cifar100(tmp_path, parts=_cifar_parts(**changes))
    with pytest.raises(UserError, match="inconsistent CIFAR-100 meta") as err:
        datasets.load_cifar100(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cifar_coarse_labels_disagree_with_shipped_file(tmp_path):
    content = fakes.fake_cifar100_arrays(2, 1)
    fish = fakes.CIFAR100_COARSE.index("fish")
    for part in ("train", "test"):  # every apple image (fine 0) labelled as fish
        content[part]["coarse_labels"] = [fish if f == 0 else c for f, c in
                                          zip(content[part]["fine_labels"], content[part]["coarse_labels"])]
    fakes.write_fake_cifar100(tmp_path / "a", parts=content)
    with pytest.raises(UserError, match="class 'apple' has coarse label 'fish'"):
        datasets.load_cifar100(tmp_path / "a")
    content = fakes.fake_cifar100_arrays(2, 1)
    content["test"]["coarse_labels"] = [fish if f == 0 else c for f, c in
                                        zip(content["test"]["fine_labels"], content["test"]["coarse_labels"])]
    fakes.write_fake_cifar100(tmp_path / "b", parts=content)
    with pytest.raises(UserError, match="two different coarse labels"):
        datasets.load_cifar100(tmp_path / "b")


def test_cifar_missing_and_damaged_files(tmp_path):
    with pytest.raises(UserError, match="CIFAR-100 not found"):
        datasets.load_cifar100(tmp_path)
    fakes.write_fake_cifar100(tmp_path)
    train = tmp_path / "cifar-100-python" / "train"
    train.write_bytes(train.read_bytes()[:5000])  # truncated
    with pytest.raises(UserError, match="train is corrupt"):
        datasets.load_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(UserError, match="meta is missing"):
        datasets.load_cifar100(tmp_path)
    content = fakes.fake_cifar100_arrays()
    content["test"]["data"] = content["test"]["data"].astype(np.int16)
    fakes.write_fake_cifar100(tmp_path / "c", parts=content)
    with pytest.raises(UserError, match="uint8 array"):
        datasets.load_cifar100(tmp_path / "c")


# ===================================================================== NABirds
# images.txt order (most images first): 500 x4 (k 0-3), 295 x3 (4-6), 600 x3 (7-9), 463 x2 (10-11), 1005 x2 (12-13)
# labels = rank of the class id among 295, 463, 500, 600, 1005
NABIRDS_LABELS = [2, 2, 2, 2, 0, 0, 0, 3, 3, 3, 1, 1, 4, 4]  # image k of images.txt (fakes: most images first)


def nabirds_k(root):
    """Image order without an image list, sorted path: ``k`` (line of images.txt) at each loader position."""
    rel = [line.split()[1] for line in (root / "nabirds" / "images.txt").read_text().splitlines()]
    return sorted(range(len(rel)), key=rel.__getitem__)


def test_nabirds_classes_and_paths_by_id(tmp_path):
    fakes.write_fake_nabirds(tmp_path)
    data = datasets.load_nabirds(tmp_path, resize=24)
    h = data.hierarchy
    assert h.names == ["Common Eider (Adult male)", "Common Eider (Female/juvenile)", "Mallard", "Yellow Warbler",
                       "Ducks, Geese, and Swans"]  # ids 295, 463, 500, 600, 1005; 700 has no image
    assert h.paths == [
        ["Birds", "Ducks, Geese, and Swans", "Common Eider", "Common Eider (Adult male)"],
        ["Birds", "Ducks, Geese, and Swans", "Common Eider", "Common Eider (Female/juvenile)"],
        ["Birds", "Ducks, Geese, and Swans", "Mallard", "Mallard"],
        ["Birds", "Perching Birds", "Wood-Warblers", "Yellow Warbler", "Yellow Warbler"],
        ["Birds", "Ducks, Geese, and Swans", "Ducks, Geese, and Swans"],
    ]
    # Eider male vs female: 1 + 1; Mallard vs Eider male: 2 + 2; Warbler vs Eider: 4 + 3; id 1005 vs Mallard: 1 + 2
    assert (h.distances[0, 1], h.distances[2, 0], h.distances[3, 0], h.distances[4, 2]) == (2, 4, 7, 3)
    assert (data.name, data.in_channels, data.image_size) == ("nabirds", 3, 24)
    assert (len(data.train), data.val, len(data.test)) == (12, None, 2)  # 14 images: train int(12.6) = 12
    order = nabirds_k(tmp_path)
    # the fake writes class folders 0500, 0295, 0600, 0463, 1005 in that order; sorted paths put 0295 first
    assert [NABIRDS_LABELS[k] for k in order] == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4]
    for part in (data.train, data.test):
        for i in range(len(part)):
            image, label, wh = part[i]
            k = order[int(part.indices[i])]
            assert label == NABIRDS_LABELS[k]
            assert wh.tolist() == [20.0 + k, 16.0 + 2 * k]  # image k is (20 + k) x (16 + 2k)
            assert image.shape == (3, 24, 24)
            assert os.path.basename(os.path.dirname(part.file(i))) == f"{[295, 463, 500, 600, 1005][label]:04d}"
    assert torch.equal(data.test[0][0], expected_image(data.test.file(0), 24))
    with_val = datasets.load_nabirds(tmp_path, use_val=True, seed=3, resize=24)
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (9, 1, 4)  # int(9.8), int(1.4), rest


def test_nabirds_official_split_and_aug(tmp_path):
    fakes.write_fake_nabirds(tmp_path)
    data = datasets.load_nabirds(tmp_path, official_split=True, resize=16, aug=True)
    # train_test_split.txt: image k is a training image when k % 3 == 0 -> 0, 3, 6, 9, 12
    order = nabirds_k(tmp_path)
    pool = [j for j, k in enumerate(order) if k % 3 == 0]  # their loader positions, in image (sorted path) order
    assert data.train.indices.tolist() == pool and len(data.test) == 9
    assert data.train_labels.tolist() == sorted(NABIRDS_LABELS[k] for k in (0, 3, 6, 9, 12))  # [0, 2, 2, 3, 4]
    with_val = datasets.load_nabirds(tmp_path, official_split=True, use_val=True, seed=0, resize=16)
    expected = torch_split(5, [4, 1], 0)  # int(0.9 * 5) = 4 train of the 5 official training images
    assert with_val.train.indices.tolist() == [pool[i] for i in expected[0]]
    assert with_val.val.indices.tolist() == [pool[i] for i in expected[1]]
    plain = datasets.load_nabirds(tmp_path, official_split=True, resize=16)
    torch.manual_seed(1)
    a = data.train[0][0]
    torch.manual_seed(1)
    assert torch.equal(a, data.train[0][0])  # augmentation follows torch's RNG
    assert not torch.equal(a, plain.train[0][0])
    assert torch.equal(data.test[2][0], plain.test[2][0])  # training split only


def test_nabirds_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="NABirds folder .* does not exist"):
        datasets.load_nabirds(tmp_path)
    fakes.write_fake_nabirds(tmp_path)
    folder = tmp_path / "nabirds"
    hierarchy = (folder / "hierarchy.txt").read_text()
    (folder / "hierarchy.txt").write_text(hierarchy + "0 2\n")  # Birds under Perching Birds: a cycle
    with pytest.raises(UserError, match="cycle"):
        datasets.load_nabirds(tmp_path)
    (folder / "hierarchy.txt").write_text(hierarchy)
    first = (folder / "images.txt").read_text().split()[1]
    (folder / "images" / first).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(UserError, match=f"corrupt or unreadable image .*{first.split('/')[1]}"):
        datasets.load_nabirds(tmp_path)
    (folder / "images" / first).unlink()
    with pytest.raises(UserError, match="1 of the 14 images listed .* are missing"):
        datasets.load_nabirds(tmp_path)
    (folder / "classes.txt").unlink()
    with pytest.raises(UserError, match="classes.txt is missing"):
        datasets.load_nabirds(tmp_path)


# ==================================================================== plankton
PLANKTON_PATHS = [list(p) for p in fakes.FAKE_PLANKTON_CLASSES]  # already in sorted-path order
PLANKTON_LABELS = [0] * 3 + [1] * 4 + [2] * 3 + [3] * 5 + [4] * 3 + [5] * 2  # class by class
# The folder route's image order is sorted path: ".../Strombidium/Strombidium conicum/img_000.png" (class 1)
# sorts before ".../Strombidium/img_000.png" (class 0) because "S" < "i"; the other classes keep their order.
PLANKTON_FOLDER_LABELS = [1] * 4 + [0] * 3 + [2] * 3 + [3] * 5 + [4] * 3 + [5] * 2


def test_taxonomy_folder_classes_paths_sizes(tmp_path):
    folder = fakes.write_fake_plankton(tmp_path)
    data = datasets.load_taxonomy_folder(folder, resize=20)
    h = data.hierarchy
    assert h.paths == PLANKTON_PATHS and sorted(h.paths) == h.paths
    assert h.names == ["Strombidium", "Strombidium conicum", "Tintinnida sp", "Chaetoceros spp", "Coscinodiscus",
                       "detritus"]
    # Strombidium is the parent of Strombidium conicum: 1; Strombidium vs Tintinnida: 2 + 1; conicum vs detritus: 4 + 2
    assert (h.distances[0, 1], h.distances[0, 2], h.distances[1, 5]) == (1, 3, 6)
    assert [h.n_groups(level) for level in range(h.n_levels)] == [3, 5, 5, 6]
    assert (data.name, data.in_channels, data.image_size) == ("FakePlankton", 3, 20)
    assert (len(data.train), data.val, len(data.test)) == (18, None, 2)  # 20 images (hidden/empty/txt ignored)
    labels = np.concatenate([data.train.targets, data.test.targets])
    order = np.concatenate([data.train.indices, data.test.indices])
    assert labels[np.argsort(order)].tolist() == PLANKTON_FOLDER_LABELS
    assert sorted(order.tolist()) == list(range(20))
    for part in (data.train, data.test):
        for i in range(len(part)):
            image, label, wh = part[i]
            path = part.file(i)
            k = int(os.path.basename(path)[4:7])
            assert label == PLANKTON_PATHS.index(os.path.relpath(os.path.dirname(path), folder).split(os.sep))
            assert wh.tolist() == list(map(float, fakes.fake_plankton_size(label, k)))
            assert torch.equal(image, expected_image(path, 20))
    assert data.train_labels.tolist() == data.train.targets.tolist()


def test_taxonomy_gray_cache_and_workers(tmp_path):
    fakes.write_fake_plankton(tmp_path, name="MesoZ", mode="L")
    fakes.write_fake_plankton(tmp_path, name="Colour")
    gray = datasets.load_plankton(tmp_path, "MesoZ", resize=12, use_val=True, seed=4)
    assert gray.in_channels == 1 and gray.train[0][0].shape == (1, 12, 12)
    assert (len(gray.train), len(gray.val), len(gray.test)) == (14, 2, 4)  # 20 images: 4 test, 2 val
    assert torch.equal(gray.val[1][0], expected_image(gray.val.file(1), 12, gray=True))
    rgb_as_gray = datasets.load_plankton(tmp_path, "Colour", resize=12, gray=True)
    assert rgb_as_gray.in_channels == 1
    assert torch.equal(rgb_as_gray.test[0][0], expected_image(rgb_as_gray.test.file(0), 12, gray=True))
    assert datasets.load_plankton(tmp_path, "Colour", resize=12).in_channels == 3

    cached = datasets.load_plankton(tmp_path, "MesoZ", resize=12, use_val=True, seed=4, cache=True)
    lazy = datasets.load_plankton(tmp_path, "MesoZ", resize=12, use_val=True, seed=4, cache=False)
    assert cached.train.cache is not None and lazy.train.cache is None
    assert all(torch.equal(cached.train[i][0], lazy.train[i][0]) for i in range(len(lazy.train)))
    other = datasets.load_plankton(tmp_path, "MesoZ", resize=12, use_val=True, seed=5)
    assert not np.array_equal(other.test.indices, cached.test.indices)

    def batches(part, workers):
        loader = torch.utils.data.DataLoader(part, batch_size=4, num_workers=workers)
        return [(x, y, wh) for x, y, wh in loader]

    serial, parallel = batches(lazy.train, 0), batches(lazy.train, 2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(serial, batches(cached.train, 2)))
    assert len(serial) == 4  # 14 images in batches of 4
    for (x0, y0, w0), (x1, y1, w1) in zip(serial, parallel):
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and torch.equal(w0, w1)
    assert serial[0][0].dtype == torch.float32 and serial[0][2].shape == (4, 2)


def test_taxonomy_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        datasets.load_plankton(tmp_path, "MicroS")
    (tmp_path / "Empty" / "a" / "b").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        datasets.load_plankton(tmp_path, "Empty")
    folder = fakes.write_fake_plankton(tmp_path)
    bad = os.path.join(folder, "Diatoms", "Coscinodiscus", "img_001.jpg")
    with open(bad, "r+b") as fh:  # truncate a JPEG
        fh.truncate(200)
    with pytest.raises(UserError, match="corrupt or unreadable image .*Coscinodiscus/img_001.jpg") as err:
        datasets.load_plankton(tmp_path, "FakePlankton")
    assert "\n" not in str(err.value)
    with open(bad, "wb") as fh:
        fh.write(b"this is not an image")
    with pytest.raises(UserError, match="img_001.jpg"):
        datasets.load_plankton(tmp_path, "FakePlankton")
    os.remove(bad)
    Image.new("RGB", (4, 4)).save(os.path.join(folder, "stray.png"))
    with pytest.raises(UserError, match="holds images directly"):
        datasets.load_plankton(tmp_path, "FakePlankton")


# ------------------------------------------------------------ CSV description
def test_csv_description_matches_folder(tmp_path):
    fakes.write_fake_plankton(tmp_path, as_csv=True)  # Filepaths start with /home/someone/data/FakePlankton/
    data = datasets.load_plankton(tmp_path, "FakePlankton", resize=10)
    assert data.hierarchy.paths == PLANKTON_PATHS
    assert len(data.train) + len(data.test) == 20
    assert data.train.file(0).startswith(os.path.join(str(tmp_path), "FakePlankton", "Ciliophora"))
    labels = np.concatenate([data.train.targets, data.test.targets])
    order = np.concatenate([data.train.indices, data.test.indices])
    assert labels[np.argsort(order)].tolist() == PLANKTON_LABELS  # the image table's row order: class by class
    folder = datasets.load_taxonomy_folder(tmp_path / "FakePlankton", resize=10)
    label_of = {folder.train.file(i): int(folder.train.targets[i]) for i in range(len(folder.train))}
    label_of.update({folder.test.file(i): int(folder.test.targets[i]) for i in range(len(folder.test))})
    assert all(label_of[data.train.file(i)] == data.train.targets[i] for i in range(len(data.train)))
    assert all(label_of[data.test.file(i)] == data.test.targets[i] for i in range(len(data.test)))


def test_csv_placeholder_rules(tmp_path):
    where = "images.csv"
    old = ["/home/FakePlankton/data/FakePlankton/A/x.jpg", "/home/FakePlankton/data/FakePlankton/B/C/y.jpg"]
    # the last folder named like the dataset inside the common prefix starts the part that is kept
    assert resolve_filepaths(old, data_root="/new", name="FakePlankton", csv_folder="/csv", where=where) == [
        "/new/FakePlankton/A/x.jpg", "/new/FakePlankton/B/C/y.jpg"]
    assert resolve_filepaths(["DATA_init/FakePlankton/A/x.jpg", "{DATA_init}/B/y.png"], data_root="/new",
                             name="Other", csv_folder="/csv", where=where) == [
        "/new/FakePlankton/A/x.jpg", "/new/B/y.png"]
    assert resolve_filepaths(["A/x.jpg", "B\\y.jpg"], data_root="/new", name="Z", csv_folder="/csv",
                             where=where) == ["/csv/A/x.jpg", "/csv/B/y.jpg"]
    with pytest.raises(UserError, match="placeholder prefix"):
        resolve_filepaths(["/somewhere/A/x.jpg"], data_root="/new", name="Z", csv_folder="/csv", where=where)


def test_csv_bad_inputs(tmp_path):
    folder = fakes.write_fake_plankton(tmp_path, as_csv=True)
    classes_csv = os.path.join(folder, "classes.csv")
    images_csv = os.path.join(folder, "images.csv")
    with pytest.raises(UserError, match="20 of the 20 images listed .* are missing"):
        datasets.load_csv_description(classes_csv, images_csv, data_root=tmp_path / "elsewhere")
    with open(classes_csv, "a", encoding="utf-8") as fh:
        fh.write("Lonely,Diatoms/Lonely,6\n")  # class index 6 of 0..6
    with pytest.raises(UserError, match="class 'Lonely' .* has no image"):
        datasets.load_plankton(tmp_path, "FakePlankton")
    with open(images_csv, "a", encoding="utf-8") as fh:
        fh.write("/home/someone/data/FakePlankton/x.jpg,Unknown\n")
    with pytest.raises(UserError, match="class 'Unknown' is not in"):
        datasets.load_plankton(tmp_path, "FakePlankton")
    with open(images_csv, "w", encoding="utf-8") as fh:
        fh.write("Path,Label\n")
    with pytest.raises(UserError, match="exactly one class table"):
        datasets.load_plankton(tmp_path, "FakePlankton")
    with pytest.raises(UserError, match="lacks the column"):
        datasets.load_csv_description(classes_csv, images_csv, data_root=tmp_path)


# =============================================================== command line
def test_cli_reports_bad_data_in_one_line_with_status_2(tmp_path):
    status, out, err = run_cli("MicroS", "--data_root", str(tmp_path))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: dataset folder for MicroS") and "does not exist" in err
    (tmp_path / "Empty" / "sub").mkdir(parents=True)
    status, out, err = run_cli("Empty", "--data_root", str(tmp_path))
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: no images found in")
    fakes.write_fake_plankton(tmp_path)
    status, out, err = run_cli("FakePlankton", "--data_root", str(tmp_path), "--resize", "8")
    assert status == 0 and out.splitlines()[0].startswith("FakePlankton: 6 classes, 4 levels, train 18")
    with open(os.path.join(tmp_path, "FakePlankton", "nonliving", "detritus", "img_000.png"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n broken")
    status, out, err = run_cli("FakePlankton", "--data_root", str(tmp_path))
    assert status == 2 and err.count("\n") == 1 and "detritus/img_000.png" in err
    fakes.write_fake_cifar100(tmp_path, parts=_cifar_parts(meta__coarse_label_names=["x"] * 20))
    status, out, err = run_cli("cifar100", "--data_root", str(tmp_path))
    assert status == 2 and err.count("\n") == 1 and "inconsistent CIFAR-100 meta" in err


def test_default_data_root(tmp_path):
    assert datasets.default_data_root(tmp_path) == os.path.join(".", "data")
    (tmp_path / "config.json").write_text(json.dumps({"DATA_init": "/big/disk/data"}))
    assert datasets.default_data_root(tmp_path) == "/big/disk/data"
    (tmp_path / "config.json").write_text(json.dumps({"DATA_init": "mydata"}))
    assert datasets.default_data_root(tmp_path) == os.path.join(str(tmp_path), "mydata")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json"):
        datasets.default_data_root(tmp_path)


# ================================================================== synthetic
SMALL = dict(n_classes=7, depth=3, images_per_class=4, image_size=(16, 24))


def test_synthetic_tree_shape():
    for seed in range(5):
        for n_classes, depth in ((15, 4), (7, 3), (5, 2), (30, 5)):
            root = build_tree(np.random.default_rng(seed), n_classes, depth)
            classes = [n for n in _walk(root) if n.is_class]
            lengths = [len(n.path) for n in classes]
            assert len(classes) == n_classes
            assert min(lengths) == 2 or depth == 2 and min(lengths) == 1
            assert max(lengths) == depth
            assert sum(1 for n in classes if n.children) == 1  # one class is an ancestor of others
            assert len({tuple(n.path) for n in classes}) == n_classes


def test_synthetic_generate_reuse_regenerate(tmp_path):
    folder = datasets.ensure_synthetic(tmp_path, **SMALL)
    assert folder == os.path.join(str(tmp_path), "synthetic")
    info = json.loads(open(os.path.join(folder, "synthetic.json")).read())
    assert info["n_classes"] == 7 and info["image_size"] == [16, 24] and info["seed"] == 0
    assert not [f for f in os.listdir(tmp_path) if f != "synthetic"]  # no temporary folder left
    data = datasets.load_plankton(tmp_path, "synthetic", resize=16)
    h = data.hierarchy
    assert h.n_classes == 7 and h.paths == info["classes"] and data.image_size == 16
    assert {len(p) for p in h.paths} == {2, 3}
    ancestors = [p for p in h.paths if any(q[: len(p)] == p and q != p for q in h.paths)]
    assert len(ancestors) == 1
    assert any(p[0] == "nonliving" for p in h.paths)
    sizes = np.concatenate([data.train.sizes, data.test.sizes])
    assert sizes.min() >= 16 and sizes.max() <= 24
    assert len(data.train) + len(data.test) == 28 and data.in_channels == 3

    stamp = os.path.getmtime(os.path.join(folder, "synthetic.json"))
    assert datasets.ensure_synthetic(tmp_path, **SMALL) == folder
    assert os.path.getmtime(os.path.join(folder, "synthetic.json")) == stamp  # reused
    datasets.ensure_synthetic(tmp_path, **dict(SMALL, images_per_class=2))  # other parameters: regenerated
    assert json.loads(open(os.path.join(folder, "synthetic.json")).read())["images_per_class"] == 2

    mine = tmp_path / "user" / "synthetic"
    mine.mkdir(parents=True)
    with pytest.raises(UserError, match="not generated by this project"):
        datasets.ensure_synthetic(tmp_path / "user")
    with pytest.raises(UserError, match="n_classes must be at least depth \\+ 3 = 7"):
        datasets.ensure_synthetic(tmp_path / "x", n_classes=3)


def test_synthetic_is_deterministic_per_seed(tmp_path):
    a = datasets.generate_synthetic(tmp_path / "a", seed=3, **SMALL)
    b = datasets.generate_synthetic(tmp_path / "b", seed=3, **SMALL)
    c = datasets.generate_synthetic(tmp_path / "c", seed=4, **SMALL)

    def files(root):
        out = {}
        for dirpath, _, names in os.walk(root):
            for name in names:
                if name.endswith(".png"):
                    with open(os.path.join(dirpath, name), "rb") as fh:
                        out[os.path.relpath(os.path.join(dirpath, name), root)] = fh.read()
        return out

    fa, fb, fc = files(a), files(b), files(c)
    assert len(fa) == 28 and fa == fb
    assert fa != fc


def test_synthetic_images_follow_the_tree(tmp_path):
    """Class-mean images and sizes are more alike for classes closer in the tree (default parameters)."""
    from scipy.stats import spearmanr

    datasets.ensure_synthetic(tmp_path)
    data = datasets.load_plankton(tmp_path, "synthetic", resize=16)
    assert data.n_classes == 15 and data.image_size == 16
    part = data.train
    x = torch.stack([part[i][0] for i in range(len(part))]).flatten(1).numpy()
    y = part.targets
    means = np.stack([x[y == c].mean(0) for c in range(15)])
    sizes = np.stack([np.log(part.sizes[part.indices][y == c]).mean(0) for c in range(15)])
    upper = np.triu_indices(15, 1)
    tree = data.hierarchy.distances[upper]
    pixel_d = np.linalg.norm(means[:, None] - means[None], axis=-1)[upper]
    size_d = np.linalg.norm(sizes[:, None] - sizes[None], axis=-1)[upper]
    assert spearmanr(pixel_d, tree)[0] > 0.4
    assert spearmanr(size_d, tree)[0] > 0.2
    lengths = {len(p) for p in data.hierarchy.paths}
    assert min(lengths) == 2 and max(lengths) == 4


def test_synthetic_level_signal_moves_children_towards_their_slot():
    """level_signal s: a child's split attribute = parent + s * (its full-signal value - parent); 0 hides the level."""
    from datasets.synthetic import _ATTRS, _SPLIT_ATTRS, assign_attributes

    def attrs(signal):
        rng = np.random.default_rng(5)
        root = build_tree(rng, 15, 4)
        assign_attributes(rng, root, signal, node_noise=0.0)
        return root

    full, half, hidden = attrs((1.0,)), attrs((1.0, 0.5)), attrs((1.0, 0.0))
    for a, b, c in zip(_walk(full), _walk(half), _walk(hidden)):
        if a.depth == 1:  # the top level has signal 1 in all three
            assert a.attrs == b.attrs == c.attrs
        if a.depth == 2:  # children of top groups: depth-1 split attributes (stripes)
            for name in _SPLIT_ATTRS[1]:
                low, high, circular = _ATTRS[name]
                parent, target = a.parent.attrs[name], a.attrs[name]
                diff = target - parent
                if circular:
                    diff = (diff + 0.5) % 1.0 - 0.5
                expected = parent + 0.5 * diff
                assert b.attrs[name] == pytest.approx(expected % 1.0 if circular else expected)
        if c.depth >= 2:  # level signal 0 below the top and no node noise: every class looks like its top group
            top = c.parent
            while top.depth > 1:
                top = top.parent
            assert {k: v for k, v in c.attrs.items()} == top.attrs


def test_synthetic_presets_by_dataset_name(tmp_path):
    import train
    from datasets.common import random_split
    from datasets.synthetic import PRESETS

    bench = PRESETS["synthetic_bench"]
    root = build_tree(np.random.default_rng(bench["seed"]), bench["n_classes"], bench["depth"])
    lengths = [len(n.path) for n in _walk(root) if n.is_class]
    assert len(lengths) >= 40 and max(lengths) >= 4 and min(lengths) == 2  # ragged, 4 levels
    ipc = bench["images_per_class"]
    n = bench["n_classes"] * ipc
    for seed in (1, 2, 3):  # the paper's 70/10/20 split: >= 300 test images, >= 5 of every class
        _, _, test = random_split(n, use_val=True, seed=seed)
        per_class = np.bincount(test // ipc, minlength=bench["n_classes"])
        assert len(test) >= 300 and per_class.min() >= 5

    hard = PRESETS["synthetic_bench_hard"]
    assert {k: v for k, v in hard.items() if k not in ("level_signal", "node_noise", "pixel_noise")} == \
        {k: v for k, v in bench.items() if k not in ("level_signal", "node_noise", "pixel_noise")}
    assert max(hard["level_signal"][1:]) < min(bench["level_signal"][1:]) and hard["pixel_noise"] > bench["pixel_noise"]

    args = train.parse_config(["--dataset", "synthetic_bench"])
    assert (args.backbone, args.epochs, args.resize, args.lr, args.batch_size) == ("simple", 15, 24, 1e-3, 32)
    assert args.rand_backbone  # the small CNN has no pretrained weights
    assert args.run_name == "synthetic_bench_simple_DR_euc_rand_seed1"  # preset defaults add no tag
    real = train.parse_config(["--dataset", "MicroS"])
    assert (real.backbone, real.epochs, real.resize, real.batch_size) == ("inception", 50, 128, 32)

    folder = datasets.ensure_synthetic(tmp_path, name="synthetic_bench_hard", images_per_class=2)
    info = json.loads(open(os.path.join(folder, "synthetic.json")).read())
    assert folder.endswith("synthetic_bench_hard") and info["level_signal"] == [1.0, 0.4, 0.25]
    assert info["n_classes"] == 40 and info["pixel_noise"] == 0.12 and info["version"] == 2
    with pytest.raises(UserError, match="level_signal must be"):
        datasets.ensure_synthetic(tmp_path, level_signal=(1.0, 1.5))
    with pytest.raises(UserError, match="pixel_noise must be"):
        datasets.ensure_synthetic(tmp_path, pixel_noise=-0.1)
