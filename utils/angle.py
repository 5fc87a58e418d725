"""The angle between unit vectors in the paper's form, for training and evaluation alike.

``theta = arccos(0.999999 clip(cos, -1, 1))`` on torch tensors (training:
the scores, the dynamic scale, MDS) and on numpy arrays (evaluation: the
representatives' distances), so both sides compute one formula.  It is finite
with a finite gradient everywhere: the angle lies in
``[acos(0.999999), pi - acos(0.999999)] = [1.414e-3, pi - 1.414e-3]`` and its
derivative is at most ``1 / sqrt(1 - 0.999999^2) = 707``.  It differs from
``arccos(cos)`` by about ``1e-6 cos / sin(theta)`` (5e-6 at 0.2 rad).
This module imports neither torch nor anything of the project.
"""
import numpy as np

#: The paper multiplies the clipped cosine by this factor before the arccos.
ANGLE_SHRINK = 0.999999


def angle_from_cos(cos, out=None):
    """``arccos(0.999999 clip(cos, -1, 1))`` of a torch tensor (differentiable) or a numpy array / float.

    ``out`` (numpy only): the array to compute in, e.g. ``cos`` itself, so a
    C x C matrix needs no second copy; the same operations in the same order.
    """
    if hasattr(cos, "arccos"):  # a torch tensor (numpy arrays have no arccos method)
        return (ANGLE_SHRINK * cos.clamp(-1.0, 1.0)).arccos()
    if out is None:
        return np.arccos(ANGLE_SHRINK * np.clip(cos, -1.0, 1.0))
    np.clip(cos, -1.0, 1.0, out=out)
    np.multiply(ANGLE_SHRINK, out, out=out)
    return np.arccos(out, out=out)
