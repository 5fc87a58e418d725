"""The paper's split, image order, class table and split.csv (issue 7 items 4-6).

Expected splits are computed here with ``torch.randperm`` and the paper's
``int(fraction * N)`` counts, independently of the loaders.
"""
import csv
import os

import pytest

from datasets.taxonomy import read_class_table
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
