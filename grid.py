#!/usr/bin/env python
"""Run the paper's grid for one dataset: 14 configurations x seeds, then (with --evaluate) evaluate.py.

    python grid.py MicroS --print                     # the 70 training commands, one per line
    python grid.py MicroS --gpus 0,1,2,3              # local: one run per GPU at a time
    python grid.py synthetic_bench --per_gpu 2 --evaluate     # CPU: two runs at a time (make reproduce)
    python grid.py nabirds --cluster slurm --partition gpu --timeout_min 720   # a Slurm job array

Every run is a separate process of the dataset's training script (train.py,
train_cifar100.py or train_nabirds.py) with its log in <record_dir>/logs/.
A finished run (outputs_test.npz and a config.json with an end time) is
skipped, an interrupted one is continued with --resume, and one that another
process is training now (its run folder's lock is held) is left to it.  A
failed run does not stop the others; the table at the end says what happened
to each run and the exit status is 1 when any failed.
"""
import argparse
import datetime
import enum
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from datasets import registry
from utils import lock, record
from utils.errors import UserError, exit_on_user_error

HERE = os.path.dirname(os.path.abspath(__file__))

# The paper's 14 configurations, in the order of its result tables: the name (for --only/--skip) and the flags.
CONFIGS = [
    ("softmax", "--method softmax"),
    ("normface", "--method normface"),
    ("normface_ema", "--method normface --ema"),
    ("normface_dnm", "--method normface --dynamic"),
    ("normface_ema_dnm", "--method normface --ema --dynamic"),
    ("normface_mds", "--method normface --mds_W"),
    ("normface_mds_dnm", "--method normface --mds_W --dynamic"),
    ("DR", "--method DR"),
    ("DR_ema", "--method DR --ema"),
    ("DR_dnm", "--method DR --dynamic"),
    ("DR_ema_dnm", "--method DR --ema --dynamic"),
    ("DR_mds", "--method DR --mds_W"),
    ("DR_mds_dnm", "--method DR --mds_W --dynamic"),
    ("DR_mds_corr", "--method DR --mds_W --CORR"),
]
CONFIG_NAMES = [name for name, _ in CONFIGS]
DISTANCE = "--distance euc"  # every run of the paper's grids


class State(enum.Enum):
    """A run's state before it starts (what to do) and after (what happened)."""

    FRESH = "fresh"  # no folder: start it
    RESUME = "resume"  # a checkpoint to continue from: --resume
    OVERWRITE = "overwrite"  # a folder with no checkpoint: --overwrite
    SKIPPED = "skipped"  # finished before
    ELSEWHERE = "running elsewhere"  # another process holds its lock
    DONE = "done"
    FAILED = "failed"

    def __str__(self):
        return self.value


#: The states a run can end the grid in, in the report's order.
REPORTED = (State.DONE, State.SKIPPED, State.FAILED, State.ELSEWHERE)


@dataclass(frozen=True)
class GridRun:
    """One run of the grid: its configuration name, seed, training script and arguments, and where it writes."""

    config: str
    seed: int
    script: str
    argv: tuple  # the training script's arguments, as --print shows them (no device)
    name: str  # the run name the training script gives these arguments
    run_dir: str  # absolute
    exec_argv: tuple  # argv with absolute --data_root/--record_dir (a cluster task may start elsewhere)


# ----------------------------------------------------------------------------- the runs
def parse_seeds(text):
    """``"1-5"`` -> [1, 2, 3, 4, 5]; ``"1,3,7"`` -> [1, 3, 7]; ``"2"`` -> [2]."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise UserError(f"--seeds {text!r}: give a range like 1-5 or a list like 1,2,3") from None
    if not seeds:
        raise UserError(f"--seeds {text!r} names no seed; give a range like 1-5")
    return list(dict.fromkeys(seeds))


def select_configs(only, skip):
    """The configurations to run, in the paper's order, from comma-separated --only / --skip names."""
    def names(text, flag):
        chosen = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in CONFIG_NAMES]
        if unknown:
            raise UserError(f"{flag}: unknown configuration {unknown[0]!r}; choose from {', '.join(CONFIG_NAMES)}")
        return chosen

    keep = names(only, "--only") if only else CONFIG_NAMES
    drop = names(skip, "--skip") if skip else []
    configs = [(n, f) for n, f in CONFIGS if n in keep and n not in drop]
    if not configs:
        raise UserError("--only/--skip leave no configuration to run")
    return configs


def training_argv(dataset, config_flags, seed, args):
    """The training script's arguments for one run (no device: the runner adds it)."""
    entry = registry.get(dataset)
    script = entry.script
    argv = [] if script != "train.py" else ["--dataset", dataset]
    argv += config_flags.split() + DISTANCE.split() + entry.grid_flags.split() + ["--seed", str(seed)]
    argv += shlex.split(args.extra or "")
    if args.data_root:
        argv += ["--data_root", args.data_root]
    if os.path.normpath(args.record_dir) != "record":
        argv += ["--record_dir", args.record_dir]
    return script, argv


def absolute_folders(argv, record_dir):
    """``argv`` with ``--data_root`` and ``--record_dir`` as absolute paths (the record folder always given),
    so a run started by a cluster task or from another folder writes where the grid looks."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("--data_root", "--record_dir") and i + 1 < len(argv):
            out += [argv[i], os.path.abspath(argv[i + 1])]
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out if "--record_dir" in out else out + ["--record_dir", os.path.abspath(record_dir)]


def _script_module(script):
    if script == "train.py":
        import train as module
    elif script == "train_cifar100.py":
        import train_cifar100 as module
    else:
        import train_nabirds as module
    return module


def run_name_of(script, argv):
    """The run name the training script will give these arguments (its own parser and naming rule)."""
    def refuse(message):
        raise UserError(f"the training script refuses these arguments ({message}); check --extra against "
                        f"python {script} --help")

    return _script_module(script).parse_config(argv, error=refuse).run_name


def plan(args):
    """Every run of the grid, seed by seed, the configurations in the paper's order within a seed."""
    runs = []
    for seed in parse_seeds(args.seeds):
        for config, flags in select_configs(args.only, args.skip):
            script, argv = training_argv(args.dataset, flags, seed, args)
            name = run_name_of(script, argv)
            runs.append(GridRun(config=config, seed=seed, script=script, argv=tuple(argv), name=name,
                                run_dir=os.path.abspath(os.path.join(args.record_dir, name)),
                                exec_argv=tuple(absolute_folders(argv, args.record_dir))))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise UserError("two runs of the grid get the same run name; check --extra")
    return runs


def command(run, device_flags=()):
    return " ".join(shlex.quote(x) for x in ["python", run.script, *device_flags, *run.argv])


def state(run_dir):
    """What to do with a run before it starts: SKIPPED (finished), ELSEWHERE (locked by another process),
    RESUME (a checkpoint to continue from), OVERWRITE (a folder with no checkpoint) or FRESH (no folder)."""
    if record.is_complete(run_dir):
        return State.SKIPPED
    if lock.holder(run_dir) is not None:
        return State.ELSEWHERE
    if os.path.isfile(os.path.join(run_dir, record.CHECKPOINT_LAST)):
        return State.RESUME
    if lock.run_files(run_dir):
        return State.OVERWRITE
    return State.FRESH


def not_started(run, what):
    """``(state, detail)`` for a run that is not to be started (``what``: its :func:`state`), else None."""
    if what is State.SKIPPED:
        return what, "finished before"
    if what is State.ELSEWHERE:
        return what, lock.describe(lock.holder(run.run_dir) or "another process")
    return None


def start(run, what, device_flags, log_path, env=None):
    """Start the run's training process (``what``, its :func:`state`: continued with --resume where it has a
    checkpoint), logging to ``log_path``; returns (process, log file)."""
    extra = {State.RESUME: ["--resume"], State.OVERWRITE: ["--overwrite"]}.get(what, [])
    argv = [sys.executable, os.path.join(HERE, run.script), *device_flags, *run.exec_argv, *extra]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log = open(log_path, "a", encoding="utf-8")
    log.write(f"# {datetime.datetime.now().isoformat(timespec='seconds')} {shlex.join(argv)}\n")
    log.flush()
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log


def outcome(run, rc, what):
    """(state, detail) of a training process that exited with ``rc``."""
    if rc == 0 and record.is_complete(run.run_dir):
        return State.DONE, "resumed" if what is State.RESUME else ""
    who = lock.holder(run.run_dir)
    if rc == 2 and who is not None:
        return State.ELSEWHERE, lock.describe(who)
    return State.FAILED, f"exit {rc}"


def execute(run, log_path, device_flags, env=None):
    """Run one grid entry to the end (blocking; one task of a submitit job array): the same skip / resume /
    lock rule as the local runner.  Returns (state, seconds, detail)."""
    what = state(run.run_dir)
    skipped = not_started(run, what)
    if skipped:
        return skipped[0], 0.0, skipped[1]
    t0 = time.time()
    proc, log = start(run, what, device_flags, log_path, env)
    with log:
        rc = proc.wait()
    status, detail = outcome(run, rc, what)
    return status, time.time() - t0, detail


def log_path_of(args, run):
    return os.path.join(args.record_dir, "logs", run.name + ".log")


# ----------------------------------------------------------------------------- local runner
def device_slots(gpus, per_gpu):
    """One ``(device flags, environment)`` per concurrent run: each listed GPU ``per_gpu`` times, or the CPU."""
    if gpus is None:
        import torch

        gpus = ",".join(str(i) for i in range(torch.cuda.device_count()))
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if per_gpu < 1:
        raise UserError(f"--per_gpu must be at least 1, got {per_gpu}")
    if not ids or ids == ["cpu"]:
        threads = max(1, (os.cpu_count() or 1) // per_gpu)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        return [(["--device", "cpu"], env)] * per_gpu
    for g in ids:
        if not g.isdigit():
            raise UserError(f"--gpus {gpus!r}: give GPU numbers like 0,1,2 (or cpu)")
    return [(["--device", f"cuda:{g}"], None) for g in ids for _ in range(per_gpu)]


def run_local(args, runs):
    slots = device_slots(args.gpus, args.per_gpu)
    free = list(range(len(slots)))
    pending = list(runs)
    active = {}  # slot -> (run, process, log file, its state at the start, start time)
    results = {}
    bar = tqdm(total=len(runs), desc=f"grid {args.dataset}", unit="run", disable=None)

    def finish(run, status, seconds, detail):
        results[run.name] = (status, seconds, detail)
        bar.update(1)
        bar.set_postfix_str(f"{run.name}: {status}")
        if bar.disable:  # not a terminal (a log file): one line per finished run instead of the bar
            print(f"[{len(results)}/{len(runs)}] {run.name}: {status} ({seconds / 60:.1f} min)", flush=True)

    while pending or active:
        while pending and free:
            run = pending.pop(0)
            what = state(run.run_dir)
            skipped = not_started(run, what)
            if skipped:
                finish(run, skipped[0], 0.0, skipped[1])
                continue
            slot = free.pop(0)
            flags, env = slots[slot]
            active[slot] = (run, *start(run, what, flags, log_path_of(args, run), env), what, time.time())
        time.sleep(0.2)
        for slot, (run, proc, log, what, t0) in list(active.items()):
            rc = proc.poll()
            if rc is None:
                continue
            log.close()
            del active[slot]
            free.append(slot)
            status, detail = outcome(run, rc, what)
            finish(run, status, time.time() - t0, detail)
    bar.close()
    return results


# ----------------------------------------------------------------------------- submitit (Slurm, local)
def slurm_parameters(args, extra):
    """submitit parameters for one array task per run; ``extra`` holds the --slurm_* options passed on."""
    params = dict(timeout_min=args.timeout_min, gpus_per_node=args.gpus_per_run, cpus_per_task=args.cpus_per_run,
                  tasks_per_node=1, nodes=1, slurm_array_parallelism=args.max_parallel)
    if args.partition:
        params["slurm_partition"] = args.partition
    params.update(extra)
    return params


def parse_slurm_extra(unknown):
    """``--slurm_mem 32G --slurm_qos=high`` -> {"slurm_mem": "32G", "slurm_qos": "high"}; anything else refused."""
    extra, i = {}, 0
    while i < len(unknown):
        token = unknown[i]
        if not token.startswith("--slurm_"):
            raise UserError(f"unknown option {token!r}; see python grid.py --help")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(unknown) or unknown[i + 1].startswith("--"):
                raise UserError(f"{token} needs a value, e.g. {token} VALUE")
            value, i = unknown[i + 1], i + 1
        extra[key] = int(value) if value.isdigit() else value
        i += 1
    return extra


def run_submitit(args, runs, slurm_extra):
    try:
        import submitit
    except ImportError:
        raise UserError("--cluster needs submitit: pip install submitit (it is in requirements.txt)") from None
    folder = os.path.abspath(os.path.join(args.record_dir, "logs", "submitit"))
    executor = submitit.AutoExecutor(folder=folder, cluster=args.cluster)
    if args.cluster == "slurm":
        executor.update_parameters(**slurm_parameters(args, slurm_extra))
        device_flags = ["--GPU", "0"] if args.gpus_per_run else ["--device", "cpu"]  # Slurm shows a task its GPUs
    else:
        executor.update_parameters(timeout_min=args.timeout_min, gpus_per_node=0)
        device_flags = ["--device", "cpu"]
    # The array's workers import this module: make the project importable wherever they start.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    results = {}
    for run in runs:  # finished runs, and runs another process trains now, are not submitted
        skipped = not_started(run, state(run.run_dir))
        if skipped:
            results[run.name] = (skipped[0], 0.0, skipped[1])
    todo = [run for run in runs if run.name not in results]
    if not todo:
        print("nothing to submit: every run has finished or is running elsewhere")
        return results
    jobs = executor.map_array(execute, todo, [os.path.abspath(log_path_of(args, r)) for r in todo],
                              [device_flags] * len(todo))
    job_id = jobs[0].job_id.split("_")[0]
    print(f"submitted job array {job_id}: {len(jobs)} runs ({len(results)} finished or running elsewhere, not "
          f"submitted); submitit logs in {folder}, training logs in {os.path.join(args.record_dir, 'logs')}")
    if args.cluster == "slurm":
        print(f"when it has finished: python evaluate.py {args.record_dir} (the same grid.py command again "
              f"resubmits only the runs that did not finish)")
        return None
    for run, job in tqdm(list(zip(todo, jobs)), desc=f"grid {args.dataset}", unit="run", disable=None):
        try:
            results[run.name] = job.result()
        except Exception as err:  # the task itself crashed (not the training run): report, go on
            results[run.name] = (State.FAILED, 0.0, f"{type(err).__name__}: {str(err).splitlines()[-1][:200]}")
    return results


# ----------------------------------------------------------------------------- report
def report(args, runs, results):
    rows = []
    for run in runs:
        status, seconds, detail = results[run.name]
        rows.append(dict(run=run.name, status=str(status), minutes=round(seconds / 60, 2),
                         note=detail if status is not State.FAILED else f"{detail}; log {log_path_of(args, run)}"))
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    counts = table["status"].value_counts()
    print(", ".join(f"{counts.get(str(s), 0)} {s}" for s in REPORTED) +
          f"; training time {table['minutes'].sum():.1f} min")
    return int(counts.get(str(State.FAILED), 0))


def evaluate(args):
    argv = [sys.executable, os.path.join(HERE, "evaluate.py"), args.record_dir, "--quiet"]
    print("evaluating:", shlex.join(argv[1:]))
    return subprocess.call(argv)


# ----------------------------------------------------------------------------- main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="configurations (for --only/--skip): " + ", ".join(CONFIG_NAMES) +
                                "\nper-dataset flags: " + "; ".join(f"{e.name}: {e.script} {e.grid_flags}"
                                                                     for e in registry.REGISTRY.values())
                                + f"; any other name: {registry.TAXONOMY_FOLDER.script} "
                                  f"{registry.TAXONOMY_FOLDER.grid_flags}. All runs: {DISTANCE}."
                                + "\nwith --cluster slurm, any --slurm_<name> VALUE is passed to submitit as slurm_<name> "
                                  "(e.g. --slurm_mem 32G --slurm_qos high)")
    p.add_argument("dataset", help="MicroS, MicroL, MesoZ, cifar100, nabirds, synthetic, synthetic_bench, "
                                   "synthetic_bench_hard, or a taxonomy folder under --data_root")
    p.add_argument("--seeds", default="1-5", help="seeds, a range or a list (default 1-5, the paper's)")
    p.add_argument("--only", default=None, help="comma-separated configurations to run (default all 14)")
    p.add_argument("--skip", default=None, help="comma-separated configurations to leave out")
    p.add_argument("--extra", default="", help='flags added to every run, e.g. "--epochs 0" or --extra=--clspri (a single flag needs the =)')
    p.add_argument("--data_root", default=None, help="passed to every run (default: the scripts' own default)")
    p.add_argument("--record_dir", default="record", help="where the runs and logs/ go (default record/)")
    p.add_argument("--print", action="store_true", help="print the training commands, one per line, and exit")
    p.add_argument("--evaluate", action="store_true", help="run evaluate.py on --record_dir once the runs are done")
    g = p.add_argument_group("local runner (default)")
    g.add_argument("--gpus", default=None, help="GPUs to use, e.g. 0,1,2 (default: every visible GPU; "
                                                "the CPU when there is none, or with --gpus cpu)")
    g.add_argument("--per_gpu", type=int, default=1,
                   help="runs at a time on each GPU (on the CPU: runs at a time, sharing the cores; default 1)")
    g = p.add_argument_group("cluster (through submitit)")
    g.add_argument("--cluster", choices=["slurm", "local"], default=None,
                   help="slurm: one Slurm job array, one task per run; local: the same path on this machine")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--gpus_per_run", type=int, default=1, help="GPUs per array task (default 1)")
    g.add_argument("--cpus_per_run", type=int, default=8, help="CPUs per array task (default 8)")
    g.add_argument("--timeout_min", type=int, default=24 * 60, help="time limit per task, minutes (default 1440)")
    g.add_argument("--max_parallel", type=int, default=16, help="array tasks running at once (default 16)")
    return p


@exit_on_user_error
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = build_parser().parse_known_args(argv)
    slurm_extra = parse_slurm_extra(unknown)
    if slurm_extra and args.cluster != "slurm":
        raise UserError(f"--{next(iter(slurm_extra))} is a Slurm parameter: add --cluster slurm or drop it")
    runs = plan(args)
    if args.print:
        gpu = (args.gpus or "0").split(",")[0]
        flags = ["--device", "cpu"] if gpu == "cpu" else ["--GPU", gpu]
        try:
            for run in runs:
                print(command(run, flags), flush=True)
        except BrokenPipeError:  # e.g. piped into head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    n_seeds = len({run.seed for run in runs})
    print(f"grid {args.dataset}: {len(runs)} runs ({len(runs) // n_seeds} configurations x {n_seeds} seeds) "
          f"-> {args.record_dir}")
    results = run_submitit(args, runs, slurm_extra) if args.cluster else run_local(args, runs)
    if results is None:
        return 0
    failed = report(args, runs, results)
    if args.evaluate:
        if failed:
            print(f"{failed} run(s) failed: evaluating the finished ones")
        if evaluate(args) != 0:
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
