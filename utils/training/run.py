"""One training run, top to bottom: the shared loop of ``train.py``, ``train_cifar100.py`` and ``train_nabirds.py``.

1. hold ``record/<run name>/`` (one writer per run), pick the device, load the data (the dataset's loader);
2. build the network, head and optimisers (``utils/training/build.py``); resume from ``checkpoint_last.pt``;
3. each epoch: a training pass (which also accumulates the epoch's prototypes), a validation pass with
   ``--use_val``, then a ``history.csv`` row, ``checkpoint_best.pt`` when validation improves and
   ``checkpoint_last.pt``, in an order that a kill at any point resumes from (``checkpoints.commit_epoch``);
4. once, for the evaluated checkpoint: prototypes from the training split and the ``outputs_*.npz`` files
   that ``evaluate.py`` reads.
"""
import datetime
import math
import os
import sys
import time

import torch
from tqdm import tqdm

from datasets import registry
from utils import record
from utils.errors import UserError, exit_on_user_error
from utils.io import write_dataframe_csv, write_json
from utils.training import checkpoints as ck
from utils.training.build import RunParts, build_parts
from utils.training.cli import resolve_device
from utils.training.config import RunConfig
from utils.training.passes import (accuracy, embed, epoch_seed, make_loader, prototypes_from_sums, seed_everything,
                                   train_epoch, training_prototypes, without_augmentation)
from utils.training.speed import deterministic_mode, uint8_view


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def train(config: RunConfig, load) -> str:
    """Train the run ``config`` describes; ``load(config)`` returns a ``datasets.DataSplits``.  Returns the run folder."""
    with ck.locked_run_dir(config.run_dir, config.resume, config.overwrite) as run_dir, \
            deterministic_mode(config.deterministic):
        finished = record.is_complete(run_dir) and record.load_config(run_dir).get("epochs") == config.epochs
        if config.resume and finished:
            print(f"nothing to do: {run_dir} has finished its {config.epochs} epochs (outputs and end time written); "
                  f"evaluate it with python evaluate.py {run_dir}, or train it again with --overwrite")
            return run_dir
        device = resolve_device(config)
        start = _now()
        data = load_data(config, load)  # bad data stop the run here, before anything is written
        workers = loader_workers(config, data)
        if config.overwrite:
            ck.empty_run_dir(run_dir)
        log = ck.setup_logging(run_dir)
        log.info(f"run {config.run_name} on {device} -> {run_dir}")
        log.info(data.summary())
        for line in data.warnings:
            log.warning(f"warning: {line}")
        try:
            parts = build_parts(config, data, device, log)
        except UserError:  # a backbone that cannot take the images, weights that cannot be had: leave nothing
            if not config.resume:
                ck.empty_run_dir(run_dir)
            raise
        meta = dict(config.as_dict(), run_name=config.run_name, n_classes=data.n_classes, n_train=len(data.train),
                    n_val=None if data.val is None else len(data.val), n_test=len(data.test),
                    split_source=data.split_source, warnings=list(data.warnings), num_workers_used=workers,
                    in_channels=data.in_channels, image_size=data.image_size, initial_scale=parts.head.initial_scale,
                    final_scale=None, mds_stress_initial=parts.mds_stress[0], mds_stress_final=parts.mds_stress[1],
                    best_epoch=None, device_used=str(device), versions=ck.versions(), start_time=start, end_time=None)
        data.hierarchy.to_csv(os.path.join(run_dir, record.HIERARCHY))
        write_dataframe_csv(os.path.join(run_dir, record.SPLIT), data.split_table())
        first_epoch, best_epoch, best_val, history = 1, 0, -math.inf, []
        if config.resume:
            first_epoch, best_epoch, best_val, history = resume(run_dir, parts, log)
            meta["start_time"] = record.load_config(run_dir).get("start_time", start)
        write_json(os.path.join(run_dir, record.CONFIG), meta)

        def loader(split, shuffle=False, seed=0):
            return make_loader(uint8_view(split), config.batch_size, shuffle, workers, device, seed)

        last_path = os.path.join(run_dir, record.CHECKPOINT_LAST)
        if first_epoch == 1:  # the untrained network is the starting point (and the result of --epochs 0)
            ck.save_checkpoint(last_path, parts, 0, 0, best_val)
        epochs = tqdm(range(first_epoch, config.epochs + 1), desc="training", unit="epoch", disable=None)
        for epoch in epochs:
            row = run_epoch(config, parts, data, loader, epoch, device, last_path)
            history.append(row)
            improved = data.val is not None and row["val_acc"] > best_val
            if improved or data.val is None:
                best_epoch, best_val = epoch, (row["val_acc"] if improved else best_val)
            ck.commit_epoch(run_dir, parts, history, epoch, best_epoch, best_val, improved)
            shown = {k: v for k, v in row.items() if v is not None and k != "epoch"}
            log.info(f"epoch {epoch}/{config.epochs} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))
            epochs.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}")

        last_epoch = max(first_epoch - 1, config.epochs)
        best_epoch = last_epoch if data.val is None or best_epoch == 0 else best_epoch
        meta.update(final_scale=None if parts.head.scale is None else float(parts.head.scale))
        meta.update(write_final_outputs(config, parts, data, loader, device, run_dir, best_epoch, last_epoch, log))
        unsettled = unsettled_warning(history, best_epoch, meta["train_acc_eval"])
        if unsettled:
            log.warning(f"warning: {unsettled}")
            meta["warnings"].append(unsettled)
        meta.update(best_epoch=best_epoch, end_time=_now())
        write_json(os.path.join(run_dir, record.CONFIG), meta)
        log.info(f"next: python evaluate.py {run_dir}")
        return run_dir


def script_main(parse_config):
    """A training script's ``main(argv=None)``: parse the flags (``sys.argv`` by default), train with the dataset's
    loader (``datasets/registry.py``), return the run folder; a user error is one line and exit status 2."""
    @exit_on_user_error
    def main(argv=None):
        config = parse_config(sys.argv[1:] if argv is None else argv)
        return train(config, registry.get(config.dataset).load)

    return main


#: The evaluated network's training accuracy below this share of the training pass's is "far below".
UNSETTLED_SHARE = 0.5


def unsettled_warning(history, epoch: int, train_acc_eval: float):
    """A warning when the evaluated network (of ``epoch``) classifies its own training images far worse than the
    training pass of that epoch did (under :data:`UNSETTLED_SHARE` of it), else None.  The usual cause is a
    short run: the BatchNorm running statistics the evaluation uses still lag behind the weights."""
    running = [row["train_acc"] for row in history if row["epoch"] == epoch]
    if not running or train_acc_eval >= UNSETTLED_SHARE * running[-1]:
        return None
    return (f"the evaluated network (epoch {epoch}) classifies {train_acc_eval:.2f} of its training images, the "
            f"training pass {running[-1]:.2f}: train longer (more --epochs, or a higher --lr on small data); the "
            f"BatchNorm statistics have not settled")


def loader_workers(config: RunConfig, data) -> int:
    """``--num_workers``, or by default 0 for training images held in memory without augmentation (a worker
    would only copy slices of a tensor), else the dataset's default (``datasets/registry.py``)."""
    if config.num_workers is not None:
        return config.num_workers
    if data.train.in_memory and data.train.transform is None:
        return 0
    return registry.get(config.dataset).num_workers


def load_data(config: RunConfig, load):
    """The run's data splits, seeded from the run's seed, refused when they cannot train a classifier."""
    seed_everything(config.seed)
    data = load(config)
    if data.n_classes < 2:
        raise UserError(f"{data.name} has {data.n_classes} class; classification needs at least 2 classes")
    if len(data.train) == 0:
        raise UserError(f"{data.name}: the training split is empty; add images or lower the validation/test share")
    return data


def resume(run_dir: str, parts: RunParts, log):
    """``--resume``: the state after the last finished epoch; returns (first epoch, best epoch, best
    validation accuracy, history rows up to that epoch)."""
    state = ck.load_checkpoint(os.path.join(run_dir, record.CHECKPOINT_LAST))
    ck.settle_pending_best(run_dir, state)
    ck.restore(parts, state)
    old = record.load_history(run_dir)
    history = [] if old is None else old[old["epoch"] <= state["epoch"]].to_dict("records")
    log.info(f"resuming after epoch {state['epoch']}")
    return state["epoch"] + 1, state["best_epoch"], state["best_val_acc"], history


def run_epoch(config: RunConfig, parts: RunParts, data, loader, epoch: int, device, last_path: str) -> dict:
    """One epoch: the training pass, then validation (W and this epoch's prototypes) and, with
    ``--test_each_epoch``, test accuracy.  Returns the ``history.csv`` row."""
    t0 = time.time()
    head = parts.head
    seed_everything(epoch_seed(config.seed, epoch))
    try:
        loss, acc, sums, counts = train_epoch(
            parts.step_model, head, loader(data.train, True, epoch_seed(config.seed, epoch)), parts.optimizer,
            parts.scale_optimizer, device, epoch, data.n_classes,
        )
    except FloatingPointError as err:
        raise UserError(f"{err}; stopped, the last good checkpoint is {last_path} (try a lower --lr)") from None
    row = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "val_acc": None, "val_acc_proto": None,
           "test_acc": None, "scale": None if head.scale is None else float(head.scale)}
    if data.val is not None:
        f, y = embed(parts.model, loader(data.val), device, "validation")
        with torch.no_grad():
            row["val_acc"] = accuracy(head.scores(f), y)
            if head.method != "softmax":
                row["val_acc_proto"] = accuracy(head.scores(f, prototypes_from_sums(sums, counts, config.seed)), y)
    if config.test_each_epoch:
        f, y = embed(parts.model, loader(data.test), device, "test")
        with torch.no_grad():
            row["test_acc"] = accuracy(head.scores(f), y)
    row["seconds"] = time.time() - t0
    return row


def write_final_outputs(config, parts, data, loader, device, run_dir, best_epoch, last_epoch, log) -> dict:
    """The ``outputs_*.npz`` files of the evaluated checkpoint (best on validation, else the last; the last
    epoch's test outputs too when they differ).  Returns what config.json records of them."""
    model, head = parts.model, parts.head
    train_eval, test_eval = loader(without_augmentation(data.train)), loader(data.test)
    if best_epoch != last_epoch:
        log.info(f"last epoch {last_epoch}: writing {record.OUTPUTS_TEST_LAST}")
        protos, _ = training_prototypes(model, head, train_eval, device, config.seed)
        ck.write_outputs(os.path.join(run_dir, record.OUTPUTS_TEST_LAST), model, head, protos, test_eval, device,
                         "test (last)")
        ck.restore(parts, ck.load_checkpoint(os.path.join(run_dir, record.CHECKPOINT_BEST)), optimizers=False)
    log.info(f"evaluated checkpoint: epoch {best_epoch}")
    protos, train_acc_eval = training_prototypes(model, head, train_eval, device, config.seed)
    test_acc = ck.write_outputs(os.path.join(run_dir, record.OUTPUTS_TEST), model, head, protos, test_eval, device,
                                "test")
    if data.val is not None:
        ck.write_outputs(os.path.join(run_dir, record.OUTPUTS_VAL), model, head, protos, loader(data.val), device,
                         "validation")
    log.info(f"test accuracy (W) {test_acc:.4f}; record written to {run_dir}")
    w_init_cos = float((parts.initial_W * head.representatives()).sum(1).mean())  # mean cosine, initial vs final rows
    return dict(w_init_cos=w_init_cos, train_acc_eval=train_acc_eval)
