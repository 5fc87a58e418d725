"""Backbones: Inception-v3, ResNet-50, ResNet-18 and a small CNN.

Pretrained ImageNet weights come from torchvision's weight enums (never
``torch.hub`` from a code repository).  The first convolution is always replaced
by a freshly initialised one with the right number of input channels
(1 for grayscale), as in the paper.  Inception-v3 has no auxiliary head and no
input transform.  For Inception-v3 the whole first block ``Conv2d_1a_3x3``
(convolution and BatchNorm) is replaced by a fresh one, as the paper's code
does; ResNet gets a fresh ``conv1`` and keeps the pretrained ``bn1``.  Each builder returns ``(module, n_features)``; the module maps
images to a feature vector (its classifier is removed).
"""
import os

import torch
import torch.nn as nn
import torchvision

from utils.errors import UserError

BACKBONES = ("inception", "resnet50", "resnet18", "simple")
PRETRAINED = {
    "inception": torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
}


def _fresh_conv_like(conv, in_channels):
    """A newly initialised ``Conv2d`` with ``conv``'s shape but ``in_channels`` inputs."""
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )


def _fresh_basic_conv_like(block, in_channels):
    """A newly initialised Inception ``BasicConv2d`` (conv + BatchNorm + ReLU) for ``in_channels`` inputs.

    Its BatchNorm starts fresh (weight 1, bias 0, running mean 0, running var 1).
    """
    conv = block.conv
    return torchvision.models.inception.BasicConv2d(
        in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
    )


def _pretrained_state(name):
    """ImageNet weights from torchvision's cache or its download; a clear error offline."""
    weights = PRETRAINED[name]
    try:
        return weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, socket errors, certificate errors ...
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise UserError(
            f"pretrained {name} weights could not be obtained ({type(err).__name__}): put "
            f"{os.path.basename(weights.url)} at {cache} (from {weights.url}), or train from random "
            f"weights with --rand_backbone"
        ) from None


class SimpleCNN(nn.Module):
    """A small CPU-friendly CNN: four conv-BN-ReLU blocks and global average pooling."""

    def __init__(self, in_channels=3, width=32):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 4]
        layers, c_in = [], in_channels
        for i, c_out in enumerate(chans):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.n_features = c_in

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


def build_backbone(name, in_channels=3, pretrained=True):
    """Return ``(backbone, n_features)`` with a fresh first convolution (Inception: first block)."""
    if name == "simple":
        net = SimpleCNN(in_channels)
        return net, net.n_features
    if name not in PRETRAINED:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")

    if name == "inception":
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=False, init_weights=True)
    else:
        net = getattr(torchvision.models, name)(weights=None)
    if pretrained:
        state = _pretrained_state(name)
        if name == "inception":
            state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
        net.load_state_dict(state)

    n_features = net.fc.in_features
    net.fc = nn.Identity()
    if name == "inception":
        net.Conv2d_1a_3x3 = _fresh_basic_conv_like(net.Conv2d_1a_3x3, in_channels)
    else:
        net.conv1 = _fresh_conv_like(net.conv1, in_channels)
    return net, n_features
