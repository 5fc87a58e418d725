"""Backbones: the paper's Inception-v3 and ResNet-50, ResNet-18, a small CNN, and any torchvision classifier.

Pretrained ImageNet weights come from torchvision's weight enums (never
``torch.hub`` from a code repository).  The first convolution is always replaced
by a freshly initialised one with the right number of input channels
(1 for grayscale), as in the paper.  Inception-v3 has no auxiliary head and no
input transform.  For Inception-v3 the whole first block ``Conv2d_1a_3x3``
(convolution and BatchNorm) is replaced by a fresh one, as the paper's code
does; ResNet gets a fresh ``conv1`` and keeps the pretrained ``bn1``.  Each builder returns ``(module, n_features)``; the module maps
images to a feature vector (its classifier is removed).

Any other name of ``torchvision.models.list_models(module=torchvision.models)``
(:data:`TORCHVISION_NAMES`) is built by the ResNet rule: the torchvision model
with its ImageNet weights (the enum's ``IMAGENET1K_V1`` where it has one, as for
the paper's two backbones, else its ``DEFAULT``; :func:`pretrained_weights`),
its first convolution replaced by a fresh ``Conv2d`` of the same shape for the
channel count (everything after it, BatchNorm included, keeps its weights), and
its final ImageNet ``Linear`` (1000 outputs) replaced by ``Identity``, so that
the embedding head ``Linear(n_features, 128)`` takes its place.  Layers before
that ``Linear`` (VGG's and AlexNet's fully connected layers, dropout,
ConvNeXt's LayerNorm) stay.  Per family (:data:`FAMILIES`; module paths in the
torchvision model):

===================================  ===================  ====================  =========================
family (names starting with)         first layer          classifier            n_features (smallest)
===================================  ===================  ====================  =========================
``alexnet``                          ``features.0``       ``classifier.6``      4096
``convnext_``                        ``features.0.0``     ``classifier.2``      768 (tiny)
``densenet``                         ``features.conv0``   ``classifier``        1024 (121)
``efficientnet_`` (b0-b7, v2)        ``features.0.0``     ``classifier.1``      1280 (b0)
``googlenet``                        ``conv1.conv``       ``fc``                1024
``inception_v3`` (= ``inception``)   ``Conv2d_1a_3x3``    ``fc``                2048
                                     (whole block)
``maxvit_``                          ``stem.0.0``         ``classifier.5``      512
``mnasnet``                          ``layers.0``         ``classifier.1``      1280
``mobilenet_v2``                     ``features.0.0``     ``classifier.1``      1280
``mobilenet_v3_``                    ``features.0.0``     ``classifier.3``      1024 (small)
``regnet_``                          ``stem.0``           ``fc``                400 (x_400mf)
``resnet``, ``resnext``,             ``conv1``            ``fc``                512 (18)
``wide_resnet``
``shufflenet_v2_``                   ``conv1.0``          ``fc``                1024
``squeezenet``                       ``features.0``       ``classifier``        512
                                                          (-> average pooling)
``swin_`` (v1, v2)                   ``features.0.0``     ``head``              768 (t)
``vgg``                              ``features.0``       ``classifier.6``      4096
``vit_``                             ``conv_proj``        ``heads.head``        768 (b)
===================================  ===================  ====================  =========================

GoogLeNet, like Inception-v3, is built without its auxiliary heads and input
transform.  SqueezeNet classifies with a convolution; its classifier becomes a
global average pooling of the 512 feature maps.  Two families fix the image
size when they are built, so they need ``image_size``: ViT (a multiple of its
patch size, 14, 16 or 32; pretrained position embeddings are interpolated to
the size by torchvision's ``interpolate_embeddings``) and MaxViT (every stage's
feature map must divide into 7 x 7 windows: 224 works).  Given ``image_size``,
any torchvision backbone is tried once on a blank image, so that a size it
cannot take is refused in one line before training starts.
"""
import os

import torch
import torch.nn as nn
import torchvision

from utils.errors import UserError, did_you_mean

BACKBONES = ("inception", "resnet50", "resnet18", "simple")
PRETRAINED = {
    "inception": torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
}

#: Every torchvision classification model name (``--backbone`` accepts each).
TORCHVISION_NAMES = tuple(torchvision.models.list_models(module=torchvision.models))

#: Every accepted backbone name: the paper's and the small ones first, then torchvision's others.
ALL_BACKBONES = BACKBONES + tuple(n for n in TORCHVISION_NAMES if n not in BACKBONES)

#: Name prefix -> (module path of the first convolution, of the ImageNet classifier); see the module docstring.
FAMILIES = {
    "alexnet": ("features.0", "classifier.6"),
    "convnext_": ("features.0.0", "classifier.2"),
    "densenet": ("features.conv0", "classifier"),
    "efficientnet_": ("features.0.0", "classifier.1"),
    "googlenet": ("conv1.conv", "fc"),
    "inception_v3": ("Conv2d_1a_3x3", "fc"),
    "maxvit_": ("stem.0.0", "classifier.5"),
    "mnasnet": ("layers.0", "classifier.1"),
    "mobilenet_v2": ("features.0.0", "classifier.1"),
    "mobilenet_v3_": ("features.0.0", "classifier.3"),
    "regnet_": ("stem.0", "fc"),
    "resnet": ("conv1", "fc"),
    "resnext": ("conv1", "fc"),
    "wide_resnet": ("conv1", "fc"),
    "shufflenet_v2_": ("conv1.0", "fc"),
    "squeezenet": ("features.0", "classifier"),
    "swin_": ("features.0.0", "head"),
    "vgg": ("features.0", "classifier.6"),
    "vit_": ("conv_proj", "heads.head"),
}

#: Auxiliary heads left out (their pretrained weights are dropped).
_AUX_PREFIXES = {"googlenet": ("aux1.", "aux2.")}


def family(name):
    """The :data:`FAMILIES` key of a torchvision name (its longest matching prefix), or None."""
    keys = [k for k in FAMILIES if name.startswith(k)]
    return max(keys, key=len) if keys else None


def check_backbone_name(name):
    """``name`` when it is a backbone (:data:`ALL_BACKBONES`), else a UserError with the nearest names."""
    if name in ALL_BACKBONES:
        return name
    raise UserError(f"unknown backbone {name!r}{did_you_mean(name, ALL_BACKBONES)}; choose {', '.join(BACKBONES)} "
                    "or any torchvision.models classification model name (torchvision.models.list_models())")


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


def pretrained_weights(name):
    """The torchvision weight enum member of backbone ``name`` (see the module docstring)."""
    if name == "inception_v3":
        name = "inception"
    if name in PRETRAINED:
        return PRETRAINED[name]
    weights = torchvision.models.get_model_weights(name)
    return getattr(weights, "IMAGENET1K_V1", None) or weights.DEFAULT


def _pretrained_state(name):
    """ImageNet weights from torchvision's cache or its download; a clear error offline."""
    weights = pretrained_weights(name)
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


def build_backbone(name, in_channels=3, pretrained=True, image_size=None):
    """Return ``(backbone, n_features)`` with a fresh first convolution (Inception: first block).

    ``image_size``: the side of the (square) input images; ViT and MaxViT need
    it, and with it a torchvision backbone is checked to take such images.
    """
    if name == "simple":
        net = SimpleCNN(in_channels)
        return net, net.n_features
    check_backbone_name(name)
    if name not in PRETRAINED and name != "inception_v3":
        return _build_torchvision(name, in_channels, pretrained, image_size)
    name = "inception" if name == "inception_v3" else name

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
    if image_size is not None:
        _check_input_size(net, name, in_channels, image_size)
    return net, n_features


def _size_arguments(name, image_size):
    """Constructor arguments fixing the image size (ViT, MaxViT); a UserError for a size they cannot take."""
    fam = family(name)
    if fam not in ("vit_", "maxvit_"):
        return {}
    if image_size is None:
        raise UserError(f"backbone {name} is built for one image size; give the image size (--resize)")
    if fam == "vit_":
        patch = int(name.rsplit("_", 1)[1])
        if image_size % patch:
            raise UserError(f"backbone {name} cuts images into {patch} x {patch} patches; use a --resize that is a "
                            f"multiple of {patch} (got {image_size}; its ImageNet weights are for 224)")
        return {"image_size": int(image_size)}
    return {"input_size": (int(image_size), int(image_size))}


def _build_torchvision(name, in_channels, pretrained, image_size):
    """Any torchvision classifier by the ResNet rule (module docstring): fresh first conv, classifier removed."""
    fam = family(name)
    if fam is None:
        raise UserError(f"backbone {name} is a torchvision model this project has no first-layer rule for; "
                        f"choose another (models/backbones.py lists the families)")
    kwargs = _size_arguments(name, image_size)
    if fam == "googlenet":
        kwargs.update(aux_logits=False, transform_input=False, init_weights=True)
    try:
        net = torchvision.models.get_model(name, weights=None, **kwargs)
    except ValueError as err:  # MaxViT: feature maps that do not divide into its windows
        reason = " ".join(str(err).split())
        raise UserError(f"backbone {name} cannot take {image_size} x {image_size} images ({reason}); "
                        "use --resize 224") from None
    if pretrained:
        state = _pretrained_state(name)
        drop = _AUX_PREFIXES.get(fam, ())
        state = {k: v for k, v in state.items() if not k.startswith(drop)} if drop else state
        if fam == "vit_" and state["encoder.pos_embedding"].shape != net.encoder.pos_embedding.shape:
            from torchvision.models.vision_transformer import interpolate_embeddings

            state = interpolate_embeddings(net.image_size, net.patch_size, dict(state))  # it writes into the dict
        net.load_state_dict(state)

    first, classifier = FAMILIES[fam]
    if fam == "squeezenet":
        n_features = net.classifier[1].in_channels
        net.classifier = nn.AdaptiveAvgPool2d(1)
    else:
        n_features = net.get_submodule(classifier).in_features
        _set_submodule(net, classifier, nn.Identity())
    _set_submodule(net, first, _fresh_conv_like(net.get_submodule(first), in_channels))
    if image_size is not None:
        _check_input_size(net, name, in_channels, image_size)
    return net, n_features


def _set_submodule(net, path, module):
    parent, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def _check_input_size(net, name, in_channels, image_size):
    """One blank image through ``net`` in evaluation mode (nothing changes); a UserError when it cannot."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as err:
        reason = " ".join(str(err).split()[:20])
        raise UserError(f"backbone {name} cannot take {image_size} x {image_size} images ({reason}); "
                        "use a larger --resize") from None
    finally:
        net.train(was_training)
