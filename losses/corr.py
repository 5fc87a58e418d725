"""CORR loss (``--method DR --mds_W --CORR``).

With the representatives fixed by MDS, the embedding is pulled toward its
class representative: ``sum over the batch of (1 - cos(f^, w^_y))``.
Predictions still use ProxyDR's score.
"""
def corr_loss(cos, labels):
    """``cos``: [N, C] cosines to every representative; ``labels``: [N]."""
    target = cos.gather(1, labels[:, None]).squeeze(1)
    return (1.0 - target).sum()
