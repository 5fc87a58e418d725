"""The paper's example commands run as written (plus a data root and one epoch), on fake data in the real formats.

ImageNet weights cannot be downloaded here, so torchvision's weight loading is
replaced by the state dict of a freshly built torchvision model: the same keys
and shapes the real file has, so the loading path (auxiliary head dropped,
first convolution replaced) is exercised exactly.
"""
import json
import os
import urllib.error

import pytest
import torch
import torchvision

import train
import train_cifar100
import train_nabirds
from models import backbones
from tests.fakes import write_fake_cifar100, write_fake_nabirds, write_fake_plankton
from utils import record
from utils.errors import UserError


@pytest.fixture
def offline_imagenet(monkeypatch):
    """Stand-in for torchvision's cached ImageNet files: a random state dict with the real keys."""

    def fake_state(name):
        if name == "inception":
            net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        else:
            net = getattr(torchvision.models, name)(weights=None)
        return net.state_dict()

    monkeypatch.setattr(backbones, "_pretrained_state", fake_state)


def read_config(run_dir):
    with open(os.path.join(run_dir, record.CONFIG)) as fh:
        return json.load(fh)


def test_plankton_example(tmp_path, offline_imagenet, capsys):
    write_fake_plankton(tmp_path / "data", name="MicroS")
    argv = "--GPU 0 --dataset MicroS --method SD --distance euc --size_inform --seed 1 --use_val".split()
    run_dir = train.main(argv + ["--data_root", str(tmp_path / "data"), "--record_dir", str(tmp_path / "rec"),
                                 "--epochs", "1", "--num_workers", "0"])
    assert os.path.basename(run_dir) == "MicroS_inception_normface_euc_size_ep1_val_seed1"
    config = read_config(run_dir)
    assert config["backbone"] == "inception" and not config["rand_backbone"] and config["in_channels"] == 3
    if not torch.cuda.is_available():
        assert "CUDA is not available" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(run_dir, record.OUTPUTS_VAL))


def test_grayscale_mesoz_gets_a_one_channel_first_convolution(tmp_path, offline_imagenet):
    write_fake_plankton(tmp_path / "data", name="MesoZ", mode="L")
    run_dir = train.main(["--dataset", "MesoZ", "--method", "DR", "--mds_W", "--CORR", "--backbone", "resnet18",
                          "--data_root", str(tmp_path / "data"), "--record_dir", str(tmp_path / "rec"),
                          "--epochs", "1", "--num_workers", "0"])
    ck = torch.load(os.path.join(run_dir, record.CHECKPOINT_LAST), weights_only=True)
    assert ck["model"]["backbone.conv1.weight"].shape == (64, 1, 7, 7)
    assert read_config(run_dir)["in_channels"] == 1


def test_cifar100_example(tmp_path, offline_imagenet):
    write_fake_cifar100(tmp_path / "data", n_train_per_class=2, n_test_per_class=1)
    argv = "--GPU 0 --method DR --distance arccos --seed 1 --use_val --small --aug --backbone resnet18".split()
    run_dir = train_cifar100.main(argv + ["--data_root", str(tmp_path / "data"), "--record_dir",
                                          str(tmp_path / "rec"), "--epochs", "1", "--num_workers", "0"])
    assert os.path.basename(run_dir) == "cifar100_resnet18_DR_arccos_small_aug_ep1_val_seed1"
    config = read_config(run_dir)
    assert config["n_classes"] == 100 and config["n_train"] == 20 and config["n_val"] == 180
    assert record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))["labels"].shape == (100,)


def test_nabirds_example(tmp_path, offline_imagenet):
    write_fake_nabirds(tmp_path / "data")
    argv = "--GPU 0 --method softmax --seed 2 --backbone resnet18 --resize 64".split()
    run_dir = train_nabirds.main(argv + ["--data_root", str(tmp_path / "data"), "--record_dir",
                                         str(tmp_path / "rec"), "--epochs", "1", "--num_workers", "0"])
    assert os.path.basename(run_dir) == "nabirds_resnet18_softmax_euc_r64_ep1_seed2"
    assert "scores_proto" not in record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))


def test_pretrained_weights_offline_name_the_file_and_the_alternative(monkeypatch):
    def offline(self, progress=True, check_hash=False):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError) as err:
        backbones.build_backbone("resnet50", 3, pretrained=True)
    message = str(err.value)
    assert "resnet50-0676ba61.pth" in message and "--rand_backbone" in message
