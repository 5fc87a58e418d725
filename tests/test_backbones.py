"""Backbones: the paper's four names unchanged, and any torchvision classifier by the ResNet rule."""
import pytest
import torch
import torch.nn as nn
import torchvision

from models import backbones
from models.backbones import FAMILIES, TORCHVISION_NAMES, build_backbone, family
from models.embedding import EmbeddingNet
from utils.errors import UserError


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def _same_module(a, b, x):
    """Identical parameters and buffers (in order) and identical training-mode outputs for ``x``."""
    sa, sb = a.state_dict(), b.state_dict()
    assert [tuple(v.shape) for v in sa.values()] == [tuple(v.shape) for v in sb.values()]
    assert all(torch.equal(va, vb) for va, vb in zip(sa.values(), sb.values()))
    a.train(), b.train()
    assert torch.equal(_seeded(lambda: a(x), 5), _seeded(lambda: b(x), 5))  # the same dropout draw


# ------------------------------------------------------------------ the paper's names, bit for bit
def _paper_resnet(name, channels):
    """The paper's ResNet from torchvision itself: classifier removed, a fresh ``conv1`` for the channels."""
    net = getattr(torchvision.models, name)(weights=None)
    net.fc = nn.Identity()
    net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def _paper_inception(channels):
    """The paper's Inception-v3: no auxiliary head, no input transform, a fresh first block (conv + BatchNorm)."""
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=False, init_weights=True)
    net.fc = nn.Identity()
    net.Conv2d_1a_3x3 = torchvision.models.inception.BasicConv2d(channels, 32, kernel_size=3, stride=2)
    return net


def _simple_cnn(channels):
    """The small CNN written out: conv3x3-BN-ReLU at 32, 64, 128, 128 channels, max-pooling between, mean pool."""
    layers, c_in = [], channels
    for i, c_out in enumerate((32, 64, 128, 128)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if i < 3 else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        c_in = c_out
    return nn.Sequential(*layers)


@pytest.mark.parametrize("name,channels,features", [("resnet18", 1, 512), ("resnet50", 3, 2048),
                                                    ("inception", 1, 2048), ("simple", 3, 128),
                                                    ("inception_v3", 3, 2048)])  # torchvision's name for it
def test_the_four_existing_backbones_are_unchanged(name, channels, features):
    reference = {"inception": lambda: _paper_inception(channels), "inception_v3": lambda: _paper_inception(channels),
                 "simple": lambda: _simple_cnn(channels)}.get(name, lambda: _paper_resnet(name, channels))
    net, n = _seeded(lambda: build_backbone(name, channels, pretrained=False, image_size=80))
    assert n == features
    x = torch.rand(2, channels, 80, 80, generator=torch.Generator().manual_seed(3))
    # the size check (one blank image in evaluation mode) changes nothing, BatchNorm statistics included
    _same_module(net, _seeded(reference), x)


# ------------------------------------------------------------------ any torchvision family
SMALL = {"convnext_tiny": {}, "efficientnet_b0": {}, "mobilenet_v3_small": {}, "swin_t": {},
         "vit_b_32": {"image_size": 32}}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_torchvision_backbone_is_its_model_without_the_classifier_and_trains_on_gray_images(name):
    """Logits of the torchvision model (first conv made gray, same weights) = its ImageNet Linear of the features;
    one training step moves the fresh first convolution."""
    first, last = FAMILIES[family(name)]
    net, n = _seeded(lambda: build_backbone(name, 1, pretrained=False, image_size=32))
    model = torchvision.models.get_model(name, weights=None, **SMALL[name])
    classifier = model.get_submodule(last)
    assert (classifier.in_features, classifier.out_features) == (n, 1000)
    conv = model.get_submodule(first)
    parent, _, child = first.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, nn.Conv2d(
        1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None))
    state = dict(net.state_dict())
    state.update({f"{last}.{k}": v for k, v in classifier.state_dict().items()})
    model.load_state_dict(state)  # strict: the same modules but the classifier
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    net.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), classifier(net(x)), rtol=1e-4, atol=1e-5)

    net.train()
    head = nn.Linear(n, 128)
    before = net.get_submodule(first).weight.detach().clone()
    optimizer = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.1)
    f = head(net(x))
    assert f.shape == (2, 128)
    f.pow(2).sum().backward()
    optimizer.step()
    assert not torch.equal(net.get_submodule(first).weight, before)


def test_the_embedding_net_passes_the_image_size_to_the_backbone():
    with pytest.raises(UserError, match="multiple of 32"):
        EmbeddingNet("vit_b_32", in_channels=1, image_size=48)
    model = EmbeddingNet("mobilenet_v3_small", in_channels=1, image_size=32)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 128)


def test_every_torchvision_name_has_a_family_whose_paths_hold():
    assert all(family(name) is not None for name in TORCHVISION_NAMES)
    assert {"resnet50", "convnext_tiny", "efficientnet_v2_s", "vit_b_16", "swin_v2_t", "regnet_y_400mf"} <= set(
        TORCHVISION_NAMES)
    for fam, (first, classifier) in FAMILIES.items():
        name = min((n for n in TORCHVISION_NAMES if family(n) == fam), key=len)  # one model per family
        kwargs = {"aux_logits": False, "init_weights": False} if fam in ("googlenet", "inception_v3") else {}
        with torch.device("cpu" if fam == "regnet_" else "meta"):  # RegNet computes its widths with tensors
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        conv = model.get_submodule(first)
        conv = conv.conv if fam == "inception_v3" else conv
        assert isinstance(conv, nn.Conv2d) and conv.in_channels == 3, name
        assert (conv.groups, conv.dilation, conv.padding_mode) == (1, (1, 1), "zeros"), name
        head = model.get_submodule(classifier)
        out = head[1].out_channels if fam == "squeezenet" else head.out_features
        assert out == 1000, name


# ------------------------------------------------------------------ pretrained weights
def _stand_in_state(name, **kwargs):
    """Random stand-in weights with the real keys of torchvision's model (no download)."""
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    g = torch.Generator().manual_seed(0)
    return {k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v.clone())
            for k, v in net.state_dict().items()}


def test_pretrained_weights_are_imagenet1k_v1_where_the_enum_has_them():
    assert backbones.pretrained_weights("resnet50") is torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    assert backbones.pretrained_weights("convnext_tiny") is torchvision.models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1
    assert backbones.pretrained_weights("regnet_y_400mf") is torchvision.models.RegNet_Y_400MF_Weights.IMAGENET1K_V1
    assert backbones.pretrained_weights("vit_h_14") is torchvision.models.ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1


def test_pretrained_googlenet_drops_its_auxiliary_heads_and_keeps_all_but_the_first_conv(monkeypatch):
    state = _stand_in_state("googlenet", aux_logits=True, init_weights=False)
    monkeypatch.setattr(backbones, "_pretrained_state", lambda name: state)
    net, n = build_backbone("googlenet", 1, pretrained=True)
    own = net.state_dict()
    assert n == 1024 and own["conv1.conv.weight"].shape == (64, 1, 7, 7)
    assert net.aux1 is None and not net.transform_input
    kept = [k for k in state if not k.startswith(("aux1.", "aux2.", "fc.", "conv1.conv."))]
    assert set(own) == set(kept) | {"conv1.conv.weight"}
    assert all(torch.equal(own[k], state[k]) for k in kept)  # BatchNorm after the fresh conv included


def test_pretrained_vit_position_embeddings_follow_the_image_size(monkeypatch):
    state = _stand_in_state("vit_b_32")  # 224 px: 7 x 7 patches and the class token
    monkeypatch.setattr(backbones, "_pretrained_state", lambda name: state)
    net, n = build_backbone("vit_b_32", 1, pretrained=True, image_size=64)
    own = net.state_dict()
    assert n == 768 and state["encoder.pos_embedding"].shape == (1, 50, 768)
    assert own["encoder.pos_embedding"].shape == (1, 5, 768)  # 2 x 2 patches and the class token
    assert torch.equal(own["encoder.pos_embedding"][:, 0], state["encoder.pos_embedding"][:, 0])
    assert own["conv_proj.weight"].shape == (768, 1, 32, 32)
    same = [k for k in own if k not in ("encoder.pos_embedding", "conv_proj.weight", "conv_proj.bias")]
    assert len(same) > 100 and all(torch.equal(own[k], state[k]) for k in same)


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("name,size,message", [
    ("vit_b_16", 40, "multiple of 16"),
    ("vit_b_16", None, "built for one image size"),
    ("maxvit_t", 64, "cannot take 64 x 64 images .*--resize 224"),
    ("alexnet", 32, "cannot take 32 x 32 images .*larger --resize"),
    ("resnet5", 32, r"unknown backbone 'resnet5' \(did you mean resnet50\?\)"),
    ("ConvNext_Tiny", 32, "did you mean convnext_tiny"),
])
def test_bad_backbone_or_size_is_one_line(name, size, message):
    with pytest.raises(UserError, match=message) as err:
        build_backbone(name, 1, pretrained=False, image_size=size)
    assert "\n" not in str(err.value)


def test_docs_backbones_lists_every_family_with_its_paths():
    import os

    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "backbones.md"), encoding="utf-8") as fh:
        rows = [line for line in fh if line.startswith("| `")]
    for fam, (first, classifier) in FAMILIES.items():
        row = next((r for r in rows if r.startswith(f"| `{fam}`")), None)
        assert row is not None, fam
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1].startswith(f"`{first}`") and cells[2].startswith(f"`{classifier}`"), fam
