"""Distances between embeddings and class representatives.

With ``f^ = f/|f|`` and ``w^ = w/|w|``:  ``cos = f^ . w^``,
``d_euc = sqrt(2 - 2 cos)`` (the chord between unit vectors) and
``theta = arccos(0.999999 clip(cos, -1, 1))`` (the angle, in the paper's form).
The clip and the factor keep every value and every gradient finite, so no NaN
can come out of a score.
"""
import numpy as np
import torch
import torch.nn.functional as F

# Smallest squared chord kept before the square root (its gradient is finite there).
CHORD_SQ_MIN = 1e-12
# The paper's angle multiplies the clipped cosine by this factor before arccos:
# the angle lies in [acos(ANGLE_SHRINK), pi - acos(ANGLE_SHRINK)] = [1.414e-3, pi - 1.414e-3]
# and its derivative is at most 1 / sqrt(1 - ANGLE_SHRINK^2) = 707.
ANGLE_SHRINK = 0.999999


def normalize(x, dim=-1):
    return F.normalize(x, dim=dim, eps=1e-12)


def cosine(f, W):
    """Cosine similarity of every embedding (rows of ``f``) to every representative (rows of ``W``)."""
    return normalize(f) @ normalize(W).T


def chord_from_cos(cos):
    """``d_euc = sqrt(2 - 2 cos)`` for unit vectors."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=CHORD_SQ_MIN))


def angle_from_cos(cos):
    """``theta = arccos(0.999999 clip(cos, -1, 1))``, the paper's angle (torch tensors or numpy arrays).

    It is finite with a finite gradient everywhere; it differs from
    ``arccos(cos)`` by about ``1e-6 cos / sin(theta)`` (5e-6 at 0.2 rad).
    """
    if isinstance(cos, torch.Tensor):
        return torch.arccos(ANGLE_SHRINK * torch.clamp(cos, -1.0, 1.0))
    return np.arccos(ANGLE_SHRINK * np.clip(cos, -1.0, 1.0))


def distance_from_cos(cos, distance):
    """The run's distance (``euc``: chord, ``arccos``: angle) from cosines."""
    if distance == "euc":
        return chord_from_cos(cos)
    if distance == "arccos":
        return angle_from_cos(cos)
    raise ValueError(f"distance must be 'euc' or 'arccos', got {distance!r}")
