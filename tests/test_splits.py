"""The paper's split, image order, class table and split.csv (issue 7 items 4-6).

Expected splits are computed here with ``torch.randperm`` and the paper's
``int(fraction * N)`` counts, independently of the loaders.
"""
import csv
import os

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
