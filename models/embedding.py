"""The embedding network: backbone, 128-d head and the optional size branch.

``f = Linear(features, 128)(backbone(x))``; with ``--size_inform`` the original
image width and height enter as ``Linear(2, 128)(log [w, h])``, added to ``f``.
The backbone is any name of ``models.backbones.ALL_BACKBONES``; ``image_size``
(the side of the square input images) is needed by ViT and MaxViT and lets
``build_backbone`` refuse a size the backbone cannot take.
"""
import torch
import torch.nn as nn

from models.backbones import build_backbone

EMBEDDING_DIM = 128


class EmbeddingNet(nn.Module):
    def __init__(self, backbone="simple", in_channels=3, pretrained=False, size_inform=False, dim=EMBEDDING_DIM,
                 image_size=None):
        super().__init__()
        self.backbone, n_features = build_backbone(backbone, in_channels, pretrained, image_size=image_size)
        self.head = nn.Linear(n_features, dim)
        self.size_branch = nn.Linear(2, dim) if size_inform else None

    def forward(self, x, wh=None):
        f = self.head(self.backbone(x))
        if self.size_branch is not None:
            f = f + self.size_branch(torch.log(wh))
        return f
