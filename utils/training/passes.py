"""The passes over the data: one training epoch, embedding a split, and the class prototypes.

Every epoch's randomness (data order, augmentation, dropout) is seeded from
``(seed, epoch)`` (:func:`epoch_seed`), so an interrupted run resumed with
``--resume`` ends exactly where the uninterrupted run would.
"""
import copy
import random

import numpy as np
import torch
from tqdm import tqdm

from losses.distances import normalize
from losses.ema import class_means
from utils.training.speed import to_device


def epoch_seed(seed, epoch):
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def without_augmentation(dataset):
    """The same split with its training transform switched off (for prototypes)."""
    if getattr(dataset, "transform", None) is None:
        return dataset
    view = copy.copy(dataset)
    view.transform = None
    return view


def make_loader(dataset, batch_size, shuffle, num_workers, device, seed):
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


def training_prototypes(model, head, train_loader, device, seed):
    """Normalised class means of the normalised training-split embeddings, and the accuracy (W) on that split
    (one eval pass, no augmentation)."""
    f, y = embed(model, train_loader, device, "prototypes")
    with torch.no_grad():
        train_acc = accuracy(head.scores(f), y)
    return prototypes_from_sums(*class_means(f, y, head.n_classes), seed), train_acc
