"""The paper's split, image order, class table and split.csv (datasets/common.py, datasets/taxonomy.py).

Expected splits are computed here with ``torch.randperm`` and the paper's
``int(fraction * N)`` counts, independently of the loaders.
"""
import csv
import os

import pandas as pd
import pytest
import torch

import datasets
from datasets.taxonomy import read_class_table
from tests import fakes
from utils.errors import UserError


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ============================================================== class table
PAPER_PREFIX = "/DATA_init/plankton_datasets/MicroS/"


def test_read_class_table_orders_by_number_and_strips_the_paper_prefix(tmp_path):
    rows = [  # not in Number order
        ["Eutintinnus sp", PAPER_PREFIX + "Ciliophora/Oligotrichea/Choreotrichida/Eutintinnus/Eutintinnus sp", 2],
        ["detritus", PAPER_PREFIX + "nonliving/detritus", 0],
        ["Strombidium", PAPER_PREFIX + "Ciliophora/Oligotrichea/Strombidium", 1],  # last name is the class
    ]
    path = write_csv(str(tmp_path / "MicroS" / "MicroS_cls.csv"), ["Class", "Path", "Number"], rows)
    names, paths = read_class_table(path)  # name inferred from the folder: MicroS
    assert names == ["detritus", "Strombidium", "Eutintinnus sp"]
    assert paths == [["nonliving", "detritus"], ["Ciliophora", "Oligotrichea", "Strombidium"],
                     ["Ciliophora", "Oligotrichea", "Choreotrichida", "Eutintinnus", "Eutintinnus sp"]]
    assert read_class_table(path, name="MicroS") == (names, paths)
    # a CSV kept elsewhere: the name is given
    elsewhere = write_csv(str(tmp_path / "tables" / "cls.csv"), ["Class", "Path", "Number"], rows)
    assert read_class_table(elsewhere, name="MicroS") == (names, paths)
    # no folder named like the dataset: only the leading DATA_init goes
    _, kept = read_class_table(elsewhere)
    assert kept[0] == ["plankton_datasets", "MicroS", "nonliving", "detritus"]
    # paths already below the dataset folder stay as they are (a JSON array too)
    plain = write_csv(str(tmp_path / "plain" / "c.csv"), ["Class", "Path", "Number"],
                      [["b", "A/b", 1], ["a", '["A", "a"]', 0]])
    assert read_class_table(plain) == (["a", "b"], [["A", "a"], ["A", "b"]])


@pytest.mark.parametrize("numbers, message", [
    (["0", "x"], "Number 'x' is not an integer"),
    (["0", "2"], "each class index 0..1 once"),
    (["1", "1"], "each class index 0..1 once"),
    (["5", "3"], "not an image count"),
])
def test_read_class_table_refuses_a_bad_number_column(tmp_path, numbers, message):
    path = write_csv(str(tmp_path / "D" / "c.csv"), ["Class", "Path", "Number"],
                     [["a", "A/a", numbers[0]], ["b", "A/b", numbers[1]]])
    with pytest.raises(UserError, match=message):
        read_class_table(path)


def test_read_class_table_refuses_bad_tables(tmp_path):
    with pytest.raises(UserError, match="lacks the column"):
        read_class_table(write_csv(str(tmp_path / "D" / "c.csv"), ["Class", "Path"], [["a", "A/a"]]))
    with pytest.raises(UserError, match="lists no classes"):
        read_class_table(write_csv(str(tmp_path / "D" / "c.csv"), ["Class", "Path", "Number"], []))
    with pytest.raises(UserError, match="listed twice"):
        read_class_table(write_csv(str(tmp_path / "D" / "c.csv"), ["Class", "Path", "Number"],
                                   [["a", "A/a", 0], ["a", "B/a", 1]]))
    with pytest.raises(UserError, match="cannot read"):
        read_class_table(str(tmp_path / "missing.csv"))


# ================================================================ the split
def draw(n, seed):
    """The paper's permutation, computed here: torch.randperm with a seeded torch.Generator."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def paper_plankton(root, name="MicroS", numbers=None):
    """The fake plankton set with the paper's two tables copied in unchanged; (folder, image rows, Number of class)."""
    folder = fakes.write_fake_plankton(root, name=name, paper=True, numbers=numbers, seed=3)
    image_rows = read_rows(os.path.join(folder, f"{name}_info.csv"))
    number = {r["Class"]: int(r["Number"]) for r in read_rows(os.path.join(folder, f"{name}_cls.csv"))}
    return folder, image_rows, number


NUMBERS = [4, 0, 5, 2, 1, 3]  # the class index (Number) of each fake class in sorted-path order


@pytest.mark.parametrize("use_val", [True, False])
def test_csv_route_gives_the_papers_split_image_for_image(tmp_path, use_val):
    folder, rows, number = paper_plankton(tmp_path, numbers=NUMBERS)
    n = len(rows)  # 20 images
    assert [r["Filepath"] for r in rows] != sorted(r["Filepath"] for r in rows)  # the table is not sorted
    perm = draw(n, 7)
    cuts = [14, 16] if use_val else [18]  # int(0.7 * 20) = 14, int(0.1 * 20) = 2; int(0.9 * 20) = 18
    parts = [perm[:cuts[0]], perm[cuts[0]:cuts[-1]] if use_val else None, perm[cuts[-1]:]]
    data = datasets.load_plankton(tmp_path, "MicroS", use_val=use_val, seed=7, resize=8)
    prefix = "/DATA_init/plankton_datasets/"
    for part, expected in zip((data.train, data.val, data.test), parts):
        if expected is None:
            assert part is None
            continue
        files = [os.path.relpath(part.file(i), tmp_path).replace(os.sep, "/") for i in range(len(part))]
        assert files == [rows[j]["Filepath"][len(prefix):] for j in expected]  # permutation order kept
        assert part.targets.tolist() == [number[rows[j]["Class"]] for j in expected]  # labels = Number
    table = data.split_table()
    assert list(table.columns) == ["image", "label", "split"] and len(table) == n
    expected_rows = [(rows[j]["Filepath"][len(prefix):], number[rows[j]["Class"]], name)
                     for name, part in zip(("train", "val", "test"), parts) if part is not None for j in part]
    assert list(table.itertuples(index=False, name=None)) == expected_rows


def test_csv_route_and_folder_route_agree_on_paths_levels_and_living(tmp_path):
    # the user story: the archive unpacked into <data_root>/MicroS/, the paper's tables copied in unchanged
    paper_plankton(tmp_path / "csv")
    fakes.write_fake_plankton(tmp_path / "folder", name="MicroS", seed=3)
    by_csv = datasets.load_plankton(tmp_path / "csv", "MicroS", resize=8).hierarchy
    by_folder = datasets.load_plankton(tmp_path / "folder", "MicroS", resize=8).hierarchy
    assert by_csv.paths == by_folder.paths == [list(p) for p in fakes.FAKE_PLANKTON_CLASSES]
    assert by_csv.n_levels == by_folder.n_levels == 4
    for level in range(4):
        assert by_csv.n_groups(level) == by_folder.n_groups(level)
    # only nonliving/detritus is not living; with the /DATA_init/... prefix kept every class looked living
    assert by_csv.living_mask().tolist() == by_folder.living_mask().tolist() == [True] * 5 + [False]
    # with another class numbering the classes follow Number; the same paths, levels and living flags by path
    paper_plankton(tmp_path / "numbered", numbers=NUMBERS)
    shuffled = datasets.load_plankton(tmp_path / "numbered", "MicroS", resize=8).hierarchy
    assert [shuffled.paths[k] for k in NUMBERS] == by_folder.paths
    assert [bool(shuffled.living_mask()[k]) for k in NUMBERS] == by_folder.living_mask().tolist()


def test_folder_route_image_order_is_sorted_path(tmp_path):
    fakes.write_fake_plankton(tmp_path, name="MicroS")
    data = datasets.load_plankton(tmp_path, "MicroS", use_val=True, seed=2, resize=8)
    table = data.split_table()
    images = sorted(table["image"])
    assert images[0] == "MicroS/Ciliophora/Oligotrichea/Strombidium/Strombidium conicum/img_000.png"
    perm = draw(20, 2)
    assert table["image"].tolist() == [images[j] for j in perm]  # 14 train, 2 val, 4 test: the whole draw
    assert table["split"].tolist() == ["train"] * 14 + ["val"] * 2 + ["test"] * 4


# ==================================================================== NABirds
def nabirds_tables(root):
    """(rel paths of images.txt, their (width, height)) in images.txt order, from the fake's own tables."""
    folder = root / "nabirds"
    rel = [line.split()[1] for line in (folder / "images.txt").read_text().splitlines()]
    size = {line.split()[0]: (float(line.split()[1]), float(line.split()[2]))
            for line in (folder / "sizes.txt").read_text().splitlines()}
    ids = [line.split()[0] for line in (folder / "images.txt").read_text().splitlines()]
    return rel, [size[i] for i in ids]


def list_order(root):
    """Paths below images_128/ in the image list's row order."""
    return [row["Filepath"].split("/images_128/")[1] for row in read_rows(root / "nabirds" / "nabirds_info.csv")]


def test_nabirds_image_list_gives_the_papers_order_and_split(tmp_path):
    fakes.write_fake_nabirds(tmp_path, image_list=True)
    rel, sizes = nabirds_tables(tmp_path)
    listed = list_order(tmp_path)
    assert listed != rel and sorted(listed) == sorted(rel)
    data = datasets.load_nabirds(tmp_path, use_val=True, seed=4, resize=8)  # no images_128/: read images/
    perm = draw(14, 4)  # int(0.7 * 14) = 9, int(0.1 * 14) = 1, 4 test
    for part, expected in zip((data.train, data.val, data.test), (perm[:9], perm[9:10], perm[10:])):
        assert [part.file(i) for i in range(len(part))] == [
            os.path.join(str(tmp_path), "nabirds", "images", *listed[j].split("/")) for j in expected]
        assert [part[i][2].tolist() for i in range(len(part))] == [list(sizes[rel.index(listed[j])]) for j in expected]
    table = data.split_table()
    assert table["image"].tolist() == ["nabirds/images/" + listed[j] for j in perm]
    class_ids = [295, 463, 500, 600, 1005]
    assert [class_ids[y] for y in table["label"]] == [int(listed[j].split("/")[0]) for j in perm]


def test_nabirds_reads_the_resized_copy_and_sorted_paths_without_a_list(tmp_path):
    fakes.write_fake_nabirds(tmp_path, image_list=True, resized=True)
    rel, _ = nabirds_tables(tmp_path)
    listed = list_order(tmp_path)
    data = datasets.load_nabirds(tmp_path, seed=1, resize=8)
    perm = draw(14, 1)  # int(0.9 * 14) = 12 train
    assert [data.test.file(i) for i in range(2)] == [
        os.path.join(str(tmp_path), "nabirds", "images_128", *listed[j].split("/")) for j in perm[12:]]
    # the resized copy's sizes: (4 + k % 5) x 6 for line k of images.txt
    assert [data.test[i][2].tolist() for i in range(2)] == [[4.0 + rel.index(listed[j]) % 5, 6.0] for j in perm[12:]]
    os.remove(tmp_path / "nabirds" / "nabirds_info.csv")
    plain = datasets.load_nabirds(tmp_path, seed=1, resize=8)  # no list: sorted paths, images/
    order = sorted(rel)
    assert plain.split_table()["image"].tolist() == ["nabirds/images/" + order[j] for j in perm]


def test_nabirds_image_list_errors(tmp_path):
    fakes.write_fake_nabirds(tmp_path, image_list=True)
    listing = tmp_path / "nabirds" / "nabirds_info.csv"
    text = listing.read_text()
    listing.write_text(text + "/DATA_init/nabirds/images_128/0295/nothere.jpg,295\n")
    with pytest.raises(UserError, match="line 16: .*nothere.jpg.* is not an image of images.txt"):
        datasets.load_nabirds(tmp_path)
    listing.write_text(text + text.splitlines()[1] + "\n")
    with pytest.raises(UserError, match="lists an image twice"):
        datasets.load_nabirds(tmp_path)
    listing.write_text(text)
    (tmp_path / "nabirds" / "copy.csv").write_text(text)
    with pytest.raises(UserError, match="holds 2 image lists"):
        datasets.load_nabirds(tmp_path)


def test_nabirds_small(tmp_path):
    from datasets.nabirds import small_counts

    assert small_counts(48562) == (5000, 30000) == small_counts(60000)
    assert small_counts(14) == (1, 8)  # int(5000 * 14 / 48562) = int(1.44), int(30000 * 14 / 48562) = int(8.65)
    assert small_counts(4856) == (499, 2999)  # int(499.96), int(2999.88)
    fakes.write_fake_nabirds(tmp_path)
    perm = draw(14, 2)
    with_val = datasets.load_nabirds(tmp_path, small=True, use_val=True, seed=2, resize=8)
    assert [with_val.train.indices.tolist(), with_val.val.indices.tolist(), with_val.test.indices.tolist()] == [
        perm[:1], perm[1:9], perm[9:]]
    plain = datasets.load_nabirds(tmp_path, small=True, seed=2, resize=8)
    assert plain.val is None and [plain.train.indices.tolist(), plain.test.indices.tolist()] == [perm[:1], perm[1:]]
    with pytest.raises(UserError, match="--small and --official_split"):
        datasets.load_nabirds(tmp_path, small=True, official_split=True)

    import train_nabirds
    config = train_nabirds.parse_config(["--small", "--use_val", "--seed", "2"])
    assert config.run_name == "nabirds_resnet50_DR_euc_small_val_seed2"


# ============================================================ CIFAR-100, split.csv
def test_cifar_split_table_names_rows_of_the_official_files(tmp_path):
    fakes.write_fake_cifar100(tmp_path, n_train_per_class=2, n_test_per_class=1)
    content = fakes.fake_cifar100_arrays(2, 1)
    train_labels, test_labels = content["train"]["fine_labels"], content["test"]["fine_labels"]
    table = datasets.load_cifar100(tmp_path, small=True, seed=9).split_table()
    perm = draw(200, 9)  # --small: int(0.1 * 200) = 20 train; without --use_val the other 180 are unused
    unused = sorted(perm[20:])
    assert table["image"].tolist() == ([f"train/{j}" for j in perm[:20]] + [f"test/{i}" for i in range(100)]
                                       + [f"train/{j}" for j in unused])
    assert table["split"].tolist() == ["train"] * 20 + ["test"] * 100 + ["unused"] * 180
    assert table["label"].tolist() == ([train_labels[j] for j in perm[:20]] + test_labels
                                       + [train_labels[j] for j in unused])


def test_every_record_holds_split_csv(tmp_path):
    import train
    from utils import record

    folder, rows, number = paper_plankton(tmp_path / "data", numbers=NUMBERS)
    run_dir = train.main(["--data_root", str(tmp_path / "data"), "--dataset", "MicroS", "--record_dir",
                          str(tmp_path / "record"), "--epochs", "0", "--backbone", "simple", "--rand_backbone",
                          "--resize", "16", "--use_val", "--seed", "5", "--num_workers", "0"])
    table = pd.read_csv(os.path.join(run_dir, record.SPLIT), keep_default_na=False)
    perm = draw(20, 5)
    prefix = "/DATA_init/plankton_datasets/"
    assert table["image"].tolist() == [rows[j]["Filepath"][len(prefix):] for j in perm]
    assert table["label"].tolist() == [number[rows[j]["Class"]] for j in perm]
    assert table["split"].tolist() == ["train"] * 14 + ["val"] * 2 + ["test"] * 4
    outputs = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))
    assert outputs["labels"].tolist() == table["label"].tolist()[16:]  # the test rows in output order
