"""Distances between embeddings and class representatives.

With ``f^ = f/|f|`` and ``w^ = w/|w|``:  ``cos = f^ . w^``,
``d_euc = sqrt(2 - 2 cos)`` (the chord between unit vectors) and
``theta = arccos(clip(cos))`` (the angle).  The clips keep every value and every
gradient finite, so no NaN can come out of a score.
"""
import torch
import torch.nn.functional as F

# Smallest squared chord kept before the square root (its gradient is finite there).
CHORD_SQ_MIN = 1e-12
# arccos is evaluated on [-1 + ARCCOS_CLIP, 1 - ARCCOS_CLIP] (float32-safe).
ARCCOS_CLIP = 1e-6


def normalize(x, dim=-1):
    return F.normalize(x, dim=dim, eps=1e-12)


def cosine(f, W):
    """Cosine similarity of every embedding (rows of ``f``) to every representative (rows of ``W``)."""
    return normalize(f) @ normalize(W).T


def chord_from_cos(cos):
    """``d_euc = sqrt(2 - 2 cos)`` for unit vectors."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=CHORD_SQ_MIN))


def angle_from_cos(cos):
    """``theta = arccos(cos)``, clipped so the gradient stays finite."""
    return torch.arccos(torch.clamp(cos, -1.0 + ARCCOS_CLIP, 1.0 - ARCCOS_CLIP))


def distance_from_cos(cos, distance):
    """The run's distance (``euc``: chord, ``arccos``: angle) from cosines."""
    if distance == "euc":
        return chord_from_cos(cos)
    if distance == "arccos":
        return angle_from_cos(cos)
    raise ValueError(f"distance must be 'euc' or 'arccos', got {distance!r}")


def pairwise_distances(V, distance):
    """Distances between the L2-normalised rows of ``V``; the diagonal is exactly 0."""
    cos = cosine(V, V)
    d = distance_from_cos(cos, distance)
    return d * (1.0 - torch.eye(len(V), dtype=d.dtype, device=d.device))
