"""The training flags (utils/training/cli.py, utils/training/config.py) and run names (utils/options.py): learning
rates, Inception's first block, the dynamic scale's update, run names and option labels, as the paper's code did."""
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from scipy.optimize import brentq

import evaluate
import train
import train_cifar100
import train_nabirds
from datasets import ensure_synthetic
from losses.head import ClassHead
from losses.scale import (b_scale, dynamic_scale_objective, initial_scale, median_target_angle, scale_residual,
                          solve_initial_scale)
from losses.scores import LOG_EPS, proxydr_scores
from models import backbones
from utils import record
from utils.errors import UserError
from utils.options import options_label


# ------------------------------------------------------------------ learning rates
def parsed(module, argv):
    return module.parse_config(argv)


@pytest.mark.parametrize(
    "module,argv,lr",
    [
        (train, ["--dataset", "MicroS"], 1e-4),  # inception
        (train, ["--dataset", "MicroS", "--backbone", "resnet50"], 1e-5),
        (train, ["--dataset", "MesoZ", "--backbone", "resnet18"], 1e-4),
        (train_cifar100, [], 1e-4),  # resnet50
        (train_cifar100, ["--backbone", "inception"], 1e-4),
        (train_nabirds, [], 1e-4),  # resnet50
        (train, ["--dataset", "MicroS", "--backbone", "resnet50", "--lr", "3e-4"], 3e-4),
    ],
)
def test_paper_learning_rate_per_script_and_backbone(module, argv, lr):
    args = parsed(module, argv)
    assert args.lr == lr
    assert ("_lr" in args.run_name) == ("--lr" in argv)


def test_help_shows_the_per_backbone_learning_rate(capsys):
    with pytest.raises(SystemExit):
        train.parse_config(["--dataset", "MicroS", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default 1e-5 for resnet50, 1e-4 otherwise)" in out
    with pytest.raises(SystemExit):  # the default dataset, the synthetic demo preset
        train.parse_config(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default 1e-3; the synthetic presets' own, for any backbone; on the paper's datasets 1e-5 for " \
           "resnet50, 1e-4 otherwise)" in out
    with pytest.raises(SystemExit):
        train_cifar100.parse_config(["--help"])
    assert "learning rate of the network and the scale (default 1e-4)" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ run names
@pytest.mark.parametrize(
    "module,argv,tags",
    [
        (train, ["--dataset", "MicroS", "--backbone", "resnet50"], ""),
        (train, ["--dataset", "MicroS", "--backbone", "resnet50", "--lr", "1e-5"], ""),
        (train, ["--dataset", "MicroS", "--backbone", "resnet50", "--lr", "1e-4"], "lr1e-4"),
        (train, ["--dataset", "MicroS", "--lr", "0.001", "--epochs", "15", "--batch_size", "64"], "lr1e-3_bs64_ep15"),
        (train, ["--dataset", "MicroS", "--lr", "2.5e-4"], "lr2.5e-4"),
        (train, ["--dataset", "MicroS", "--epochs", "50", "--batch_size", "32", "--lr", "1e-4"], ""),
        (train, ["--dataset", "MicroS", "--dynamic", "--scale_update", "paper_code", "--use_val"], "dnm_sucode_val"),
        (train, ["--dataset", "MicroS", "--dynamic", "--scale_update", "equations"], "dnm"),
        (train, ["--dataset", "MesoZ", "--gray"], ""),
        (train, ["--dataset", "MicroS", "--gray", "--size_inform"], "size_gray"),
        (train, ["--dataset", "MicroS", "--num_workers", "3", "--GPU", "0", "--device", "cpu", "--test_each_epoch",
                 "--record_dir", "elsewhere", "--data_root", "there", "--overwrite"], ""),
        (train_cifar100, ["--backbone", "resnet50", "--lr", "1e-4", "--epochs", "100"], ""),
        (train_cifar100, ["--lr", "1e-5", "--small", "--epochs", "0"], "small_lr1e-5_ep0"),
        (train_nabirds, ["--batch_size", "16", "--resize", "64"], "r64_bs16"),
    ],
)
def test_run_name_tags_every_result_changing_flag_off_its_default(module, argv, tags):
    args = parsed(module, argv)
    name = args.run_name
    prefix = f"{args.dataset}_{args.backbone}_{args.method}_{args.distance}_"
    assert name.startswith(prefix) and name.endswith(f"seed{args.seed}")
    assert name[len(prefix):-len(f"seed{args.seed}")].rstrip("_") == tags


def test_options_label_follows_the_same_defaults():
    config = (parsed(train, ["--dataset", "MicroS", "--backbone", "resnet50"]).as_dict())
    assert options_label(config) == "-"
    config = (parsed(train, ["--dataset", "MicroS", "--dynamic", "--scale_update", "paper_code", "--lr", "1e-3",
                                 "--epochs", "15", "--batch_size", "64", "--num_workers", "0", "--use_val"]).as_dict())
    assert options_label(config) == "dynamic+scale_update=paper_code+lr=1e-3+batch_size=64+epochs=15+use_val"
    # a record written before the defaults were recorded: lr compared with 1e-4, epochs not at all
    assert options_label({"lr": 1e-4, "epochs": 7, "batch_size": 32}) == "-"
    assert options_label({"lr": 1e-3, "epochs": 0}) == "lr=1e-3+untrained"


def test_scale_update_without_dynamic_is_refused():
    with pytest.raises(UserError, match="--dynamic"):
        parsed(train, ["--dataset", "MicroS", "--scale_update", "paper_code"])


def test_two_runs_differing_only_in_lr_get_two_folders_and_two_summary_rows(tmp_path, capsys):
    data = tmp_path / "data"
    ensure_synthetic(str(data), seed=0)
    common = ["--data_root", str(data), "--record_dir", str(tmp_path / "rec"), "--epochs", "1", "--num_workers", "0"]
    a = train.main(common)
    b = train.main(common + ["--lr", "1e-4"])  # the synthetic preset's default is 1e-3
    assert os.path.basename(a) == "synthetic_simple_DR_euc_rand_ep1_seed1"
    assert os.path.basename(b) == "synthetic_simple_DR_euc_rand_lr1e-4_ep1_seed1"
    with open(os.path.join(a, record.CONFIG)) as fh:
        ca = json.load(fh)
    with open(os.path.join(b, record.CONFIG)) as fh:
        cb = json.load(fh)
    assert (ca["lr"], ca["lr_default"], cb["lr"], cb["lr_default"]) == (1e-3, 1e-3, 1e-4, 1e-3)
    assert evaluate.main([str(tmp_path / "rec"), "--no_plots", "--n_perm", "0", "--quiet"]) == 0
    summary = pd.read_csv(tmp_path / "rec" / record.SUMMARY_CSV)
    assert len(summary) == 2
    assert sorted(summary["options"]) == ["rand_backbone+epochs=1", "rand_backbone+lr=1e-4+epochs=1"]


# ------------------------------------------------------------------ backbones
@pytest.fixture
def stand_in_imagenet(monkeypatch):
    """Stand-in pretrained weights with the real keys and values no fresh layer has (BN stats included)."""
    states = {}

    def fake_state(name):
        if name not in states:
            if name == "inception":
                net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
            else:
                net = getattr(torchvision.models, name)(weights=None)
            g = torch.Generator().manual_seed(0)
            states[name] = {k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v.clone())
                            for k, v in net.state_dict().items()}
        return states[name]

    monkeypatch.setattr(backbones, "_pretrained_state", fake_state)
    return fake_state


def test_inception_first_block_is_fresh_and_every_later_layer_pretrained(stand_in_imagenet):
    net, n = backbones.build_backbone("inception", 1, pretrained=True)
    pre = stand_in_imagenet("inception")
    state = net.state_dict()
    block = net.Conv2d_1a_3x3
    assert isinstance(block, torchvision.models.inception.BasicConv2d) and n == 2048
    assert block.conv.weight.shape == (32, 1, 3, 3) and block.conv.stride == (2, 2) and block.conv.bias is None
    assert block.bn.eps == pytest.approx(0.001)
    assert torch.equal(block.bn.weight, torch.ones(32)) and torch.equal(block.bn.bias, torch.zeros(32))
    assert torch.equal(block.bn.running_mean, torch.zeros(32)) and torch.equal(block.bn.running_var, torch.ones(32))
    later = [k for k in state if not k.startswith("Conv2d_1a_3x3.")]
    assert len(later) > 100
    for key in later:
        assert torch.equal(state[key], pre[key]), key


def test_resnet50_keeps_bn1_and_replaces_conv1_only(stand_in_imagenet):
    net, n = backbones.build_backbone("resnet50", 1, pretrained=True)
    pre = stand_in_imagenet("resnet50")
    state = net.state_dict()
    assert net.conv1.weight.shape == (64, 1, 7, 7) and n == 2048
    for key in state:
        if key != "conv1.weight":
            assert torch.equal(state[key], pre[key]), key
    assert torch.equal(state["bn1.running_var"], pre["bn1.running_var"])


# ------------------------------------------------------------------ dynamic scale
def test_median_target_angle_is_the_lower_middle_value():
    angles = torch.tensor([0.7, 0.1, 0.5, 0.2], dtype=torch.float64)  # interpolated median would be 0.35
    assert median_target_angle(torch.cos(angles)).item() == pytest.approx(0.2, abs=1e-12)
    angles = torch.tensor([0.3, 1.2, 0.1], dtype=torch.float64)  # odd: the middle one
    assert median_target_angle(torch.cos(angles)).item() == pytest.approx(0.3, abs=1e-12)
    angles = torch.tensor([1.0, 1.1], dtype=torch.float64)  # capped at pi/4
    assert median_target_angle(torch.cos(angles)).item() == pytest.approx(math.pi / 4)


def _two_sample_head(scale_update):
    """DR-euc, 3 classes at the axes; two samples of class 0 at angles pi/4 (towards w1) and 0.3 (towards w2)."""
    head = ClassHead(3, 3, method="DR", distance="euc", dynamic=True, scale_update=scale_update)
    with torch.no_grad():
        head.W.copy_(torch.eye(3))
    f = torch.tensor([[1.0, 1.0, 0.0], [math.cos(0.3), 0.0, math.sin(0.3)]])
    y = torch.tensor([0, 0])
    return head, f, y


@pytest.mark.parametrize("scale_update", ["equations", "paper_code"])
def test_dynamic_scale_step_matches_the_hand_computed_residual(scale_update):
    head, f, y = _two_sample_head(scale_update)
    s = head.initial_scale
    assert s == pytest.approx(initial_scale("DR", "euc", 3))  # the equations' initial scale in both modes
    loss, z, cos = head.loss(f, y)
    # non-target chords: sample 1 to w1 (cos 1/sqrt2) and w2 (cos 0); sample 2 to w1 (cos 0) and w2 (cos sin 0.3)
    chords = [math.sqrt(2 - math.sqrt(2)), math.sqrt(2), math.sqrt(2), math.sqrt(2 - 2 * math.sin(0.3))]
    power = 2 * math.sqrt(s) if scale_update == "paper_code" else s  # paper_code: (d^2)^(-sqrt s)
    B = sum((d + LOG_EPS) ** (-power) for d in chords) / 2
    d_m = math.sqrt(2 - 2 * math.cos(0.3))  # lower middle of (pi/4, 0.3)
    R = B * (s + 1) * d_m**s + (1 - s)
    dR_ds = B * d_m**s + B * (s + 1) * d_m**s * math.log(d_m) - 1
    grad = 2 * R * dR_ds * s  # d R^2 / d log s
    opt = torch.optim.SGD([head.log_s], lr=1e-3)
    log_s0 = head.log_s.item()
    head.after_step(f, z, cos, y, opt)
    assert head.log_s.item() - log_s0 == pytest.approx(-1e-3 * grad, rel=1e-4)


def test_the_two_modes_differ_where_the_paper_code_does():
    B, s, theta = 4.0, 3.0, 0.6
    cos_m = math.cos(theta)
    for method, distance in (("DR", "euc"), ("DR", "arccos"), ("normface", "euc")):
        assert scale_residual(np.float64(s), B, theta, method, distance, p=0.7, scale_update="paper_code") == \
            pytest.approx(scale_residual(np.float64(s), B, theta, method, distance, p=0.7))
    for t2, mode in ((2 - 2 * cos_m, "paper_code"), (theta**2, "equations")):
        expected = B * math.exp(s * t2) * (2 * s * t2 - 1) - 0.7 * (2 * s * t2 + 1)
        got = scale_residual(np.float64(s), B, theta, "normface", "arccos", p=0.7, scale_update=mode)
        assert float(got) == pytest.approx(expected, rel=1e-12)
    assert b_scale(9.0, "DR", "euc", "paper_code") == 6.0 and b_scale(9.0, "DR", "euc", "equations") == 9.0
    assert b_scale(9.0, "DR", "arccos", "paper_code") == 9.0 and b_scale(9.0, "normface", "euc", "paper_code") == 9.0


# Where the DR-euc update settles with the target at pi/4 and the C - 1 others orthogonal.
# The issue rounds these to 9.82, 10.04, 14.33 and 7.90, 8.03, 10.60.
EQUILIBRIA = [(100, "paper_code", 9.82381), (109, "paper_code", 10.04251), (555, "paper_code", 14.33328),
              (100, "equations", 7.89885), (109, "equations", 8.03355), (555, "equations", 10.59729)]


@pytest.mark.parametrize("C,mode,expected", EQUILIBRIA)
def test_dr_euc_equilibrium(C, mode, expected):
    # independent: the residual written out, its root by brentq
    d_m = math.sqrt(2 - math.sqrt(2))
    b_power = (lambda s: math.sqrt(s)) if mode == "paper_code" else (lambda s: s / 2)  # (d^2)^-power, d^2 = 2
    root = brentq(lambda s: (C - 1) * 2 ** (-b_power(s)) * (s + 1) * d_m**s + 1 - s, 2, 50, xtol=1e-12)
    assert root == pytest.approx(expected, abs=1e-4)
    assert round(root, 2) == pytest.approx(expected, abs=0.006)
    s, is_root = solve_initial_scale("DR", "euc", C, mode)
    assert is_root and s == pytest.approx(root, abs=1e-6)
    # the training step's own objective vanishes there: scores of one sample at pi/4 to its target, 0 to the rest
    cos = torch.zeros(1, C, dtype=torch.float64)
    cos[0, 0] = math.cos(math.pi / 4)
    z = proxydr_scores(cos, b_scale(torch.tensor(s, dtype=torch.float64), "DR", "euc", mode), "euc")
    z_free = z.scatter(1, torch.tensor([[0]]), float("-inf"))
    objective = dynamic_scale_objective(torch.tensor(math.log(s)), z_free, cos[:, 0], None, "DR", "euc", mode)
    assert objective.item() < 1e-6
