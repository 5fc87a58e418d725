"""datasets/registry.py: one entry per dataset is all the scripts, grid.py and evaluate.py need."""
import os

import pytest

import evaluate
import grid
import train
from datasets import registry
from tests import fakes
from utils import record
from utils.errors import UserError


def load_toy(config):
    """A toy dataset's loader: writes the fake plankton folder on first use, then reads it as a taxonomy."""
    if not os.path.isdir(os.path.join(config.data_root, "toy")):
        fakes.write_fake_plankton(config.data_root, "toy")
    return registry.load_taxonomy(config)


@pytest.fixture
def toy(monkeypatch):
    """The toy dataset, registered in this one place for the test's duration."""
    monkeypatch.setitem(registry.REGISTRY, "toy", None)  # restored (removed) afterwards
    return registry.register(registry.DatasetEntry(
        "toy", script="train.py", load=load_toy, backbone="simple", epochs=1, resize=16, lr=1e-3, num_workers=0,
        rand_backbone=True, grid_flags="--use_val", summary="the fake plankton folder"))


def test_a_registered_dataset_trains_is_in_the_grid_and_evaluates(toy, tmp_path, capsys):
    data_root, rec = str(tmp_path / "data"), str(tmp_path / "rec")
    run_dir = train.main(["--dataset", "toy", "--method", "DR", "--use_val", "--data_root", data_root,
                          "--record_dir", rec])
    assert os.path.basename(run_dir) == "toy_simple_DR_euc_rand_val_seed1"  # the entry's defaults add no tag
    capsys.readouterr()  # the training log
    config = record.load_config(run_dir)
    assert (config["epochs"], config["resize"], config["lr"], config["num_workers"]) == (1, 16, 1e-3, 0)
    assert config["n_classes"] == len(fakes.FAKE_PLANKTON_CLASSES)

    assert grid.main(["toy", "--print", "--seeds", "1", "--only", "DR,DR_mds_corr"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "python train.py --GPU 0 --dataset toy --method DR --distance euc --use_val --seed 1",
        "python train.py --GPU 0 --dataset toy --method DR --mds_W --CORR --distance euc --use_val --seed 1",
    ]
    assert evaluate.main([run_dir, "--quiet", "--no_plots", "--n_perm", "9"]) == 0
    metrics = record.load_metrics(run_dir)
    assert metrics["n_classes"] == 6 and 0 <= metrics["acc_W"] <= 1 and -1 <= metrics["corr_mean_W"] <= 1


def test_help_lists_the_registered_datasets(toy, capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "  toy " in out and "the fake plankton folder" in out and "MicroS" in out and "any other NAME" in out


def test_lookups():
    assert registry.get("MesoZ").gray and not registry.get("MicroS").gray
    assert registry.get("MicroS").lr_for("resnet50") == 1e-5 and registry.get("MicroS").lr_for("inception") == 1e-4
    assert registry.get("cifar100").lr_for("resnet50") == 1e-4
    assert registry.get("synthetic_bench").lr_for("resnet50") == 1e-3  # the presets' own rate for every backbone
    folder = registry.get("MyPlankton")  # not registered: a taxonomy folder trained like the plankton sets
    assert folder.name == "MyPlankton" and folder.script == "train.py" and folder.grid_flags == "--size_inform --use_val"
    assert registry.suggest("microS") == " (did you mean MicroS?)" and registry.suggest("zzz") == ""
    with pytest.raises(UserError, match="cifar100 is trained by train_cifar100.py"):
        registry.entry_for_script("train.py", "cifar100")
