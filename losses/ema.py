"""``--ema``: class representatives as exponential moving averages.

``W`` gets no gradient.  After each optimiser step, for every class ``c`` in the
batch, ``m_c`` is the normalised mean of the batch's normalised embeddings of
class ``c`` (from this step's forward pass).  The first time ``c`` is seen
``w_c = m_c``; afterwards ``w_c = normalize(alpha m_c + (1 - alpha) w_c)``.

The update runs over all ``C`` rows with ``torch.where`` (no boolean-mask
indexing), so on a GPU it never waits for the device.
"""
import torch
import torch.nn.functional as F

from losses.distances import normalize


def class_means(embeddings, labels, n_classes, deterministic=None):
    """Per-class sums of normalised embeddings and counts.

    One ``index_add_`` by default.  ``index_add_`` adds with atomics on CUDA (the
    order, and so the last bits, vary from run to run); ``deterministic`` (default:
    on a CUDA tensor while ``torch.use_deterministic_algorithms`` is on) sums with a
    one-hot matrix product instead, whose order is fixed.
    """
    f = normalize(embeddings.detach())
    if deterministic is None:
        deterministic = f.is_cuda and torch.are_deterministic_algorithms_enabled()
    if deterministic:
        one_hot = F.one_hot(labels, n_classes)
        return one_hot.to(f.dtype).T @ f, one_hot.sum(0)
    sums = torch.zeros(n_classes, f.shape[1], dtype=f.dtype, device=f.device)
    sums.index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=n_classes)
    return sums, counts


@torch.no_grad()
def ema_update(W, seen, embeddings, labels, alpha):
    """Update ``W`` (C x D) and the boolean ``seen`` (C) in place for one batch."""
    sums, counts = class_means(embeddings, labels, len(W))
    present = (counts > 0)[:, None]
    m = normalize(sums)  # rows of absent classes are zero and stay unused
    new = torch.where(seen[:, None], normalize(alpha * m + (1.0 - alpha) * W), m)
    W.copy_(torch.where(present, new.to(W.dtype), W))
    seen |= present[:, 0]
