"""grid.py --cluster slurm against a real one-node Slurm (tools/slurm_local.sh), and the pieces of utils/slurm.py.

The cluster tests need that Slurm running (``tools/slurm_local.sh start``, as root; .ci/run starts it under
CI=true). Where it is not running and cannot be started they are skipped with the reason, except under CI=true,
where they fail with it.  The first tests need no Slurm.
"""
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time

import pytest

import grid
from tests.conftest import MINI_GRID_RUNS
from utils import record, slurm
from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "slurm_local.sh")


# ----------------------------------------------------------------------------- without Slurm
def test_slurm_time_gres_and_memory_formats():
    assert slurm.seconds_of("1-12:00:00") == 36 * 3600
    assert slurm.seconds_of("2:30:00") == 9000
    assert slurm.seconds_of("45:00") == 2700  # minutes:seconds
    assert slurm.seconds_of("30") == 1800  # minutes
    assert slurm.seconds_of("2-6") == 54 * 3600  # days-hours
    assert slurm.seconds_of("infinite") is None and slurm.seconds_of("n/a") is None
    assert slurm.gpus_of("gpu:a100:4(S:0-1),mps:400") == 4
    assert slurm.gpus_of("gpu:2,gpu:v100:2") == 4
    assert slurm.gpus_of("(null)") == 0 and slurm.gpus_of("shard:4") == 0
    assert [grid.signal_delay(m) for m in (1, 2, 3, 60)] == [10, 70, 90, 90]
    assert slurm.megabytes_of("32G") == 32768 and slurm.megabytes_of("500M") == 500
    assert slurm.megabytes_of("2000") == 2000 and slurm.megabytes_of("1T") == 1024 * 1024
    with pytest.raises(UserError, match="--slurm_mem 'lots'"):
        slurm.megabytes_of("lots")
    assert slurm.last_error("sbatch: error: Batch job submission failed: Invalid feature specification\n") == \
        "Batch job submission failed: Invalid feature specification"


def test_a_request_larger_than_every_node_is_refused_naming_the_limit():
    part = slurm.Partition(name="small", cpus=2, mem_mb=24105, gpus=0, max_seconds=3600)
    slurm.check_request(part, cpus=2, gpus=0, timeout_min=60, mem="23G")
    for request, message in [
        (dict(cpus=1, gpus=1, timeout_min=60), "--gpus_per_run 1: Slurm partition 'small' has no GPUs; give "
                                               "--gpus_per_run 0"),
        (dict(cpus=8, gpus=0, timeout_min=60), "--cpus_per_run 8: no node of Slurm partition 'small' has more "
                                               "than 2 CPUs; give --cpus_per_run 2 or less"),
        (dict(cpus=1, gpus=0, timeout_min=60, mem="24G"), "more than 24105 MB; give --slurm_mem 23G or less"),
        (dict(cpus=1, gpus=0, timeout_min=61), "allows at most 60 minutes per job; give --timeout_min 60"),
    ]:
        with pytest.raises(UserError) as err:
            slurm.check_request(part, **request)
        assert message in str(err.value)
    gpus = slurm.Partition(name="gpu", cpus=64, mem_mb=10 ** 6, gpus=4, max_seconds=None)
    with pytest.raises(UserError, match="no node of Slurm partition 'gpu' has more than 4 GPUs"):
        slurm.check_request(gpus, cpus=8, gpus=8, timeout_min=10 ** 6)


def test_job_states_read_as_grid_reports_them():
    pending = slurm.JobState("12_3", "PENDING", "Resources", "0:00")
    assert pending.live and pending.describe() == "Slurm job 12_3 pending (Resources)"
    assert slurm.JobState("12_3", "RUNNING", "None", "1:05").describe() == "Slurm job 12_3 running for 1:05"
    for done in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "OUT_OF_MEMORY"):
        assert not slurm.JobState("7", done, "None", "0:10").live


def test_a_task_is_requeued_at_most_max_requeue_times():
    task = slurm.RequeuedTask(max, 2)
    assert task(3, 5) == 5
    first = task.checkpoint(3, 5)  # what submitit pickles and runs again after the requeue
    assert first.function is task and first.args == (3, 5) and task.requeued == 1
    assert task.checkpoint(3, 5) is not None and task.requeued == 2
    assert task.checkpoint(3, 5) is None and task.requeued == 2  # submitit then does not requeue


# A process whose last act (late in Python's shutdown, after Python has put back the default action of the signals
# it handled) is to receive the requeue signal: it prints "survived" only when the signal is ignored by then.
LATE_SIGNAL = """
import builtins, os, signal, sys
from utils import slurm
signal.signal(slurm.REQUEUE_SIGNAL, lambda *_: print("requeued"))  # as submitit's handler during the call
if sys.argv[1] == "task":
    print(slurm.RequeuedTask(max, 1)(3, 5))
class Last:
    def __del__(self):
        os.kill(os.getpid(), slurm.REQUEUE_SIGNAL)
        os.write(1, b"survived\\n")
builtins.last = Last()  # the builtins are cleared at the very end of the shutdown
"""


def test_a_task_ignores_the_requeue_signal_once_its_call_has_returned():
    # what a task did when the time limit's warning came while it exited: killed by it, its job FAILED
    def late(kind):
        return subprocess.run([sys.executable, "-c", LATE_SIGNAL, kind], cwd=ROOT, capture_output=True, text=True)

    bare = late("bare")
    assert bare.returncode == -slurm.REQUEUE_SIGNAL and bare.stdout == ""
    task = late("task")
    assert task.returncode == 0 and task.stdout == "5\nsurvived\n"


def test_the_ledger_is_written_atomically_and_held_by_one_grid(tmp_path):
    ledger = slurm.Ledger(str(tmp_path / "rec"))
    assert ledger.entries() == {}
    with ledger:
        ledger.add({"run_a": "12_0", "run_b": "12_1"})
        with pytest.raises(UserError, match="another grid.py is submitting"):
            with slurm.Ledger(str(tmp_path / "rec")):
                pass
    ledger.add({"run_b": "15"})
    entries = json.load(open(tmp_path / "rec" / "logs" / "slurm" / "ledger.json"))
    assert {k: v["job"] for k, v in entries.items()} == {"run_a": "12_0", "run_b": "15"}
    assert sorted(os.listdir(tmp_path / "rec" / "logs" / "slurm")) == ["ledger.json", "train.lock"]


# ----------------------------------------------------------------------------- the local Slurm
@pytest.fixture(scope="module")
def cluster():
    """The jobs the tests submit (a set; those still queued are cancelled at the end), with ``SLURM_CONF`` set
    for the running local Slurm (started here when it is installed but stopped, and then stopped again)."""
    def status():
        return subprocess.run(["bash", TOOL, "status"], capture_output=True, text=True)

    started = False
    state = status()
    if state.returncode != 0 and shutil.which("slurmctld") and os.geteuid() == 0 \
            and not os.environ.get("SLURM_LOCAL_ERROR"):
        started = subprocess.run(["bash", TOOL, "start"], capture_output=True, text=True).returncode == 0
        state = status()
    if state.returncode != 0:
        reason = os.environ.get("SLURM_LOCAL_ERROR") or (state.stdout + state.stderr).strip() or "no local Slurm"
        if not shutil.which("slurmctld"):
            reason += "; Slurm is not installed (tools/slurm_local.sh start installs it, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs the local Slurm for these tests: {reason}")
        pytest.skip(f"{reason}; start it with tools/slurm_local.sh start")
    conf = os.path.join(os.environ.get("SLURM_LOCAL_DIR", "/tmp/slurm_local"), "slurm.conf")
    jobs = set()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", conf)
        yield jobs
        if jobs:
            subprocess.run(["scancel", *sorted(jobs)], capture_output=True)
    if started:
        subprocess.run(["bash", TOOL, "stop"], capture_output=True)


def squeue(*jobs):
    """``{job id: state}`` of ``jobs`` (all jobs when none is named) as Slurm knows them now."""
    argv = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T"]
    if jobs:
        argv.append("--jobs=" + ",".join(sorted({j.split("_")[0] for j in jobs})))
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return dict(line.split("|") for line in out.split())


def wait_for(what, condition, timeout, jobs=()):
    """Poll the cluster (every second) until ``condition()``; fail naming ``what`` after ``timeout`` s, or as
    soon as one of ``jobs`` has ended other than COMPLETED."""
    deadline = time.time() + timeout
    while not condition():
        ended = {j: s for j, s in squeue(*jobs).items() if j in jobs and s not in slurm.LIVE | {"COMPLETED"}} \
            if jobs else {}
        if ended or time.time() > deadline:
            pytest.fail(f"{what}: {f'jobs ended {ended}' if ended else f'not after {timeout} s'} "
                        f"(squeue: {squeue()})")
        time.sleep(1)


def run_grid(cluster, argv):
    """grid.main in this process: (exit status, printed text); the jobs it submitted join ``cluster``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = grid.main(argv)
    cluster.update(ledger_jobs(argv[argv.index("--record_dir") + 1]).values())
    return rc, out.getvalue()


def ledger_jobs(rec):
    return {name: entry["job"] for name, entry in slurm.Ledger(rec).entries().items()}


def node_cpus():
    return slurm.partition().cpus


def grid_argv(data_root, rec, extra, *more):
    return ["synthetic", "--seeds", "1", "--only", "normface,DR", "--extra", extra, "--data_root", data_root,
            "--record_dir", rec, "--cluster", "slurm", "--gpus_per_run", "0", "--cpus_per_run", "1", *more]


def test_queued_runs_are_not_submitted_again_and_finish(cluster, tmp_path, data_root):
    rec = str(tmp_path / "rec")
    argv = grid_argv(data_root, rec, "--epochs 2 --resize 16")
    blocker = subprocess.run(["sbatch", "--parsable", f"--cpus-per-task={node_cpus()}", "--output=/dev/null",
                              "--wrap=sleep 600"], capture_output=True, text=True, check=True).stdout.strip()
    cluster.add(blocker)
    try:
        wait_for("the job taking the whole node starts", lambda: squeue(blocker).get(blocker) == "RUNNING", 60)
        rc, out = run_grid(cluster, argv)
        assert rc == 0 and "2 submitted" in out
        jobs = ledger_jobs(rec)
        assert sorted(jobs) == sorted(MINI_GRID_RUNS)
        assert all(squeue(*jobs.values()).get(j) == "PENDING" for j in jobs.values())
        before = squeue()

        rc, out = run_grid(cluster, argv)  # the same command while both wait: nothing new
        assert rc == 0 and "nothing to submit" in out and "2 queued" in out
        assert squeue() == before and ledger_jobs(rec) == jobs
        rc, out = run_grid(cluster, argv + ["--status"])
        for name in MINI_GRID_RUNS:
            line = next(ln for ln in out.splitlines() if ln.strip().startswith(name))
            assert "queued" in line and f"Slurm job {jobs[name]} pending (" in line
    finally:
        subprocess.run(["scancel", blocker], check=True)

    runs = [os.path.join(rec, name) for name in MINI_GRID_RUNS]
    wait_for("both tasks complete", lambda: set(squeue(*jobs.values()).values()) == {"COMPLETED"}, 180,
             jobs=set(jobs.values()))
    assert all(record.is_complete(r) for r in runs)
    count = len(squeue())
    rc, out = run_grid(cluster, argv)
    assert rc == 0 and "nothing to submit" in out and "0 done, 2 skipped" in out
    assert len(squeue()) == count


def task_epoch_seconds(cluster, data_root, rec):
    """Seconds per epoch of a run a Slurm task trains here now (the median of epochs 2-4 of a 4-epoch run)."""
    rc, _ = run_grid(cluster, ["synthetic", "--seeds", "1", "--only", "DR", "--extra", "--epochs 4 --resize 16",
                               "--data_root", data_root, "--record_dir", rec, "--cluster", "slurm",
                               "--gpus_per_run", "0", "--cpus_per_run", "1"])
    run_dir = os.path.join(rec, "synthetic_simple_DR_euc_rand_r16_ep4_val_seed1")
    wait_for("the 4-epoch run finishes", lambda: record.is_complete(run_dir), 180)
    return float(record.load_history(run_dir)["seconds"][1:].median())


def starts(log):
    """The command lines the grid's tasks wrote to a run's log, one per start."""
    return [line for line in open(log, encoding="utf-8") if line.startswith("# ")]


def test_a_timed_out_task_is_requeued_and_a_cancelled_one_resumed(cluster, tmp_path, data_root):
    # A 1-minute task gets its warning signal 20-50 s after it starts (grid.signal_delay): a run with 50 s of
    # epochs (at the speed measured just before) needs the requeue.
    epochs = min(400, max(20, math.ceil(50 / task_epoch_seconds(cluster, data_root, str(tmp_path / "speed")))))
    rec = str(tmp_path / "rec")
    argv = grid_argv(data_root, rec, f"--epochs {epochs} --resize 16", "--timeout_min", "1", "--max_requeue", "20")
    names = [f"synthetic_simple_{m}_euc_rand_r16_ep{epochs}_val_seed1" for m in ("normface", "DR")]
    timed, cancelled = (os.path.join(rec, n) for n in names)
    rc, out = run_grid(cluster, argv)
    assert rc == 0 and "2 submitted" in out
    first = ledger_jobs(rec)

    # cancel the second task once it has a checkpoint
    wait_for("the second run writes a checkpoint", lambda: record.is_complete(cancelled)
             or os.path.isfile(os.path.join(cancelled, record.CHECKPOINT_LAST)), 240)
    assert not record.is_complete(cancelled), f"{epochs} epochs finished within one slot"
    subprocess.run(["scancel", first[names[1]]], check=True)
    wait_for("the cancelled task ends", lambda: squeue(first[names[1]]).get(first[names[1]]) == "CANCELLED", 60)

    rc, out = run_grid(cluster, argv)  # resubmits the cancelled run only
    assert rc == 0 and "1 submitted" in out
    second = ledger_jobs(rec)
    assert second[names[0]] == first[names[0]] and second[names[1]] != first[names[1]]

    # a slot trains 15-45 s after the task's start-up: 2-4 slots
    wait_for("both runs finish", lambda: record.is_complete(timed) and record.is_complete(cancelled), 600,
             jobs=set(second.values()))
    for run_dir in (timed, cancelled):
        assert list(record.load_history(run_dir)["epoch"]) == list(range(1, epochs + 1))
    # the first run: never resubmitted, yet started again by Slurm after its time limit and continued
    assert ledger_jobs(rec)[names[0]] == first[names[0]]
    wait_for("the first task's job is complete", lambda: squeue(first[names[0]]).get(first[names[0]]) == "COMPLETED",
             60)
    lines = starts(os.path.join(rec, "logs", names[0] + ".log"))  # --overwrite after a slot with no epoch
    assert len(lines) >= 2 and any(line.rstrip().endswith("--resume") for line in lines[1:])
    lines = starts(os.path.join(rec, "logs", names[1] + ".log"))
    assert lines[-1].rstrip().endswith("--resume")


@pytest.mark.parametrize("flags, message", [
    (["--cpus_per_run", "99"], "--cpus_per_run 99: no node of Slurm partition"),
    (["--gpus_per_run", "1"], "--gpus_per_run 1: Slurm partition"),
    (["--partition", "nosuch"], "--partition nosuch: Slurm has no such partition"),
    (["--slurm_constraint", "nosuch"], "sbatch refused the job array (Batch job submission failed: Invalid "
                                       "feature specification)"),
])
def test_a_request_the_cluster_cannot_grant_fails_with_one_line(cluster, tmp_path, capsys, flags, message):
    rec = str(tmp_path / "rec")
    argv = ["synthetic", "--seeds", "1", "--only", "DR", "--record_dir", rec, "--cluster", "slurm",
            "--gpus_per_run", "0", "--cpus_per_run", "1", *flags]
    before = squeue()
    with pytest.raises(SystemExit) as exit:
        grid.main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and message in err
    assert not os.path.exists(os.path.join(rec, "logs", "slurm", "ledger.json"))
    assert {j: s for j, s in squeue().items() if j not in before and s != "FAILED"} == {}
