"""Distances between embeddings and class representatives.

With ``f^ = f/|f|`` and ``w^ = w/|w|``:  ``cos = f^ . w^``,
``d_euc = sqrt(2 - 2 cos)`` (the chord between unit vectors) and
``theta = arccos(0.999999 clip(cos, -1, 1))`` (the angle, in the paper's form:
:func:`utils.angle.angle_from_cos`).  The clips keep every value and every
gradient finite, so no NaN can come out of a score.
"""
import torch
import torch.nn.functional as F

from utils.angle import angle_from_cos

# Smallest squared chord kept before the square root (its gradient is finite there).
CHORD_SQ_MIN = 1e-12


def normalize(x, dim=-1):
    return F.normalize(x, dim=dim, eps=1e-12)


def cosine(f, W):
    """Cosine similarity of every embedding (rows of ``f``) to every representative (rows of ``W``)."""
    return normalize(f) @ normalize(W).T


def chord_from_cos(cos):
    """``d_euc = sqrt(2 - 2 cos)`` for unit vectors."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=CHORD_SQ_MIN))


def distance_from_cos(cos, distance):
    """The run's distance (``euc``: chord, ``arccos``: angle) from cosines."""
    if distance == "euc":
        return chord_from_cos(cos)
    if distance == "arccos":
        return angle_from_cos(cos)
    raise ValueError(f"distance must be 'euc' or 'arccos', got {distance!r}")
