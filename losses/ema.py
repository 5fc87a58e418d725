"""``--ema``: class representatives as exponential moving averages.

``W`` gets no gradient.  After each optimiser step, for every class ``c`` in the
batch, ``m_c`` is the normalised mean of the batch's normalised embeddings of
class ``c`` (from this step's forward pass).  The first time ``c`` is seen
``w_c = m_c``; afterwards ``w_c = normalize(alpha m_c + (1 - alpha) w_c)``.
"""
import torch

from losses.distances import normalize


def class_means(embeddings, labels, n_classes):
    """Per-class sums of normalised embeddings and counts (one ``index_add``)."""
    f = normalize(embeddings.detach())
    sums = torch.zeros(n_classes, f.shape[1], dtype=f.dtype, device=f.device)
    sums.index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=n_classes)
    return sums, counts


@torch.no_grad()
def ema_update(W, seen, embeddings, labels, alpha):
    """Update ``W`` (C x D) and the boolean ``seen`` (C) in place for one batch."""
    sums, counts = class_means(embeddings, labels, len(W))
    present = counts > 0
    m = normalize(sums[present])
    first = ~seen[present]
    old = W[present]
    new = torch.where(first[:, None], m, normalize(alpha * m + (1.0 - alpha) * old))
    W[present] = new.to(W.dtype)
    seen |= present
