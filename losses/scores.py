"""Class scores ``z_c`` of the four methods - each formula once.

All methods predict ``argmax z`` and (except CORR) train with cross-entropy on
``z``.  ``s`` is the scale (a float or a 0-d tensor, already detached where the
method wants it detached).

=========  =========================  ===================================
method     ``euc``                    ``arccos``
=========  =========================  ===================================
softmax    ``f . w_c + b_c`` (unnormalised, no scale, no distance)
normface   ``s cos``                  ``-s theta^2``
ProxyDR    ``-s log d_euc``           ``-s log theta``
=========  =========================  ===================================

ProxyDR's probability ``softmax(z)_c = d_c^-s / sum_k d_k^-s`` is a softmax over
distance ratios.  ``LOG_EPS`` inside the log keeps it finite at distance 0.
"""
import torch

from losses.distances import cosine, distance_from_cos
from utils.angle import angle_from_cos

LOG_EPS = 1e-6
METHODS = ("softmax", "normface", "DR")


def softmax_scores(f, W, b):
    """Softmax baseline: the plain linear layer ``f . w_c + b_c``."""
    return f @ W.T + b


def normface_scores(cos, s, distance):
    """NormFace: ``s cos`` (euc) or ``-s theta^2`` (arccos)."""
    if distance == "euc":
        return s * cos
    return -s * angle_from_cos(cos) ** 2


def proxydr_scores(cos, s, distance):
    """ProxyDR: ``-s log d`` with ``d`` the chord (euc) or the angle (arccos)."""
    return -s * torch.log(distance_from_cos(cos, distance) + LOG_EPS)


def scores(method, f, W, *, s=None, distance="euc", b=None, log_prior=None, cos=None):
    """Scores of ``method`` for embeddings ``f`` against representatives ``W``.

    ``W`` may be the learned representatives or class prototypes: the same score
    function serves both.  ``log_prior`` (``--clspri``) is added to every score.
    ``cos``: ``cosine(f, W)`` when the caller has it already (normface, DR).
    """
    if method in ("normface", "DR") and cos is None:
        cos = cosine(f, W)
    if method == "softmax":
        z = softmax_scores(f, W, b if b is not None else torch.zeros(len(W), device=f.device))
    elif method == "normface":
        z = normface_scores(cos, s, distance)
    elif method == "DR":
        z = proxydr_scores(cos, s, distance)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if log_prior is not None:
        z = z + log_prior
    return z
