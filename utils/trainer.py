"""The training loop shared by ``train.py``, ``train_cifar100.py`` and ``train_nabirds.py``.

Plain and linear, in the order a run happens:

1. check the options, pick the device, prepare ``record/<run name>/``;
2. load the data (the script's loader), build the network and the head
   (MDS-placed representatives for ``--mds_W``), Adam for both (and a second
   Adam on ``log s`` for ``--dynamic``); resume from ``checkpoint_last.pt``;
3. for each epoch: one training pass (which also accumulates the epoch's
   prototypes), a validation pass with ``--use_val``, one ``history.csv`` row,
   ``checkpoint_last.pt`` (and ``checkpoint_best.pt`` when validation improves);
4. once, for the evaluated checkpoint: prototypes from the training split and
   the ``outputs_*.npz`` files that ``evaluate.py`` reads.

Every epoch's randomness (data order, augmentation, dropout) is seeded from
``(seed, epoch)``, so an interrupted run resumed with ``--resume`` ends exactly
where the uninterrupted run would.
"""
import contextlib
import copy
import datetime
import logging
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import pandas as pd
import torch
import torchvision
from tqdm import tqdm

from datasets import default_data_root
from datasets.common import ImageFileDataset, TensorImageDataset, to_float
from losses.distances import normalize
from losses.ema import class_means
from losses.head import ClassHead
from losses.mds import fit_mds
from losses.scale import solve_initial_scale
from models.embedding import EmbeddingNet
from utils import record
from utils.cli import check_args, resolve_device, run_name
from utils.errors import UserError
from utils.io import torch_save, write_dataframe_csv, write_json
from utils.lock import RunLock, run_files

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "val_acc_proto", "test_acc", "scale", "seconds"]


def _epoch_seed(seed, epoch):
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _setup_logging(run_dir):
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


def without_augmentation(dataset):
    """The same split with its training transform switched off (for prototypes)."""
    if getattr(dataset, "transform", None) is None:
        return dataset
    view = copy.copy(dataset)
    view.transform = None
    return view


def _loader(dataset, batch_size, shuffle, num_workers, device, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )


def class_prior(train_labels, n_classes):
    """Training-split class frequencies; a class with no training image counts as half an image
    (so its log prior, and every score, stays finite)."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    counts = np.maximum(counts, 0.5)
    return counts / counts.sum()


def prototypes_from_sums(sums, counts, seed):
    """Normalised class means; a class with no embedding gets a seeded random unit vector."""
    protos = normalize(sums)
    empty = counts == 0
    if empty.any():
        g = torch.Generator().manual_seed(seed)
        protos[empty] = normalize(torch.randn(int(empty.sum()), sums.shape[1], generator=g)).to(protos)
    return protos


# ----------------------------------------------------------------------------- speed
def uint8_view(dataset):
    """The same split yielding uint8 images, converted on the training device by :func:`to_device`.

    Only for in-memory or on-disk images with no transform and no resize (the
    conversion is then the same elementwise ``to_float``, so results are
    bit-identical); other datasets are returned as they are.
    """
    if not isinstance(dataset, (ImageFileDataset, TensorImageDataset)) or dataset.transform is not None:
        return dataset
    if isinstance(dataset, TensorImageDataset) and dataset.resize is not None \
            and tuple(dataset.images.shape[-2:]) != (dataset.resize, dataset.resize):
        return dataset
    view = copy.copy(dataset)
    view.yield_uint8 = True
    return view


def to_device(x, device):
    """A batch of images on ``device`` (non-blocking), uint8 converted to float there."""
    x = x.to(device, non_blocking=True)
    return to_float(x) if x.dtype == torch.uint8 else x


def compile_model(model, device):
    """``--compile``: the network under ``torch.compile``; the head, EMA and scale stay eager.

    CUDA: ``mode="reduce-overhead"`` (CUDA-graph replay; the last, smaller batch
    of an epoch records its own graph).  CPU: the ``aot_eager`` backend (traced,
    no code generation: inductor's C++ build is slow on a few cores and buys
    little there).  ``dynamic=False``: one graph per batch shape.  Checkpoints
    always hold the uncompiled module's state (no ``_orig_mod.`` prefix).
    """
    if device.type == "cuda":
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
    else:
        compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    compiled.cuda_graphs = device.type == "cuda"
    return compiled


@contextlib.contextmanager
def deterministic_mode(on):
    """``--deterministic``: deterministic kernels, cuDNN benchmark off, the cuBLAS workspace setting.

    The previous settings come back afterwards (tests train in one process).
    """
    if not on:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS: set before it starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


# ----------------------------------------------------------------------------- passes
#: The non-finite-loss flag lives on the device and is read every this many steps (and at the epoch's end).
CHECK_EVERY = 50


def _stop_if_non_finite(first_bad, epoch):
    step = int(first_bad)  # the one host-device synchronisation
    if step:
        raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {step}")


def train_epoch(model, head, loader, optimizer, scale_optimizer, device, epoch, n_classes):
    """One training pass.  Returns (mean loss, accuracy, prototype sums, counts).

    Nothing in a step waits for the device: the loss, accuracy and prototype
    sums accumulate there.  A non-finite loss is flagged on the device (the
    first bad step) and read every ``CHECK_EVERY`` steps and at the end; the
    steps after it are not undone, so the epoch is discarded (FloatingPointError
    naming the epoch and the first bad step; the caller keeps the previous
    epoch's checkpoint).
    """
    model.train()
    head.train()
    mark_step = getattr(model, "cuda_graphs", False)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    first_bad = torch.zeros((), dtype=torch.long, device=device)  # 0: every loss finite so far
    sums = torch.zeros(n_classes, head.dim, device=device)
    counts = torch.zeros(n_classes, dtype=torch.long, device=device)
    n_seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, unit="batch", disable=None)
    for step, (x, y, wh) in enumerate(bar):
        x, y, wh = to_device(x, device), y.to(device, non_blocking=True), wh.to(device, non_blocking=True)
        if mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        f = model(x, wh)
        loss, z, cos = head.loss(f, y)
        loss_d = loss.detach()
        first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss_d), step + 1, first_bad)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        f = f.detach()
        head.after_step(f, z, cos, y, scale_optimizer)
        loss_sum += loss_d
        correct += (z.detach().argmax(1) == y).sum()
        batch_sums, batch_counts = class_means(f, y, n_classes)
        sums += batch_sums
        counts += batch_counts
        n_seen += len(y)
        if (step + 1) % CHECK_EVERY == 0:
            _stop_if_non_finite(first_bad, epoch)
    _stop_if_non_finite(first_bad, epoch)
    n_batches = max(len(loader), 1)
    return float(loss_sum) / n_batches, float(correct) / max(n_seen, 1), sums, counts


@torch.no_grad()
def embed(model, loader, device, desc):
    """Raw embeddings and labels of a whole split (eval mode)."""
    model.eval()
    feats, labels = [], []
    for x, y, wh in tqdm(loader, desc=desc, leave=False, unit="batch", disable=None):
        feats.append(model(to_device(x, device), wh.to(device)))
        labels.append(y.to(device))
    if not feats:
        return torch.zeros(0, model.head.out_features, device=device), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(feats), torch.cat(labels)


def accuracy(z, y):
    return float((z.argmax(1) == y).float().mean()) if len(y) else float("nan")


# ----------------------------------------------------------------------------- records
def _checkpoint(model, head, optimizer, scale_optimizer, epoch, best_epoch, best_val):
    return {
        "model": model.state_dict(),
        "head": head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scale_optimizer": None if scale_optimizer is None else scale_optimizer.state_dict(),
        "epoch": epoch,
        "best_epoch": best_epoch,
        "best_val_acc": best_val,
        "scale": None if head.scale is None else float(head.scale),
    }


def _load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path} ({type(err).__name__}); remove it or start over with --overwrite") from None


def _versions():
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__}


def _check_run_dir(args, name):
    """The run folder, checked against --resume/--overwrite; nothing is created or removed yet."""
    run_dir = os.path.join(args.record_dir, name)
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UserError(f"{run_dir} exists and is not a folder; remove it or choose another --record_dir")
    exists = run_files(run_dir)
    if args.resume:
        if not os.path.isfile(os.path.join(run_dir, record.CHECKPOINT_LAST)):
            raise UserError(f"--resume: {run_dir} has no {record.CHECKPOINT_LAST}; start the run without --resume")
    elif exists and not args.overwrite:
        raise UserError(
            f"{run_dir} already holds a run; continue it with --resume, replace it with --overwrite, "
            f"or change --seed/--record_dir"
        )
    return run_dir


def _make_run_dir(args, run_dir):
    """Create the run folder (emptied first with --overwrite) once the data have loaded."""
    if args.overwrite and os.path.isdir(run_dir):
        for entry in run_files(run_dir):  # all but the lock this process holds
            path = os.path.join(run_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {run_dir} ({err.strerror}); choose a writable --record_dir") from None


def training_prototypes(model, head, train_loader, device, seed):
    """Normalised class means of the normalised training-split embeddings, and the accuracy (W) on that split
    (one eval pass, no augmentation)."""
    f, y = embed(model, train_loader, device, "prototypes")
    with torch.no_grad():
        train_acc = accuracy(head.scores(f), y)
    return prototypes_from_sums(*class_means(f, y, head.n_classes), seed), train_acc


def write_outputs(path, model, head, prototypes, eval_loader, device, split):
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


# ----------------------------------------------------------------------------- main
def train(args, load_data, default_workers=4, script_dir=None):
    """Run one training job (see :func:`_train`) holding the run folder's lock (one writer per run;
    utils/lock.py), under ``--deterministic`` when asked."""
    check_args(args)
    run_dir = os.path.join(args.record_dir, run_name(args))
    created = [d for d in (run_dir, args.record_dir) if not os.path.isdir(d)]
    lock = RunLock(run_dir).acquire()
    try:
        with deterministic_mode(getattr(args, "deterministic", False)):
            return _train(args, load_data, default_workers, script_dir)
    finally:
        if os.path.isdir(run_dir) and not run_files(run_dir):  # nothing was written (bad data): leave no folder
            with contextlib.suppress(OSError):
                os.remove(lock.path)
                for folder in created:  # the run folder, then the record folder if this run made it
                    os.rmdir(folder)
        lock.release()


def _train(args, load_data, default_workers=4, script_dir=None):
    """Run one training job.  ``load_data(args)`` returns a ``datasets.DataSplits``.

    ``args.data_root`` defaults to ``DATA_init`` of a ``config.json`` in
    ``script_dir`` (the training scripts' folder), else ``./data``.
    """
    if args.data_root is None:  # args were checked by train()
        args.data_root = default_data_root(script_dir or os.curdir)
    name = run_name(args)
    run_dir = _check_run_dir(args, name)
    device = resolve_device(args)
    num_workers = default_workers if args.num_workers is None else args.num_workers
    start = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    # Bad data stop the run here, before anything is written.
    seed_everything(args.seed)
    data = load_data(args)
    hierarchy = data.hierarchy
    C = hierarchy.n_classes
    if C < 2:
        raise UserError(f"{data.name} has {C} class; classification needs at least 2 classes")
    if len(data.train) == 0:
        raise UserError(f"{data.name}: the training split is empty; add images or lower the validation/test share")
    _make_run_dir(args, run_dir)
    log = _setup_logging(run_dir)
    log.info(f"run {name} on {device} -> {run_dir}")
    log.info(data.summary())

    # The network and head are initialised from the seed alone (not from data loading).
    seed_everything(args.seed)
    model = EmbeddingNet(args.backbone, data.in_channels, pretrained=not args.rand_backbone,
                         size_inform=args.size_inform).to(device)
    fixed_W, stress0, stress1 = None, None, None
    if args.mds_W:
        target = hierarchy.transformed_distances(args.distance, args.beta)
        g = torch.Generator().manual_seed(args.seed)
        fixed_W, stress0, stress1 = fit_mds(target, model.head.out_features, args.distance, generator=g)
        log.info(f"MDS representatives: stress {stress0:.4f} -> {stress1:.4f}")
    prior = class_prior(data.train_labels, C) if args.clspri else None
    head = ClassHead(C, model.head.out_features, method=args.method, distance=args.distance, dynamic=args.dynamic,
                     scale_update=getattr(args, "scale_update", "equations"), ema=args.ema, alpha=args.alpha, corr=args.CORR, fixed_W=fixed_W, class_prior=prior,
                     generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    initial_W = head.representatives().clone()  # for w_init_cos (how far W moved)
    if head.initial_scale is not None:
        log.info(f"initial scale s = {head.initial_scale:.4f}" + (" (dynamic)" if args.dynamic else ""))
        if args.dynamic and not solve_initial_scale(args.method, args.distance, C)[1]:
            log.info(f"notice: with {C} classes the initial-scale equation of {args.method}-{args.distance} has no "
                     f"positive root; starting from the scale with the smallest residual")
    optimizer = torch.optim.Adam(list(model.parameters()) + head.main_parameters(), lr=args.lr)
    scale_optimizer = torch.optim.Adam([head.log_s], lr=args.lr) if args.dynamic else None
    step_model = compile_model(model, device) if getattr(args, "compile", False) else model  # checkpoints: model

    config = {key: value for key, value in vars(args).items()}
    config.update(
        run_name=name, n_classes=C, n_train=len(data.train), n_val=None if data.val is None else len(data.val),
        n_test=len(data.test), in_channels=data.in_channels, image_size=data.image_size,
        initial_scale=head.initial_scale, final_scale=None, mds_stress_initial=stress0, mds_stress_final=stress1,
        best_epoch=None, device=str(device), num_workers_used=num_workers, versions=_versions(),
        start_time=start, end_time=None,
    )
    hierarchy.to_csv(os.path.join(run_dir, record.HIERARCHY))
    write_dataframe_csv(os.path.join(run_dir, record.SPLIT), data.split_table())

    first_epoch, best_epoch, best_val = 1, 0, -math.inf
    history = []
    if args.resume:
        ck = _load_checkpoint(os.path.join(run_dir, record.CHECKPOINT_LAST))
        model.load_state_dict(ck["model"])
        head.load_state_dict(ck["head"])
        optimizer.load_state_dict(ck["optimizer"])
        if scale_optimizer is not None and ck["scale_optimizer"] is not None:
            scale_optimizer.load_state_dict(ck["scale_optimizer"])
        first_epoch, best_epoch, best_val = ck["epoch"] + 1, ck["best_epoch"], ck["best_val_acc"]
        old = record.load_history(run_dir)
        if old is not None:
            history = old[old["epoch"] <= ck["epoch"]].to_dict("records")
        previous = record.load_config(run_dir)
        config["start_time"] = previous.get("start_time", start)
        log.info(f"resuming after epoch {ck['epoch']}")
    write_json(os.path.join(run_dir, record.CONFIG), config)

    def loader(split, shuffle, seed):
        return _loader(uint8_view(split), args.batch_size, shuffle, num_workers, device, seed)

    last_path = os.path.join(run_dir, record.CHECKPOINT_LAST)
    best_path = os.path.join(run_dir, record.CHECKPOINT_BEST)
    if first_epoch == 1:  # the untrained network is the starting point (and the result of --epochs 0)
        torch_save(last_path, _checkpoint(model, head, optimizer, scale_optimizer, 0, 0, best_val))

    epochs = tqdm(range(first_epoch, args.epochs + 1), desc="training", unit="epoch", disable=None)
    for epoch in epochs:
        t0 = time.time()
        seed_everything(_epoch_seed(args.seed, epoch))
        try:
            loss, acc, sums, counts = train_epoch(
                step_model, head, loader(data.train, True, _epoch_seed(args.seed, epoch)), optimizer, scale_optimizer,
                device, epoch, C,
            )
        except FloatingPointError as err:
            raise UserError(f"{err}; stopped, the last good checkpoint is {last_path} (try a lower --lr)") from None
        row = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "val_acc": None, "val_acc_proto": None,
               "test_acc": None, "scale": None if head.scale is None else float(head.scale)}
        if data.val is not None:
            f, y = embed(model, loader(data.val, False, 0), device, "validation")
            with torch.no_grad():
                row["val_acc"] = accuracy(head.scores(f), y)
                if head.method != "softmax":
                    protos = prototypes_from_sums(sums, counts, args.seed)
                    row["val_acc_proto"] = accuracy(head.scores(f, protos), y)
        if args.test_each_epoch:
            f, y = embed(model, loader(data.test, False, 0), device, "test")
            with torch.no_grad():
                row["test_acc"] = accuracy(head.scores(f), y)
        row["seconds"] = time.time() - t0
        history.append(row)

        improved = data.val is not None and row["val_acc"] > best_val
        if improved or data.val is None:
            best_epoch, best_val = epoch, (row["val_acc"] if improved else best_val)
        ck = _checkpoint(model, head, optimizer, scale_optimizer, epoch, best_epoch, best_val)
        if improved:
            torch_save(best_path, ck)
        torch_save(last_path, ck)
        write_dataframe_csv(os.path.join(run_dir, record.HISTORY), pd.DataFrame(history, columns=HISTORY_COLUMNS))
        shown = {k: v for k, v in row.items() if v is not None and k != "epoch"}
        log.info(f"epoch {epoch}/{args.epochs} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        epochs.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")

    # ---- outputs for the evaluated checkpoint (best on validation, else the last)
    last_epoch = max(first_epoch - 1, args.epochs)
    if data.val is None or best_epoch == 0:
        best_epoch = last_epoch
    train_eval = loader(without_augmentation(data.train), False, 0)
    test_eval = loader(data.test, False, 0)
    final_scale = None if head.scale is None else float(head.scale)
    if best_epoch != last_epoch:
        log.info(f"last epoch {last_epoch}: writing {record.OUTPUTS_TEST_LAST}")
        protos, _ = training_prototypes(model, head, train_eval, device, args.seed)
        write_outputs(os.path.join(run_dir, record.OUTPUTS_TEST_LAST), model, head, protos, test_eval, device,
                      "test (last)")
        best = _load_checkpoint(best_path)
        model.load_state_dict(best["model"])
        head.load_state_dict(best["head"])
    log.info(f"evaluated checkpoint: epoch {best_epoch}")
    protos, train_acc_eval = training_prototypes(model, head, train_eval, device, args.seed)
    test_acc = write_outputs(os.path.join(run_dir, record.OUTPUTS_TEST), model, head, protos, test_eval, device, "test")
    if data.val is not None:
        write_outputs(os.path.join(run_dir, record.OUTPUTS_VAL), model, head, protos, loader(data.val, False, 0),
                      device, "validation")
    w_init_cos = float((initial_W * head.representatives()).sum(1).mean())  # mean cosine, initial vs final rows
    config.update(final_scale=final_scale, best_epoch=best_epoch, w_init_cos=w_init_cos, train_acc_eval=train_acc_eval,
                  end_time=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    write_json(os.path.join(run_dir, record.CONFIG), config)
    log.info(f"test accuracy (W) {test_acc:.4f}; record written to {run_dir}")
    log.info(f"next: python evaluate.py {run_dir}")
    return run_dir
