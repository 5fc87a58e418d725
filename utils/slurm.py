"""What ``grid.py --cluster slurm`` asks the cluster, and what it remembers of its submissions.

* :func:`partition` - the largest node of a partition (``sinfo``), so :func:`check_request` can refuse a task
  that no node could ever run (it would stay pending for ever);
* :func:`job_states` - the state and pending reason of submitted jobs (``squeue``; not ``sacct``, which fails
  where accounting is off);
* :class:`Ledger` - ``<record_dir>/logs/slurm/ledger.json``: for every run, the Slurm job last submitted for it;
* :class:`RequeuedTask` - an array task that submitit requeues at its time limit or on preemption.

Top layer (it runs Slurm's commands and imports submitit); grid.py imports it only with ``--cluster slurm``.
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

import submitit

from utils import io, lock
from utils.errors import UserError

#: Job states in which a job still owns its run: it will (again) train it without anyone submitting it.
LIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                  "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"})


def slurm_command(argv):
    """stdout of a Slurm command; :class:`UserError` naming the command when it is missing or fails."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError(f"--cluster slurm: {argv[0]} is not on PATH; run grid.py where Slurm's commands are "
                        f"(a login node), or drop --cluster slurm") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{argv[0]} did not answer in 60 s; is slurmctld up? (try: {argv[0]})") from None
    if proc.returncode != 0:
        raise UserError(f"{argv[0]} failed ({last_error(proc.stderr)}); is Slurm reachable from here?")
    return proc.stdout


def last_error(text):
    """The last line of a Slurm command's stderr that says what went wrong, without the ``sbatch: error:``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|fatal", ln, re.IGNORECASE)] or lines or ["no message"]
    return re.sub(r"^\w+: ((error|fatal): )?", "", errors[-1])


# ----------------------------------------------------------------------------- partitions
@dataclass(frozen=True)
class Partition:
    """The most one task can get on a partition: the largest node's CPUs, memory (MB) and GPUs, and the
    partition's time limit (seconds; None: unlimited)."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    max_seconds: int | None


def gpus_of(gres):
    """GPUs in a node's generic resources as sinfo prints them: ``"gpu:a100:4(S:0-1),mps:400"`` -> 4,
    ``"gpu:2,gpu:v100:2"`` -> 4, ``"(null)"`` -> 0."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = item.strip().split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def seconds_of(limit):
    """A Slurm time limit in seconds: ``"1-12:00:00"`` -> 129600, ``"2:30:00"`` -> 9000, ``"45:00"`` (minutes and
    seconds) -> 2700, ``"30"`` (minutes) -> 1800, ``"2-6"`` (days and hours) -> 194400; ``"infinite"`` (or
    anything else sinfo prints instead of a time) -> None."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", limit.strip())
    if not match:
        return None
    days, *clock = match.groups()
    given = [int(x) for x in clock if x is not None]
    if days is not None:  # days-hours[:minutes[:seconds]]
        h, m, s = given + [0] * (3 - len(given))
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        h, m, s = ([0] * (3 - len(given)) + given) if len(given) == 3 else (0, given[0], given[1] if len(given) > 1 else 0)
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def megabytes_of(mem):
    """An sbatch ``--mem`` value in MB: ``"32G"`` -> 32768, ``"500M"`` -> 500, ``"2000"`` -> 2000 (MB)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)B?", str(mem).strip().upper())
    if not match:
        raise UserError(f"--slurm_mem {mem!r}: give a size like 32G or 500M")
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[match.group(2)]
    return int(int(match.group(1)) * scale)


def partition(name=None):
    """The :class:`Partition` ``name`` (default: the cluster's default partition) as sinfo describes it, or
    None where there is no sinfo to ask."""
    if shutil.which("sinfo") is None:
        return None
    text = slurm_command(["sinfo", "--noheader", "--Node", "--format=%P|%c|%m|%G|%l"])
    nodes = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 5:
            nodes.setdefault(fields[0], []).append(fields[1:])
    default = next((p.rstrip("*") for p in nodes if p.endswith("*")), None)
    nodes = {p.rstrip("*"): rows for p, rows in nodes.items()}
    chosen = name or default
    if chosen not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        raise UserError(f"--partition {chosen}: Slurm has no such partition (sinfo lists: {known})" if name else
                        f"Slurm has no default partition; choose one with --partition (sinfo lists: {known})")
    rows = nodes[chosen]
    return Partition(name=chosen, cpus=max(int(r[0].rstrip("+")) for r in rows),
                     mem_mb=max(int(r[1].rstrip("+")) for r in rows), gpus=max(gpus_of(r[2]) for r in rows),
                     max_seconds=seconds_of(rows[0][3]))


def check_request(part, cpus, gpus, timeout_min, mem=None):
    """:class:`UserError` naming the flag and the largest value when one task asks more than any node of the
    partition has (or more time than it allows)."""
    where = f"Slurm partition {part.name!r}"
    if gpus > part.gpus:
        raise UserError(f"--gpus_per_run {gpus}: {where} has no GPUs; give --gpus_per_run 0 (the runs train on "
                        f"the CPU) or a --partition with GPUs" if part.gpus == 0 else
                        f"--gpus_per_run {gpus}: no node of {where} has more than {part.gpus} GPUs; give "
                        f"--gpus_per_run {part.gpus} or less, or another --partition")
    if cpus > part.cpus:
        raise UserError(f"--cpus_per_run {cpus}: no node of {where} has more than {part.cpus} CPUs; give "
                        f"--cpus_per_run {part.cpus} or less, or another --partition")
    if mem is not None and megabytes_of(mem) > part.mem_mb:
        raise UserError(f"--slurm_mem {mem}: no node of {where} has more than {part.mem_mb} MB; give "
                        f"--slurm_mem {part.mem_mb // 1024}G or less, or another --partition")
    if part.max_seconds is not None and timeout_min * 60 > part.max_seconds:
        most = part.max_seconds // 60
        raise UserError(f"--timeout_min {timeout_min}: {where} allows at most {most} minutes per job; give "
                        f"--timeout_min {most} or less (a task that reaches it is requeued, see --max_requeue)")


# ----------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class JobState:
    """One job as squeue shows it: id (``"12_3"`` for an array task), state, pending reason, time used."""

    job: str
    state: str
    reason: str
    elapsed: str

    @property
    def live(self):
        return self.state in LIVE

    def describe(self):
        """``"Slurm job 12_3 pending (Resources)"``, ``"Slurm job 12_3 running for 0:41"``, ...."""
        text = f"Slurm job {self.job} {self.state.lower()}"
        if self.state == "PENDING":
            return f"{text} ({self.reason})"
        return f"{text} for {self.elapsed}" if self.state == "RUNNING" else text


def job_states(jobs):
    """``{job id: JobState}`` for those of ``jobs`` (ids as submitit gives them) that squeue still knows;
    a job it has forgotten (finished a while ago) is missing."""
    bases = sorted({j.split("_")[0] for j in jobs})
    if not bases:
        return {}
    argv = ["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(bases)}",
            "--format=%i|%T|%r|%M"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        proc = None
    if proc is None or (proc.returncode != 0 and "Invalid job id" not in proc.stderr):
        why = "squeue is not on PATH" if proc is None else f"squeue: {last_error(proc.stderr)}"
        raise UserError(f"cannot ask Slurm whether the jobs submitted before for these runs are still queued "
                        f"({why}); run grid.py where squeue works")
    states = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        fields = line.strip().split("|")
        if len(fields) == 4:
            states[fields[0]] = JobState(*fields)
    return {j: states[j] for j in jobs if j in states}


# ----------------------------------------------------------------------------- ledger
class Ledger:
    """``<record_dir>/logs/slurm/ledger.json``: ``{run name: {"job": id, "submitted": time}}``, the job last
    submitted for each run (written atomically).  ``with ledger:`` holds the folder's lock, so two grid.py
    calls on the same record folder do not both submit."""

    def __init__(self, record_dir):
        self.folder = os.path.join(os.path.abspath(record_dir), "logs", "slurm")
        self.path = os.path.join(self.folder, "ledger.json")
        self._lock = lock.RunLock(self.folder)

    def __enter__(self):
        try:
            self._lock.acquire()
        except UserError:
            raise UserError(f"another grid.py is submitting this record folder's runs now ({self.folder}); "
                            f"run this one again when it has finished") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()
        return False

    def entries(self):
        """``{run name: {"job": job id, "submitted": time}}`` (empty before the first submission)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise UserError(f"{self.path} is not a readable ledger ({err}); delete it (grid.py then also "
                            f"submits runs that may still be queued: check squeue)") from None

    def add(self, submitted):
        """Record ``{run name: job id}`` as submitted now."""
        now = datetime.datetime.now().isoformat(timespec="seconds")
        entries = self.entries()
        entries.update({name: {"job": job, "submitted": now} for name, job in submitted.items()})
        io.write_json(self.path, entries)


# ----------------------------------------------------------------------------- requeue
#: The signal Slurm sends a submitit task before its time limit (sbatch --signal) and on preemption.
REQUEUE_SIGNAL = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)


class RequeuedTask(submitit.helpers.Checkpointable):
    """``function(*args)`` as a Slurm array task that submitit requeues (same arguments) when the task gets its
    signal before the time limit or on preemption, at most ``max_requeue`` times; the requeued call decides
    again what to do (grid.py's execute: continue with --resume).  Once the call has returned, the signal is
    ignored."""

    def __init__(self, function, max_requeue):
        self.function = function
        self.max_requeue = max_requeue
        self.requeued = 0

    def __call__(self, *args):
        result = self.function(*args)
        # The work is done: a requeue signal from now on is ignored.  The time limit's warning can come while
        # submitit writes the result or while Python shuts down, and Python restores a signal's default action
        # (terminate) before it exits: the task, its run finished, would end FAILED instead of COMPLETED.
        signal.signal(REQUEUE_SIGNAL, signal.SIG_IGN)
        return result

    def checkpoint(self, *args):
        if self.requeued >= self.max_requeue:
            return None  # submitit: not requeued; the next grid.py call resubmits the run
        self.requeued += 1
        return super().checkpoint(*args)
