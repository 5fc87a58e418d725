"""End to end: every method x option of the paper's grid on the synthetic set, records, seeds, resume."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import train
from tests import fakes
from utils import lock, record
from utils.hierarchy import Hierarchy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The paper's grid: every method, both distances, and each training option.
GRID = [
    ["--method", "softmax"],
    ["--method", "normface", "--distance", "euc"],
    ["--method", "SD", "--distance", "arccos"],
    ["--method", "DR", "--distance", "euc"],
    ["--method", "DR", "--distance", "arccos"],
    ["--method", "DR", "--ema"],
    ["--method", "normface", "--ema", "--distance", "arccos"],
    ["--method", "DR", "--mds_W"],
    ["--method", "DR", "--mds_W", "--distance", "arccos", "--beta", "2"],
    ["--method", "DR", "--mds_W", "--CORR"],
    ["--method", "DR", "--dynamic"],
    ["--method", "DR", "--dynamic", "--distance", "arccos", "--ema"],
    ["--method", "normface", "--dynamic"],
    ["--method", "normface", "--dynamic", "--distance", "arccos", "--clspri"],
    ["--method", "DR", "--clspri", "--size_inform", "--use_val"],
]


def run(data_root, record_dir, *flags, epochs=1):
    return fakes.train_synthetic(data_root, record_dir, *flags, epochs=epochs)


def load_npz(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("flags", GRID, ids=lambda f: "_".join(x.strip("-") for x in f))
def test_grid_writes_a_complete_record(data_root, tmp_path, flags):
    run_dir = run(data_root, tmp_path, *flags)
    with open(os.path.join(run_dir, record.CONFIG)) as fh:
        config = json.load(fh)
    for key in ("method", "distance", "beta", "dataset", "seed", "n_classes", "initial_scale", "final_scale",
                "mds_stress_initial", "mds_stress_final", "best_epoch", "versions", "start_time", "end_time"):
        assert key in config, key
    assert config["n_classes"] == 15 and config["best_epoch"] == 1 and config["end_time"]
    if "--mds_W" in flags:
        assert config["mds_stress_final"] < config["mds_stress_initial"]
    else:
        assert config["mds_stress_initial"] is None
    if config["method"] == "softmax":
        assert config["initial_scale"] is None
    elif "--dynamic" not in flags:
        assert config["initial_scale"] == 10.0 == config["final_scale"]
    else:
        assert config["final_scale"] != config["initial_scale"]

    hierarchy = Hierarchy.from_csv(os.path.join(run_dir, record.HIERARCHY))
    assert hierarchy.n_classes == 15
    history = pd.read_csv(os.path.join(run_dir, record.HISTORY))
    assert list(history["epoch"]) == [1] and np.isfinite(history["train_loss"]).all()

    out = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))
    assert out["scores"].shape == (len(out["labels"]), 15)
    assert ("scores_proto" in out) == (config["method"] != "softmax")
    if "--use_val" in flags:
        assert os.path.isfile(os.path.join(run_dir, record.OUTPUTS_VAL))
        assert os.path.isfile(os.path.join(run_dir, record.CHECKPOINT_BEST))
    ck = torch.load(os.path.join(run_dir, record.CHECKPOINT_LAST), weights_only=True)
    assert ck["epoch"] == 1 and "optimizer" in ck
    if "--mds_W" in flags:  # frozen: the stored representatives are the MDS ones
        assert np.allclose(out["representatives"], torch.nn.functional.normalize(ck["head"]["W"]).numpy(), atol=1e-6)
    assert "epoch 1/1" in open(os.path.join(run_dir, record.TRAIN_LOG)).read()


def test_record_name_follows_the_documented_order(data_root, tmp_path):
    run_dir = run(data_root, tmp_path, "--size_inform", "--mds_W", "--dynamic", "--use_val", "--seed", "3", epochs=0)
    # --batch_size 64 and --epochs 0 are not the synthetic defaults (32, 8): bs64, ep0
    assert os.path.basename(run_dir) == "synthetic_simple_DR_euc_rand_size_mds_dnm_bs64_ep0_val_seed3"


def test_same_seed_same_record_and_resume_equals_uninterrupted(data_root, tmp_path, monkeypatch):
    import utils.training.run as trainer  # the names the run calls

    flags = ["--use_val", "--dynamic", "--ema", "--seed", "5"]
    a = run(data_root, tmp_path / "a", *flags, epochs=2)
    b = run(data_root, tmp_path / "b", *flags, epochs=2)
    real_train_epoch = trainer.train_epoch

    def killed_in_epoch_2(*args, **kwargs):  # the run is interrupted during its second epoch
        if args[6] == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_epoch", killed_in_epoch_2)
    with pytest.raises(SystemExit) as stopped:  # Ctrl-C: one line, exit status 130 (utils/errors.py)
        run(data_root, tmp_path / "c", *flags, epochs=2)
    assert stopped.value.code == 130
    monkeypatch.setattr(trainer, "train_epoch", real_train_epoch)
    c = run(data_root, tmp_path / "c", *flags, "--resume", epochs=2)
    ref = load_npz(os.path.join(a, record.OUTPUTS_TEST))
    for other in (b, c):
        got = load_npz(os.path.join(other, record.OUTPUTS_TEST))
        assert ref.keys() == got.keys()
        for key in ref:
            np.testing.assert_array_equal(ref[key], got[key], err_msg=key)
    ha = pd.read_csv(os.path.join(a, record.HISTORY)).drop(columns="seconds")
    hc = pd.read_csv(os.path.join(c, record.HISTORY)).drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hc)
    assert "resuming after epoch 1" in open(os.path.join(c, record.TRAIN_LOG)).read()


def test_epochs_zero_records_the_untrained_network(data_root, tmp_path):
    run_dir = run(data_root, tmp_path, "--use_val", epochs=0)
    with open(os.path.join(run_dir, record.CONFIG)) as fh:
        assert json.load(fh)["best_epoch"] == 0
    assert record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))["labels"].size > 0


def test_existing_record_is_not_overwritten_silently(data_root, tmp_path, capsys):
    run(data_root, tmp_path, epochs=0)
    with pytest.raises(SystemExit) as exc:
        run(data_root, tmp_path, epochs=0)
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err
    first = run(data_root, tmp_path, "--overwrite", epochs=0)
    open(os.path.join(first, "stale.txt"), "w").close()
    os.makedirs(os.path.join(first, "stale_folder"))
    again = run(data_root, tmp_path, "--overwrite", epochs=0)  # empties the folder, keeps only its lock file
    assert again == first and not {"stale.txt", "stale_folder"} & set(os.listdir(again))
    assert record.is_complete(again) and lock.holder(again) is None


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--CORR"], "--mds_W"),
        (["--ema", "--mds_W"], "contradict"),
        (["--method", "softmax", "--dynamic"], "--dynamic"),
        (["--method", "normface", "--mds_W", "--CORR"], "--method DR"),
        (["--alpha", "0"], "--alpha"),
        (["--resume"], "checkpoint_last.pt"),
    ],
)
def test_bad_options_exit_2_with_one_line(data_root, tmp_path, capsys, flags, words):
    with pytest.raises(SystemExit) as exc:
        run(data_root, tmp_path, *flags)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_missing_dataset_folder_is_one_line_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", "MicroS", "--data_root", str(tmp_path),
         "--record_dir", str(tmp_path / "rec"), "--rand_backbone", "--backbone", "simple"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "MicroS" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "rec").exists()  # nothing is written for a run that cannot start


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(data_root, tmp_path, capsys,
                                                                                     monkeypatch):
    from losses.head import ClassHead

    calls = {"n": 0}
    real_loss = ClassHead.loss

    def loss_that_explodes(self, f, labels):
        calls["n"] += 1
        loss, z, cos = real_loss(self, f, labels)
        return (loss * float("nan") if calls["n"] == 12 else loss), z, cos  # 9 steps per epoch: epoch 2, step 3

    monkeypatch.setattr(ClassHead, "loss", loss_that_explodes)
    with pytest.raises(SystemExit) as exc:
        run(data_root, tmp_path, epochs=3)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "non-finite loss at epoch 2, step 3" in err and err.count("\n") == 1
    run_dir = tmp_path / "synthetic_simple_DR_euc_rand_bs64_ep3_seed1"
    assert torch.load(run_dir / record.CHECKPOINT_LAST, weights_only=True)["epoch"] == 1
    assert list(pd.read_csv(run_dir / record.HISTORY)["epoch"]) == [1]


def test_best_validation_checkpoint_is_evaluated_and_the_last_epoch_kept_apart(data_root, tmp_path, monkeypatch):
    import utils.training.run as trainer  # the names the run calls

    real_accuracy = trainer.accuracy
    calls = {"n": 0}

    def falling_accuracy(z, y):  # epoch 1 validates best (0.9), epoch 2 worse (0.1); others real
        calls["n"] += 1
        return {1: 0.9, 3: 0.1}.get(calls["n"], real_accuracy(z, y))

    monkeypatch.setattr(trainer, "accuracy", falling_accuracy)
    run_dir = run(data_root, tmp_path, "--use_val", "--method", "normface", epochs=2)
    with open(os.path.join(run_dir, record.CONFIG)) as fh:
        assert json.load(fh)["best_epoch"] == 1
    best = torch.load(os.path.join(run_dir, record.CHECKPOINT_BEST), weights_only=True)
    last = torch.load(os.path.join(run_dir, record.CHECKPOINT_LAST), weights_only=True)
    assert best["epoch"] == 1 and last["epoch"] == 2
    evaluated = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))["representatives"]
    final = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST_LAST))["representatives"]
    normalize = torch.nn.functional.normalize
    np.testing.assert_allclose(evaluated, normalize(best["head"]["W"]).numpy(), atol=1e-6)
    np.testing.assert_allclose(final, normalize(last["head"]["W"]).numpy(), atol=1e-6)
    assert not np.allclose(evaluated, final)
    assert os.path.isfile(os.path.join(run_dir, record.OUTPUTS_VAL))


@pytest.mark.parametrize("killed_after", ["history", "pending best", "last checkpoint"])
def test_a_run_killed_while_it_writes_an_epoch_resumes_as_if_uninterrupted(data_root, tmp_path, monkeypatch,
                                                                           killed_after):
    # checkpoints.commit_epoch writes history.csv, a pending best checkpoint, checkpoint_last.pt (the commit
    # point), then moves the best in place; the run is stopped right after one of the writes of epoch 2
    import utils.training.checkpoints as ck

    flags = ["--use_val", "--seed", "5", "--lr", "0.01"]
    a = run(data_root, tmp_path / "a", *flags, epochs=2)
    assert record.load_config(a)["best_epoch"] == 2  # epoch 2 improves on validation: a pending best is written
    real_history, real_save = ck.write_history, ck.save_checkpoint
    stops = []

    def write_history(run_dir, history):
        real_history(run_dir, history)
        if killed_after == "history" and history[-1]["epoch"] == 2:
            stops.append(killed_after)
            raise KeyboardInterrupt

    def save_checkpoint(path, parts, epoch, *rest):
        real_save(path, parts, epoch, *rest)
        name = {ck.PENDING_BEST: "pending best", record.CHECKPOINT_LAST: "last checkpoint"}.get(os.path.basename(path))
        if epoch == 2 and name == killed_after:
            stops.append(killed_after)
            raise KeyboardInterrupt

    monkeypatch.setattr(ck, "write_history", write_history)
    monkeypatch.setattr(ck, "save_checkpoint", save_checkpoint)
    with pytest.raises(SystemExit):
        run(data_root, tmp_path / "c", *flags, epochs=2)
    monkeypatch.undo()
    assert stops == [killed_after]
    c = os.path.join(tmp_path / "c", os.path.basename(a))
    committed = 2 if killed_after == "last checkpoint" else 1
    assert ck.load_checkpoint(os.path.join(c, record.CHECKPOINT_LAST))["epoch"] == committed
    assert list(record.load_history(c)["epoch"]) == [1, 2]
    assert os.path.isfile(os.path.join(c, ck.PENDING_BEST)) == (killed_after != "history")

    run(data_root, tmp_path / "c", *flags, "--resume", epochs=2)
    assert f"resuming after epoch {committed}" in open(os.path.join(c, record.TRAIN_LOG)).read()
    assert not os.path.exists(os.path.join(c, ck.PENDING_BEST))
    assert ck.load_checkpoint(os.path.join(c, record.CHECKPOINT_BEST))["epoch"] == 2
    pd.testing.assert_frame_equal(record.load_history(a).drop(columns="seconds"),
                                  record.load_history(c).drop(columns="seconds"))
    ref, got = load_npz(os.path.join(a, record.OUTPUTS_TEST)), load_npz(os.path.join(c, record.OUTPUTS_TEST))
    for key in ref:
        np.testing.assert_array_equal(ref[key], got[key], err_msg=key)
