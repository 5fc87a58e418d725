"""Scores, losses and representative updates of the four methods, as small pieces.

* ``losses.distances``  cosine, chord and angle (clipped: no NaN)
* ``losses.scores``     the score of softmax, NormFace and ProxyDR (one formula each)
* ``losses.corr``       the CORR loss
* ``losses.scale``      fixed and dynamic scale (initial-scale equations, residual R)
* ``losses.ema``        EMA representatives
* ``losses.mds``        MDS-placed fixed representatives
* ``losses.head``       ``ClassHead``: composes the above for one run
"""
from losses.head import ClassHead
from losses.scores import METHODS

__all__ = ["ClassHead", "METHODS"]
