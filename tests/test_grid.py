"""grid.py: the paper's commands, the local and submitit runners, skip/resume, failures, and one writer per run."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import grid
from datasets import registry
from utils.training import run
from tests.conftest import MINI_GRID, MINI_GRID_RUNS
from utils import lock, record
from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The paper's 14 configurations, written out in the paper's table order.
PAPER_CONFIGS = [
    "--method softmax",
    "--method normface",
    "--method normface --ema",
    "--method normface --dynamic",
    "--method normface --ema --dynamic",
    "--method normface --mds_W",
    "--method normface --mds_W --dynamic",
    "--method DR",
    "--method DR --ema",
    "--method DR --dynamic",
    "--method DR --ema --dynamic",
    "--method DR --mds_W",
    "--method DR --mds_W --dynamic",
    "--method DR --mds_W --CORR",
]
# What every command of a dataset starts and ends with (the paper's flags for the dataset).
PAPER_DATASETS = {
    "MicroS": ("python train.py --GPU 0 --dataset MicroS", "--distance euc --size_inform --use_val"),
    "MicroL": ("python train.py --GPU 0 --dataset MicroL", "--distance euc --size_inform --use_val"),
    "MesoZ": ("python train.py --GPU 0 --dataset MesoZ", "--distance euc --size_inform --use_val"),
    "cifar100": ("python train_cifar100.py --GPU 0", "--distance euc --use_val --aug"),
    "nabirds": ("python train_nabirds.py --GPU 0", "--distance euc --use_val --aug --resize 128"),
}


def grid_main(argv, capsys):
    rc = grid.main(argv)
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("dataset", sorted(PAPER_DATASETS))
def test_print_gives_the_papers_70_commands(dataset, capsys):
    head, tail = PAPER_DATASETS[dataset]
    expected = [f"{head} {config} {tail} --seed {seed}" for seed in range(1, 6) for config in PAPER_CONFIGS]
    rc, out = grid_main([dataset, "--print"], capsys)
    assert rc == 0
    assert out.splitlines() == expected
    assert len(set(out.splitlines())) == 70  # 14 configurations x 5 seeds, no command twice


def test_print_with_selection_extra_and_folders(capsys):
    rc, out = grid_main(["MicroS", "--print", "--seeds", "2,4", "--only", "DR,DR_mds_corr", "--skip", "DR",
                         "--extra", "--distance arccos --clspri", "--data_root", "/d", "--record_dir", "out",
                         "--gpus", "1"], capsys)
    assert rc == 0
    tail = "--distance euc --size_inform --use_val"
    assert out.splitlines() == [
        f"python train.py --GPU 1 --dataset MicroS --method DR --mds_W --CORR {tail} --seed {s} "
        f"--distance arccos --clspri --data_root /d --record_dir out" for s in (2, 4)
    ]


def test_seed_and_configuration_parsing():
    assert grid.parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert grid.parse_seeds("3,1,3") == [3, 1]
    assert grid.parse_seeds("7") == [7]
    with pytest.raises(UserError, match="--seeds"):
        grid.parse_seeds("a-b")
    assert [n for n, _ in grid.select_configs("normface,DR", None)] == ["normface", "DR"]
    assert len(grid.select_configs(None, "softmax")) == 13
    with pytest.raises(UserError, match="unknown configuration 'SD'"):
        grid.select_configs("SD", None)
    with pytest.raises(UserError, match="no configuration"):
        grid.select_configs("DR", "DR")


def test_slurm_parameters_and_passed_on_options():
    args = grid.build_parser().parse_args(["nabirds", "--cluster", "slurm", "--partition", "gpu",
                                           "--gpus_per_run", "2", "--cpus_per_run", "4", "--timeout_min", "90",
                                           "--max_parallel", "3"])
    extra = grid.parse_slurm_extra(["--slurm_mem", "32G", "--slurm_qos=high", "--slurm_exclude", "n1,n2"])
    assert extra == {"slurm_mem": "32G", "slurm_qos": "high", "slurm_exclude": "n1,n2"}
    assert grid.slurm_parameters(args, extra) == dict(
        timeout_min=90, gpus_per_node=2, cpus_per_task=4, tasks_per_node=1, nodes=1, slurm_array_parallelism=3,
        slurm_partition="gpu", slurm_mem="32G", slurm_qos="high", slurm_exclude="n1,n2")
    with pytest.raises(UserError, match="needs a value"):
        grid.parse_slurm_extra(["--slurm_mem"])
    with pytest.raises(UserError, match="unknown option '--gpu'"):
        grid.parse_slurm_extra(["--gpu", "1"])


@pytest.mark.parametrize("argv, message", [
    (["synthetic", "--slurm_mem", "3G"], "add --cluster slurm"),
    (["synthetic", "--extra=--bogus", "--print"], "unrecognized arguments: --bogus"),
    (["synthetic", "--extra", "--epochs -1", "--print"], "--epochs must be 0 or more"),
    (["synthetic", "--gpus", "a,b"], "--gpus 'a,b'"),
])
def test_bad_input_exits_2_with_one_line(argv, message):
    proc = subprocess.run([sys.executable, "grid.py", *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- miniature grids
MINI, NAMES = MINI_GRID, MINI_GRID_RUNS


def copy_of(mini_grid, tmp_path):
    """A private copy of the session's trained miniature grid (logs included)."""
    rec = str(tmp_path / "rec")
    shutil.copytree(mini_grid[0], rec)
    return rec


def outputs(run_dir):
    return record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))


def test_local_grid_runs_then_skips(tmp_path, data_root, mini_grid, capsys):
    _, rc, out = mini_grid
    rec = copy_of(mini_grid, tmp_path)
    assert rc == 0
    for name in NAMES:
        assert record.is_complete(os.path.join(rec, name))
        assert os.path.isfile(os.path.join(rec, "logs", name + ".log"))
    assert "2 done, 0 skipped, 0 failed" in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("[")] == ["[1/2] " + NAMES[0],
                                                                                     "[2/2] " + NAMES[1]]
    rc, out = grid_main(["synthetic", *MINI, "--data_root", data_root, "--record_dir", rec, "--gpus", "cpu",
                         "--evaluate"], capsys)
    assert rc == 0 and "0 done, 2 skipped, 0 failed" in out
    assert os.path.isfile(os.path.join(rec, record.SUMMARY_CSV))


def test_killed_run_is_resumed_to_the_same_outputs(tmp_path, data_root, capsys):
    argv = ["synthetic", "--seeds", "1", "--only", "DR", "--extra", "--epochs 6 --resize 16",
            "--data_root", data_root, "--gpus", "cpu"]
    name = "synthetic_simple_DR_euc_rand_r16_ep6_val_seed1"
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    assert grid.main(argv + ["--record_dir", whole]) == 0

    proc = subprocess.Popen([sys.executable, "grid.py", *argv, "--record_dir", cut], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    history = os.path.join(cut, name, record.HISTORY)
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.isfile(history) and len(open(history).readlines()) >= 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the grid and its training process, mid-run
    proc.wait()
    deadline = time.time() + 30  # the training process (the grid's child) may take a moment longer to die
    while time.time() < deadline and lock.holder(os.path.join(cut, name)) is not None:
        time.sleep(0.05)
    assert not record.is_complete(os.path.join(cut, name)), "the run finished before it could be killed"
    assert grid.state(os.path.join(cut, name)) is grid.State.RESUME

    rc, out = grid_main(argv + ["--record_dir", cut], capsys)
    assert rc == 0 and "resumed" in out
    a, b = outputs(os.path.join(whole, name)), outputs(os.path.join(cut, name))
    for key in ("labels", "scores", "embeddings", "representatives", "prototypes"):
        np.testing.assert_array_equal(a[key], b[key])


def test_cluster_local_writes_the_same_records(tmp_path, data_root, mini_grid, capsys):
    pytest.importorskip("submitit")
    local, sub = mini_grid[0], str(tmp_path / "submitit")
    rc, out = grid_main(["synthetic", *MINI, "--data_root", data_root, "--record_dir", sub, "--cluster", "local",
                         "--timeout_min", "10"], capsys)
    assert rc == 0 and "submitted job array" in out and "2 done" in out
    for name in NAMES:
        a, b = outputs(os.path.join(local, name)), outputs(os.path.join(sub, name))
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
        np.testing.assert_array_equal(a["labels"], b["labels"])
    assert os.path.isdir(os.path.join(sub, "logs", "submitit"))
    rc, out = grid_main(["synthetic", *MINI, "--data_root", data_root, "--record_dir", sub, "--cluster", "local"],
                        capsys)
    assert rc == 0 and "nothing to submit" in out and "0 done, 2 skipped" in out


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path, data_root, mini_grid, capsys):
    rec = copy_of(mini_grid, tmp_path)
    broken = os.path.join(rec, NAMES[0])
    shutil.rmtree(broken)
    os.makedirs(broken)
    with open(os.path.join(broken, record.CHECKPOINT_LAST), "w") as fh:
        fh.write("not a checkpoint")
    finished = os.path.join(rec, NAMES[1])
    shutil.rmtree(finished)  # trained again by the grid while the other run fails
    rc, out = grid_main(["synthetic", *MINI, "--data_root", data_root, "--record_dir", rec, "--gpus", "cpu"], capsys)
    assert rc == 1
    line = next(l for l in out.splitlines() if l.strip().startswith(NAMES[0]))
    assert " failed " in line and os.path.join(rec, "logs", NAMES[0] + ".log") in line
    assert record.is_complete(os.path.join(rec, NAMES[1]))
    assert "1 done, 0 skipped, 1 failed" in out
    assert "cannot read checkpoint" in open(os.path.join(rec, "logs", NAMES[0] + ".log")).read()


# ----------------------------------------------------------------------------- one writer per run
HOLD = "import sys, time; from utils.lock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path, data_root, capsys):
    rec = str(tmp_path / "rec")
    train_argv = [sys.executable, "train.py", "--dataset", "synthetic", "--method", "DR", "--use_val", "--epochs", "2",
                  "--resize", "16", "--seed", "1", "--data_root", data_root, "--record_dir", rec]
    run_dir = os.path.join(rec, NAMES[1])
    holder = subprocess.Popen([sys.executable, "-c", HOLD, run_dir], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(train_argv, cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 2
        assert f"pid {holder.pid}" in second.stderr and second.stderr.count("\n") == 1
        assert grid.state(run_dir) is grid.State.ELSEWHERE
        rc, out = grid_main(["synthetic", *MINI, "--only", "DR", "--data_root", data_root, "--record_dir", rec,
                             "--gpus", "cpu"], capsys)
        assert rc == 0 and "running elsewhere" in out and f"pid {holder.pid}" in out
    finally:
        holder.kill()
        holder.wait()
    assert lock.holder(run_dir) is None  # the lock went with the process; its file may stay
    third = subprocess.run(train_argv, cwd=ROOT, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert record.is_complete(run_dir)


def test_the_trainer_holds_the_lock_while_it_trains(tmp_path, data_root):
    import train

    seen = []

    def load(config):
        seen.append(lock.holder(os.path.join(config.record_dir, NAMES[1])))
        return registry.get(config.dataset).load(config)

    config = train.parse_config(["--method", "DR", "--use_val", "--epochs", "2", "--resize", "16",
                                 "--data_root", data_root, "--record_dir", str(tmp_path)])
    run_dir = run.train(config, load)
    assert seen == [f"{socket.gethostname()} {os.getpid()}"]
    assert lock.holder(run_dir) is None
