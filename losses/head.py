"""The classification head: class representatives ``W``, the scale and the loss.

``ClassHead`` composes the pieces of this package for one run:

* ``scores(f, reps)``   the method's score (``losses.scores``), scale and prior included;
* ``loss(f, labels)``    cross-entropy on the scores, or the CORR loss;
* ``after_step(...)``    what happens after each optimiser step: the EMA update
  of ``W`` (``losses.ema``) and one step of the dynamic scale (``losses.scale``).

Representatives: normface/DR start from normalised Gaussian rows (scores use
normalised ``W``); softmax uses Gaussian ``W`` plus a zero bias.  With
``--ema`` or ``--mds_W``, ``W`` is a buffer (no gradient).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from losses.corr import corr_loss
from losses.distances import cosine, normalize
from losses.ema import ema_update
from losses.scale import FIXED_SCALE, SCALE_UPDATES, b_scale, dynamic_scale_objective, solve_initial_scale
from losses.scores import scores


class ClassHead(nn.Module):
    def __init__(
        self,
        n_classes,
        dim=128,
        *,
        method="DR",
        distance="euc",
        dynamic=False,
        scale_update="equations",
        ema=False,
        alpha=0.01,
        corr=False,
        fixed_W=None,
        class_prior=None,
        generator=None,
    ):
        super().__init__()
        self.method, self.distance = method, distance
        self.n_classes, self.dim = n_classes, dim
        self.dynamic, self.ema, self.alpha, self.corr = dynamic, ema, alpha, corr
        if scale_update not in SCALE_UPDATES:
            raise ValueError(f"scale_update must be one of {SCALE_UPDATES}, got {scale_update!r}")
        self.scale_update = scale_update

        W = torch.randn(n_classes, dim, generator=generator)
        if method != "softmax":
            W = normalize(W)
        if fixed_W is not None:
            W = torch.as_tensor(fixed_W, dtype=torch.float32).clone()
        if ema or fixed_W is not None:
            self.register_buffer("W", W)
        else:
            self.W = nn.Parameter(W)
        self.register_buffer("seen", torch.zeros(n_classes, dtype=torch.bool))  # EMA: classes seen
        self.b = nn.Parameter(torch.zeros(n_classes)) if method == "softmax" else None

        if class_prior is not None:
            prior = torch.as_tensor(class_prior, dtype=torch.float32)
            self.register_buffer("prior", prior)
            self.register_buffer("log_prior", torch.log(prior))
        else:
            self.prior = self.log_prior = None

        if method == "softmax":
            self.log_s = None
            self.initial_scale, self.initial_scale_is_root = None, True
        else:
            # The initial scale of the paper's equations (losses/scale.py) in both --scale_update modes;
            # ``initial_scale_is_root``: False where the equation has no positive root (few classes).
            s0, is_root = solve_initial_scale(method, distance, n_classes) if dynamic else (FIXED_SCALE, True)
            self.initial_scale, self.initial_scale_is_root = s0, is_root
            # ``log s`` is a parameter only for --dynamic, and has its own optimiser.
            self.log_s = nn.Parameter(torch.tensor(math.log(s0)), requires_grad=dynamic)

    # ----------------------------------------------------------------- scores
    @property
    def scale(self):
        """The current scale as a detached tensor (None for softmax)."""
        return None if self.log_s is None else self.log_s.detach().exp()

    def representatives(self):
        """``W`` with L2-normalised rows (what the records store)."""
        return normalize(self.W.detach())

    def scores(self, f, reps=None, cos=None):
        """Scores of embeddings ``f`` against ``reps`` (default: ``W``); ``cos`` if already computed."""
        reps = self.W if reps is None else reps
        return scores(
            self.method, f, reps, s=self.scale, distance=self.distance, b=self.b, log_prior=self.log_prior, cos=cos
        )

    def main_parameters(self):
        """Parameters trained by the main loss (``W`` unless EMA/MDS, and the softmax bias)."""
        return [p for name, p in self.named_parameters() if name != "log_s" and p.requires_grad]

    # ------------------------------------------------------------------- loss
    def loss(self, f, labels):
        """Return ``(loss, z, cos)`` for a batch.

        The loss is the batch mean of the cross-entropy, or the batch sum of the
        CORR loss; ``z`` are the scores and ``cos`` the cosines to ``W`` (None
        for softmax), kept for :meth:`after_step`.
        """
        cos = None if self.method == "softmax" else cosine(f, self.W)
        z = self.scores(f, cos=cos)
        if self.corr:
            return corr_loss(cos, labels), z, cos
        return F.cross_entropy(z, labels), z, cos

    # ------------------------------------------------------------ after a step
    def after_step(self, f, z, cos, labels, scale_optimizer=None):
        """One dynamic-scale step and the EMA update of ``W``, from this step's forward pass."""
        if self.dynamic:
            with torch.no_grad():
                s = self.scale
                s_B = b_scale(s, self.method, self.distance, self.scale_update)
                if s_B is not s:  # paper_code DR-euc scores B at another scale
                    z = scores(self.method, f, self.W, s=s_B, distance=self.distance, log_prior=self.log_prior,
                               cos=cos)
                z_free = z.detach().scatter(1, labels[:, None], float("-inf"))
                cos_target = cos.detach().gather(1, labels[:, None]).squeeze(1)
                prior_target = None if self.prior is None else self.prior[labels]
            objective = dynamic_scale_objective(
                self.log_s, z_free, cos_target, prior_target, self.method, self.distance, self.scale_update
            )
            scale_optimizer.zero_grad()
            objective.backward()
            scale_optimizer.step()
        if self.ema:
            ema_update(self.W, self.seen, f, labels, self.alpha)
