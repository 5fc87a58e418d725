"""What a training run writes: its folder (one writer, utils/lock.py), checkpoints, history and outputs.

The file names and array formats are ``utils/record.py``'s; every file is
written atomically (``utils/io.py``).
"""
import contextlib
import logging
import os
import shutil
import sys

import numpy as np
import pandas as pd
import torch
import torchvision

from losses.distances import normalize
from utils import record
from utils.errors import UserError
from utils.io import torch_save, write_dataframe_csv
from utils.lock import RunLock, run_files
from utils.training.passes import accuracy, embed

#: A new best checkpoint until the epoch's checkpoint_last.pt is written (:func:`commit_epoch`).
PENDING_BEST = record.CHECKPOINT_BEST + ".pending"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "val_acc_proto", "test_acc", "scale", "seconds"]


# ----------------------------------------------------------------------------- the run folder
def check_run_dir(run_dir: str, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that --resume / --overwrite do not allow (reads only)."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UserError(f"{run_dir} exists and is not a folder; remove it or choose another --record_dir")
    if resume:
        if not os.path.isfile(os.path.join(run_dir, record.CHECKPOINT_LAST)):
            raise UserError(f"--resume: {run_dir} has no {record.CHECKPOINT_LAST}; start the run without --resume")
    elif run_files(run_dir) and not overwrite:
        raise UserError(
            f"{run_dir} already holds a run; continue it with --resume, replace it with --overwrite, "
            f"or change --seed/--record_dir"
        )


@contextlib.contextmanager
def locked_run_dir(run_dir: str, resume: bool, overwrite: bool):
    """The run folder, checked, then held by this process (a second writer is refused with one line).

    The check runs before anything is created and again under the lock (another
    process may have written meanwhile).  Folders this creates are removed again
    when the run writes nothing into them (bad data found while loading).
    """
    check_run_dir(run_dir, resume, overwrite)
    created = [d for d in (run_dir, os.path.dirname(run_dir)) if d and not os.path.isdir(d)]
    lock = RunLock(run_dir).acquire()
    try:
        check_run_dir(run_dir, resume, overwrite)
        yield run_dir
    finally:
        if not run_files(run_dir):
            with contextlib.suppress(OSError):
                os.remove(lock.path)
                for folder in created:  # the run folder, then the record folder if this run made it
                    os.rmdir(folder)
        lock.release()


def empty_run_dir(run_dir: str) -> None:
    """--overwrite: remove everything in the run folder but the lock this process holds."""
    for entry in run_files(run_dir):
        path = os.path.join(run_dir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def setup_logging(run_dir: str) -> logging.Logger:
    """The run's log: ``train.log`` (with times) and the terminal."""
    logger = logging.getLogger("train")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    to_file = logging.FileHandler(os.path.join(run_dir, record.TRAIN_LOG), encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    to_screen = logging.StreamHandler(sys.stdout)
    to_screen.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(to_file)
    logger.addHandler(to_screen)
    return logger


def versions() -> dict:
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__}


# ----------------------------------------------------------------------------- checkpoints
def checkpoint(parts, epoch: int, best_epoch: int, best_val: float) -> dict:
    """The state to continue from (``parts``: a :class:`utils.training.build.RunParts`)."""
    head = parts.head
    return {
        "model": parts.model.state_dict(),
        "head": head.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scale_optimizer": None if parts.scale_optimizer is None else parts.scale_optimizer.state_dict(),
        "epoch": epoch,
        "best_epoch": best_epoch,
        "best_val_acc": best_val,
        "scale": None if head.scale is None else float(head.scale),
    }


def save_checkpoint(path: str, parts, epoch: int, best_epoch: int, best_val: float) -> None:
    torch_save(path, checkpoint(parts, epoch, best_epoch, best_val))


def commit_epoch(run_dir: str, parts, history: list, epoch: int, best_epoch: int, best_val: float,
                 improved: bool) -> None:
    """Write what an epoch leaves (history.csv, checkpoint_best.pt when validation improved, checkpoint_last.pt)
    in an order that a kill at any point leaves a run --resume continues as if uninterrupted.

    checkpoint_last.pt is the commit point: history.csv is written before it (--resume keeps the rows up to
    the checkpoint's epoch), a new best checkpoint before it under a pending name and moved in place after it
    (:func:`settle_pending_best` finishes or drops one that a kill left).
    """
    write_history(run_dir, history)
    best, pending = os.path.join(run_dir, record.CHECKPOINT_BEST), os.path.join(run_dir, PENDING_BEST)
    if improved:
        save_checkpoint(pending, parts, epoch, best_epoch, best_val)
    save_checkpoint(os.path.join(run_dir, record.CHECKPOINT_LAST), parts, epoch, best_epoch, best_val)
    if improved:
        os.replace(pending, best)


def settle_pending_best(run_dir: str, last: dict) -> None:
    """--resume: the best checkpoint a kill left under its pending name goes in place when ``last`` (the last
    checkpoint) names its epoch as the best, else (its epoch was not committed) it is removed."""
    pending = os.path.join(run_dir, PENDING_BEST)
    if not os.path.isfile(pending):
        return
    try:
        epoch = load_checkpoint(pending)["epoch"]
    except UserError:  # not readable: its epoch was not committed
        epoch = None
    if epoch == last["best_epoch"]:
        os.replace(pending, os.path.join(run_dir, record.CHECKPOINT_BEST))
    else:
        os.remove(pending)


def load_checkpoint(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path} ({type(err).__name__}); remove it or start over with --overwrite") from None


def restore(parts, ck: dict, optimizers: bool = True) -> None:
    """Load a checkpoint into the network and head (and, for --resume, the optimisers)."""
    parts.model.load_state_dict(ck["model"])
    parts.head.load_state_dict(ck["head"])
    if optimizers:
        parts.optimizer.load_state_dict(ck["optimizer"])
        if parts.scale_optimizer is not None and ck["scale_optimizer"] is not None:
            parts.scale_optimizer.load_state_dict(ck["scale_optimizer"])


# ----------------------------------------------------------------------------- history and outputs
def write_history(run_dir: str, history: list) -> None:
    write_dataframe_csv(os.path.join(run_dir, record.HISTORY), pd.DataFrame(history, columns=HISTORY_COLUMNS))


def write_outputs(path, model, head, prototypes, eval_loader, device, split) -> float:
    """One ``outputs_*.npz`` for the split behind ``eval_loader``; returns its W accuracy."""
    f, y = embed(model, eval_loader, device, split)
    with torch.no_grad():
        z = head.scores(f)
        z_proto = None if head.method == "softmax" else head.scores(f, prototypes)
    record.save_outputs(
        path,
        labels=y,
        embeddings=normalize(f),
        scores=z,
        representatives=head.representatives(),
        prototypes=prototypes,
        scores_proto=z_proto,
    )
    return accuracy(z, y)
