"""A user's own data and model: given splits and torchvision backbones in training, any model's outputs in
evaluate.py, and every bad input of that path as one line with exit status 2."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
import grid
import train
from datasets.__main__ import main as check_main
from tests import fakes
from tests.conftest import MINI_GRID_RUNS
from utils import record
from utils.training.run import unsettled_warning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--backbone", "simple", "--rand_backbone", "--epochs", "1", "--resize", "16", "--batch_size", "4"]


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ------------------------------------------------------------------ training on a given split
def test_a_split_folder_dataset_trains_on_exactly_its_split(tmp_path):
    folder = fakes.write_split_folders(tmp_path / "data")
    run_dir = train.main(["--dataset", "MyData", "--use_val", "--data_root", str(tmp_path / "data"),
                          "--record_dir", str(tmp_path / "rec"), *SMALL])
    config = read_json(os.path.join(run_dir, record.CONFIG))
    assert config["split_source"] == "folders"
    assert (config["n_train"], config["n_val"], config["n_test"], config["n_classes"]) == (7, 3, 4, 3)
    assert config["num_workers"] is None and config["num_workers_used"] == 0  # in memory, not augmented
    table = pd.read_csv(os.path.join(run_dir, record.SPLIT))
    for split in ("train", "val", "test"):
        below = [f"MyData/{split}/{'/'.join(p)}/img_{k}.png" for p, n in fakes.FAKE_SPLIT_LAYOUT[split].items()
                 for k in range(n)]
        assert sorted(table.loc[table["split"] == split, "image"]) == sorted(below)
        assert all(os.path.isfile(os.path.join(os.path.dirname(folder), name)) for name in below)
    test = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))
    assert test["labels"].tolist() == table.loc[table["split"] == "test", "label"].tolist()


def test_a_torchvision_backbone_trains_through_train_py(tmp_path):
    fakes.write_split_folders(tmp_path / "data")
    argv = ["--dataset", "MyData", "--data_root", str(tmp_path / "data"), "--record_dir", str(tmp_path / "rec"),
            "--backbone", "squeezenet1_1", "--rand_backbone", "--epochs", "1", "--resize", "32",
            "--batch_size", "8"]
    run_dir = train.main(argv)  # SqueezeNet: its classifier is a convolution, replaced by average pooling
    assert os.path.basename(run_dir).startswith("MyData_squeezenet1_1_DR_euc_rand")
    assert read_json(os.path.join(run_dir, record.CONFIG))["backbone"] == "squeezenet1_1"
    ck = torch.load(os.path.join(run_dir, record.CHECKPOINT_LAST), weights_only=True)
    assert ck["model"]["backbone.features.0.weight"].shape == (64, 3, 3, 3) and ck["model"]["head.weight"].shape \
        == (128, 512)


def test_resume_on_a_finished_run_has_nothing_to_do(tmp_path, capsys):
    fakes.write_split_folders(tmp_path / "data")
    argv = ["--dataset", "MyData", "--data_root", str(tmp_path / "data"), "--record_dir", str(tmp_path / "rec"),
            *SMALL]
    run_dir = train.main(argv)
    outputs = os.path.join(run_dir, record.OUTPUTS_TEST)
    before = (os.stat(outputs).st_mtime_ns, os.path.getsize(os.path.join(run_dir, record.TRAIN_LOG)))
    capsys.readouterr()
    assert train.main(argv + ["--resume"]) == run_dir
    assert capsys.readouterr().out.startswith(f"nothing to do: {run_dir} has finished")
    assert (os.stat(outputs).st_mtime_ns, os.path.getsize(os.path.join(run_dir, record.TRAIN_LOG))) == before


def test_the_unsettled_warning_compares_with_the_evaluated_epochs_training_pass():
    history = [{"epoch": 1, "train_acc": 0.40}, {"epoch": 2, "train_acc": 0.83}]
    line = unsettled_warning(history, 2, 0.12)  # the laptop run: 0.12 < 0.83 / 2
    assert "classifies 0.12 of its training images, the training pass 0.83" in line and "BatchNorm" in line
    assert unsettled_warning(history, 2, 0.42) is None  # 0.42 >= 0.415
    assert unsettled_warning(history, 1, 0.19) is not None and unsettled_warning(history, 1, 0.2) is None
    assert unsettled_warning(history, 0, 0.0) is None  # --epochs 0: no training pass to compare with


# ------------------------------------------------------------------ evaluate.py --outputs
def _evaluated_copy(mini_grid, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(os.path.join(mini_grid[0], MINI_GRID_RUNS[1]), run_dir)
    assert evaluate.main([run_dir, "--no_plots", "--n_perm", "19", "--quiet"]) == 0
    return run_dir, read_json(os.path.join(run_dir, record.METRICS_JSON))


def _outputs_metrics(tmp_path, run_dir, arrays, name):
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, **arrays)
    out = str(tmp_path / name)
    distance = read_json(os.path.join(run_dir, record.CONFIG))["distance"]
    assert evaluate.main(["--outputs", path, "--hierarchy", os.path.join(run_dir, record.HIERARCHY), "--out", out,
                          "--distance", distance, "--no_plots", "--n_perm", "19", "--quiet"]) == 0
    return read_json(os.path.join(out, record.METRICS_JSON)), out


def test_outputs_reproduce_a_records_metrics_from_its_own_arrays(mini_grid, tmp_path):
    run_dir, expected = _evaluated_copy(mini_grid, tmp_path)
    arrays = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))
    metrics, out = _outputs_metrics(tmp_path, run_dir, arrays, "all")
    assert metrics == expected
    for name in (record.PER_CLASS_CSV, record.HS_CURVE_CSV, record.TREE_W, record.TREE_PROTO):
        with open(os.path.join(run_dir, name)) as a, open(os.path.join(out, name)) as b:
            assert a.read() == b.read(), name
    assert read_json(os.path.join(out, "source.json"))["arrays"] == sorted(arrays)


def test_outputs_give_every_measure_their_arrays_allow(mini_grid, tmp_path):
    run_dir, expected = _evaluated_copy(mini_grid, tmp_path)
    arrays = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))
    scores_only, out = _outputs_metrics(tmp_path, run_dir, {k: arrays[k] for k in ("labels", "scores")}, "scores")
    assert scores_only == {k: v for k, v in expected.items() if k in scores_only}
    assert {"acc_W", "ece_W", "ahd5_W", "f1_W"} <= set(scores_only)
    assert not {"corr_mean_W", "acc_proto", "hs@1", "corr_mean_proto"} & set(scores_only)
    assert not os.path.exists(os.path.join(out, record.TREE_W))  # no class vectors, no tree of them
    # embeddings of any length (a model's raw features): normalised here, so retrieval is the record's
    raw = {"labels": arrays["labels"], "scores": arrays["scores"], "embeddings": 3.0 * arrays["embeddings"],
           "representatives": arrays["representatives"]}
    metrics, _ = _outputs_metrics(tmp_path, run_dir, raw, "raw")
    for name in ("hs@1", "hs@50", "ahs250", "corr_mean_W", "rf_norm_W", "mapr_0_W"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-6), name
    assert "corr_mean_proto" not in metrics


# ------------------------------------------------------------------ evaluate.py finds nested runs
def test_evaluate_finds_runs_in_nested_folders(mini_grid, tmp_path):
    nested = tmp_path / "record" / "demo"
    for name in MINI_GRID_RUNS:
        shutil.copytree(os.path.join(mini_grid[0], name), nested / name)
    assert record.find_runs([str(tmp_path / "record")]) == [str(nested / n) for n in sorted(MINI_GRID_RUNS)]


# ------------------------------------------------------------------ python -m datasets
def test_dataset_check_lists_warnings_and_ends_ok(tmp_path, capsys):
    fakes.write_split_folders(tmp_path)
    os.makedirs(tmp_path / "MyData" / "train" / "fish")  # an empty class folder in one split only
    assert check_main(["MyData", "--data_root", str(tmp_path), "--resize", "8"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("MyData: 3 classes, 2 levels, train 7 / val - / test 4 images") and \
        lines[0].endswith("split: folders")
    assert lines[-1] == "14 images checked, OK"
    assert err.splitlines() == ["warning: 1 empty folder(s) (no images, so no class): train/fish",
                                "warning: the 3 validation images of the split folders of "
                                f"{tmp_path / 'MyData'} are unused without --use_val"]


# ------------------------------------------------------------------ bad input: one line, exit status 2
def one_line_exit_2(main, argv, capsys, *fragments):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("argv,fragments", [
    (["--epoch", "3"], ["unrecognized arguments: --epoch 3 (did you mean --epochs?)", "see train.py --help"]),
    (["--method", "dr"], ["invalid choice: 'dr'", "(did you mean DR?)"]),
    (["--backbone", "resnet5"], ["unknown backbone 'resnet5' (did you mean resnet50?)"]),
    (["--backbone", "vit_b_16", "--resize", "40"], ["multiple of 16"]),
    (["--dataset", "cifar100"], ["cifar100 is trained by train_cifar100.py"]),
    (["--dataset", "mydata"], ["does not exist (did you mean MyData?)"]),
    (["--dataset", "MyDta"], ["(did you mean MyData?)"]),
])
def test_train_refuses_bad_input_in_one_line(tmp_path, capsys, argv, fragments):
    fakes.write_split_folders(tmp_path / "data")
    rest = ["--data_root", str(tmp_path / "data"), "--record_dir", str(tmp_path / "rec"), "--rand_backbone"]
    one_line_exit_2(train.main, argv + rest, capsys, *fragments)
    assert not os.path.exists(tmp_path / "rec")


def test_dataset_check_suggests_the_name(tmp_path, capsys):
    fakes.write_split_folders(tmp_path)
    one_line_exit_2(check_main, ["mydata", "--data_root", str(tmp_path)], capsys, "(did you mean MyData?)")
    one_line_exit_2(check_main, ["MicroZ", "--data_root", str(tmp_path)], capsys, "(did you mean MicroS?)")
    one_line_exit_2(check_main, ["MyData", "--data_roots", str(tmp_path)], capsys, "(did you mean --data_root?)")


def test_evaluate_outputs_refuses_bad_arrays_in_one_line(tmp_path, capsys):
    fakes.write_split_folders(tmp_path)
    good = {"labels": np.array([0, 2, 1]), "scores": np.eye(3)}
    cases = [({"labels": good["labels"], "score": good["scores"]}, "array 'score' is not one of"),
             ({"labels": good["labels"], "score": good["scores"]}, "(did you mean scores?)"),
             ({"labels": good["labels"]}, "array 'scores' is missing"),
             ({**good, "scores": np.ones((3, 4))}, "has shape (3, 4), expected [3, 3]"),
             ({**good, "labels": np.array([0, 3, 1])}, "values outside 0..2"),
             ({**good, "embeddings": np.zeros((3, 5))}, "row 0 is all zeros")]
    for arrays, fragment in cases:
        np.savez(tmp_path / "o.npz", **arrays)
        one_line_exit_2(evaluate.main, ["--outputs", str(tmp_path / "o.npz"), "--hierarchy", "MyData",
                                        "--data_root", str(tmp_path), "--no_plots"], capsys, fragment)
    one_line_exit_2(evaluate.main, ["--outputs", str(tmp_path / "o.npz")], capsys, "--outputs needs --hierarchy")
    one_line_exit_2(evaluate.main, ["--distance", "euc", str(tmp_path)], capsys, "only go with --outputs")


def test_grid_refuses_bad_input_before_any_run(tmp_path, capsys, data_root):
    rec = str(tmp_path / "rec")
    base = ["--data_root", data_root, "--record_dir", rec, "--gpus", "cpu"]
    one_line_exit_2(grid.main, ["synthetic", "--extra", "--seed 3", "--print", *base], capsys,
                    "--extra --seed: grid.py sets --seed itself; use --seeds")
    one_line_exit_2(grid.main, ["synthetic", "--extra=--use_val", "--print", *base], capsys,
                    "the paper's grid sets it for synthetic")
    one_line_exit_2(grid.main, ["synthetic", "--extra=--ema", "--print", *base], capsys, "use --only/--skip")
    one_line_exit_2(grid.main, ["synthetic", "--seed", "3", *base], capsys,
                    "unknown option '--seed' (did you mean --seeds?)")
    one_line_exit_2(grid.main, ["synthtic", "--seeds", "1", "--only", "DR", *base], capsys,
                    "(did you mean synthetic?)")
    assert not os.path.exists(os.path.join(rec, "logs"))  # nothing was launched


def test_grid_report_names_each_failed_runs_error(tmp_path):
    log = tmp_path / "logs" / "x.log"
    os.makedirs(log.parent)
    log.write_text("# 2024-01-01T00:00:00 python train.py ...\nepoch 1/2 ...\nerror: --lr 0 must be positive\n")
    assert grid.error_line(str(log)) == "error: --lr 0 must be positive"
    log.write_text("Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n")
    assert grid.error_line(str(log)) == "RuntimeError: CUDA out of memory"
    assert grid.error_line(str(tmp_path / "missing.log")) == ""


def test_every_parser_takes_whole_flag_names_only():
    """No ``argparse.ArgumentParser`` but the project's (``utils.errors.ArgumentParser``: allow_abbrev=False)."""
    found = []
    for folder, _, files in os.walk(ROOT):
        if any(part.startswith(".") for part in os.path.relpath(folder, ROOT).split(os.sep)) or "tests" in folder:
            continue
        for name in files:
            if name.endswith(".py") and os.path.join(folder, name) != os.path.join(ROOT, "utils", "errors.py"):
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    if "argparse.ArgumentParser(" in fh.read():
                        found.append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert found == []
    from utils.errors import ArgumentParser

    parser = ArgumentParser(prog="x")
    parser.add_argument("--epochs", type=int)
    assert parser.parse_known_args(["--epoch", "3"])[1] == ["--epoch", "3"]  # not taken as --epochs


def test_the_python_route_in_docs_evaluate_runs_and_agrees_with_the_measures():
    with open(os.path.join(ROOT, "docs", "evaluate.md"), encoding="utf-8") as fh:
        text = fh.read()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(code, "docs/evaluate.md", "exec"), scope)  # noqa: S102 - the repository's own documentation
    labels, scores = scope["labels"], scope["scores"]
    assert scope["measures"]["acc"] == np.mean(scores.argmax(1) == labels)
    assert scope["result"].metrics["acc_W"] == pytest.approx(scope["measures"]["acc"])
    assert scope["result"].metrics["n_test"] == 4 and "corr_mean_W" not in scope["result"].metrics
    assert scope["h"].distances[0, 1] == 2 and scope["h"].distances[0, 2] == 4  # d_T: edges through the tree
