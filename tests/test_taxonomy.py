"""Taxonomy folders that bring their split (train/val/test folders, split.csv) and the dataset check's warnings."""
import os

import numpy as np
import pytest
from PIL import Image

import datasets
from datasets.taxonomy import SPLIT_FILE
from tests import fakes
from utils.errors import UserError

LAYOUT = fakes.FAKE_SPLIT_LAYOUT
write_split_folders = fakes.write_split_folders


def part_files(part, folder):
    """The images of a part, ``/``-separated below ``folder``, in item order."""
    return [os.path.relpath(part.file(i), folder).replace(os.sep, "/") for i in range(len(part))]


def expected_files(split, layout=LAYOUT, folder_name=None):
    folder_name = folder_name or split
    return sorted(f"{folder_name}/{'/'.join(path)}/img_{k}.png" for path, n in layout[split].items() for k in range(n))


# ------------------------------------------------------------------ split folders
def test_split_folders_are_the_given_split_with_the_tree_below_them(tmp_path):
    folder = write_split_folders(tmp_path)
    data = datasets.load_plankton(tmp_path, "MyData", resize=8, use_val=True)
    assert data.hierarchy.paths == [["bird", "owl"], ["cat"], ["dog"]]  # no "train > cat" classes
    assert data.split_source == "folders"
    for part, split in ((data.train, "train"), (data.val, "val"), (data.test, "test")):
        assert part_files(part, folder) == expected_files(split)
        names = ["/".join(data.hierarchy.paths[y]) for y in part.targets]
        assert names == [f.split("/", 1)[1].rsplit("/", 1)[0] for f in expected_files(split)]
    table = data.split_table()
    assert table["split"].value_counts().to_dict() == {"train": 7, "test": 4, "val": 3}
    assert table["image"].iloc[0] == "MyData/train/bird/owl/img_0.png"
    # another seed draws nothing: the folders are the split
    other = datasets.load_plankton(tmp_path, "MyData", resize=8, use_val=True, seed=9)
    assert np.array_equal(other.test.indices, data.test.indices)


def test_without_use_val_the_val_folder_is_unused(tmp_path):
    folder = write_split_folders(tmp_path)
    data = datasets.load_plankton(tmp_path, "MyData", resize=8)
    assert data.val is None and part_files(data.train, folder) == expected_files("train")
    assert "the 3 validation images of the split folders" in " ".join(data.warnings)
    assert (data.split_table()["split"] == "unused").sum() == 3


def test_valid_is_a_val_folder_and_val_is_optional(tmp_path):
    layout = {"train": LAYOUT["train"], "valid": LAYOUT["val"], "test": LAYOUT["test"]}
    folder = write_split_folders(tmp_path, layout)
    data = datasets.load_plankton(tmp_path, "MyData", resize=8, use_val=True)
    assert part_files(data.val, folder) == expected_files("valid", layout)
    write_split_folders(tmp_path, {"train": LAYOUT["train"], "test": LAYOUT["test"]}, name="NoVal")
    assert len(datasets.load_plankton(tmp_path, "NoVal", resize=8).test) == 4
    with pytest.raises(UserError, match="no validation images; add val folders or drop --use_val"):
        datasets.load_plankton(tmp_path, "NoVal", resize=8, use_val=True)


def _refused(root, name, match):
    with pytest.raises(UserError, match=match) as err:
        datasets.load_plankton(root, name, resize=8)
    assert "\n" not in str(err.value)


def test_a_tree_difference_between_split_folders_is_refused_naming_the_first(tmp_path):
    layout = {split: dict(classes) for split, classes in LAYOUT.items()}
    del layout["test"][("dog",)]
    del layout["val"][("cat",)]  # cat sorts before dog: the first difference
    write_split_folders(tmp_path, layout)
    _refused(tmp_path, "MyData", "split folders of .*MyData differ: train/cat holds images but val/cat does not exist")
    os.makedirs(tmp_path / "MyData" / "val" / "cat")
    _refused(tmp_path, "MyData", "train/cat holds images but val/cat holds no images")
    write_split_folders(tmp_path, {"train": {("cat",): 1, ("cat", "kitten"): 1}, "test": {("cat",): 1}}, name="Deep")
    _refused(tmp_path, "Deep", "train/cat/kitten holds images but test/cat/kitten does not exist")


def test_split_folder_layouts_that_are_refused(tmp_path):
    write_split_folders(tmp_path, {"train": LAYOUT["train"], "other": LAYOUT["test"]}, name="Mixed")
    _refused(tmp_path, "Mixed", r"mixes split folders \(train\) with other top folders \(other\)")
    write_split_folders(tmp_path, {"train": LAYOUT["train"], "val": LAYOUT["val"]}, name="NoTest")
    _refused(tmp_path, "NoTest", "test/ is missing")
    os.makedirs(tmp_path / "NoTest" / "test" / "cat")
    _refused(tmp_path, "NoTest", "test/ holds no images")
    write_split_folders(tmp_path, {"train": LAYOUT["train"], "val": LAYOUT["val"], "valid": LAYOUT["val"],
                                   "test": LAYOUT["test"]}, name="Both")
    _refused(tmp_path, "Both", "both val/ and valid/")
    folder = write_split_folders(tmp_path, name="Flat")
    Image.new("RGB", (4, 4)).save(os.path.join(folder, "test", "loose.png"))
    _refused(tmp_path, "Flat", "test holds images directly")
    with open(os.path.join(write_split_folders(tmp_path, name="Twice"), SPLIT_FILE), "w") as fh:
        fh.write("image,split\n")
    _refused(tmp_path, "Twice", "split folders and a split.csv")


# ------------------------------------------------------------------ split.csv
def write_split_csv(folder, rows):
    with open(os.path.join(folder, SPLIT_FILE), "w", encoding="utf-8") as fh:
        fh.write("image,label,split\n" + "".join(f"{image},0,{split}\n" for image, split in rows))


def test_a_records_split_csv_is_honoured_by_another_run(tmp_path):
    folder = fakes.write_fake_plankton(tmp_path)
    first = datasets.load_plankton(tmp_path, "FakePlankton", resize=8, use_val=True, seed=3)
    assert first.split_source == "random"
    table = first.split_table()
    table.to_csv(os.path.join(folder, SPLIT_FILE), index=False)  # the record's split.csv, as it is
    again = datasets.load_plankton(tmp_path, "FakePlankton", resize=8, use_val=True, seed=0)
    assert again.split_source == "split.csv"
    for a, b in ((first.train, again.train), (first.val, again.val), (first.test, again.test)):
        assert np.array_equal(a.indices, b.indices)  # the same images in the same order
    assert again.split_table().equals(table)


def test_split_csv_rows_in_file_order_names_below_the_folder_and_unlisted_images(tmp_path):
    folder = fakes.write_fake_plankton(tmp_path)
    rows = [("Diatoms/Coscinodiscus/img_001.jpg", "test"), ("Diatoms/Coscinodiscus/img_000.png", "TEST"),
            ("nonliving/detritus/img_000.png", "train"), ("Ciliophora/Oligotrichea/Strombidium/img_000.png", "train"),
            ("nonliving/detritus/img_001.jpg", "valid"), ("Ciliophora/Oligotrichea/Strombidium/img_001.jpg", "unused")]
    write_split_csv(folder, rows)
    data = datasets.load_plankton(tmp_path, "FakePlankton", resize=8, use_val=True)
    assert part_files(data.test, folder) == [r[0] for r in rows[:2]]  # the file's row order
    assert part_files(data.train, folder) == [rows[2][0], rows[3][0]]
    assert part_files(data.val, folder) == [rows[4][0]]
    assert "14 images of the dataset are not in" in " ".join(data.warnings)  # 20 images, 6 listed
    names = datasets.load_plankton(tmp_path, "FakePlankton", resize=8)
    assert names.val is None and "the 1 validation images of" in " ".join(names.warnings)


@pytest.mark.parametrize("rows,match", [
    ([("nonliving/detritus/img_009.png", "train")], "line 2: image 'nonliving/detritus/img_009.png' is not in the dataset"),
    ([("nonliving/detritus/img_000.png", "train"), ("nonliving/detritus/img_000.png", "test")], "line 3: .* listed twice"),
    ([("nonliving/detritus/img_000.png", "training")], "line 2: split 'training' is not one of train, val, valid, test"),
    ([("nonliving/detritus/img_000.png", "test")], "gives no training images"),
    ([("nonliving/detritus/img_000.png", "train"), ("nonliving/detritus/img_001.jpg", "test")], "no validation images; add val rows"),
    ([], "lists no images"),
])
def test_bad_split_csv_is_one_line(tmp_path, rows, match):
    folder = fakes.write_fake_plankton(tmp_path)
    write_split_csv(folder, rows)
    with pytest.raises(UserError, match=match) as err:
        datasets.load_plankton(tmp_path, "FakePlankton", resize=8, use_val=True)
    assert "\n" not in str(err.value)


def test_split_csv_beside_the_csv_description(tmp_path):
    folder = fakes.write_fake_plankton(tmp_path, as_csv=True)
    rows = [("FakePlankton/nonliving/detritus/img_000.png", "train"), ("FakePlankton/Diatoms/Coscinodiscus/img_000.png", "test")]
    write_split_csv(folder, rows)
    data = datasets.load_plankton(tmp_path, "FakePlankton", resize=8)
    assert data.split_source == "split.csv"
    assert [data.train.file(0), data.test.file(0)] == [os.path.join(tmp_path, *r[0].split("/")) for r in rows]


# ------------------------------------------------------------------ the dataset check
def test_warnings_name_empty_folders_and_classes_a_part_lacks(tmp_path):
    fakes.write_fake_plankton(tmp_path)
    os.makedirs(tmp_path / "FakePlankton" / "Ciliophora" / "Nothing" / "here")
    data = datasets.load_plankton(tmp_path, "FakePlankton", resize=8)
    assert data.warnings[0] == "2 empty folder(s) (no images, so no class): Ciliophora/Nothing, Diatoms/Empty"
    in_test = set(data.test.targets.tolist())
    lacking = [k for k in range(data.n_classes) if k not in in_test]
    counts = np.bincount(np.concatenate([data.train.targets, data.test.targets]))
    line = next(w for w in data.warnings if "no test image" in w)
    assert line.startswith(f"{len(lacking)} of 6 classes have no test image")
    for k in lacking:
        assert f"{'/'.join(data.hierarchy.paths[k])} ({counts[k]} images)" in line
    assert not any("no training image" in w for w in data.warnings)


def test_a_single_class_is_warned(tmp_path):
    fakes.write_fake_plankton(tmp_path, name="One", classes={("only",): 4})
    data = datasets.load_plankton(tmp_path, "One", resize=8)
    assert any(w.startswith("a single class (only)") for w in data.warnings)


def test_every_bad_image_is_named_in_one_line(tmp_path):
    folder = fakes.write_fake_plankton(tmp_path)
    bad = [os.path.join(folder, "nonliving", "detritus", "img_001.jpg"), os.path.join(folder, "Diatoms", "Coscinodiscus",
                                                                          "img_000.png")]
    for path in bad:
        with open(path, "wb") as fh:
            fh.write(b"not an image")
    with pytest.raises(UserError, match="^2 corrupt or unreadable images: ") as err:
        datasets.load_plankton(tmp_path, "FakePlankton", resize=8)
    message = str(err.value)
    assert "\n" not in message and all(path in message for path in bad)
    assert message.index(bad[1]) < message.index(bad[0])  # in image order (sorted path)
