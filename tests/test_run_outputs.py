"""config.json's w_init_cos: the mean cosine between W's rows at initialisation and at the evaluated checkpoint."""
import json
import os

import numpy as np
import pytest

import train
from datasets import registry


def _run(data_root, record_dir, *flags):
    run_dir = train.main(["--data_root", data_root, "--record_dir", str(record_dir), "--resize", "16",
                          "--batch_size", "64", *flags])
    with open(os.path.join(run_dir, "config.json")) as fh:
        config = json.load(fh)
    with np.load(os.path.join(run_dir, "outputs_test.npz"), allow_pickle=False) as f:
        return config, f["representatives"].astype(np.float64)


def test_w_init_cos_measures_how_far_w_moved(tmp_path):
    data_root = str(tmp_path / "data")
    start, W0 = _run(data_root, tmp_path / "a", "--epochs", "0")  # the untrained network: W as initialised
    assert start["w_init_cos"] == pytest.approx(1.0, abs=1e-6)
    trained, W1 = _run(data_root, tmp_path / "b", "--epochs", "2")  # same seed: same initial W
    expected = float(np.mean(np.sum(W0 * W1, axis=1) / np.linalg.norm(W0, axis=1) / np.linalg.norm(W1, axis=1)))
    assert trained["w_init_cos"] == pytest.approx(expected, abs=1e-5)
    assert trained["w_init_cos"] < 0.999
    fixed, _ = _run(data_root, tmp_path / "c", "--epochs", "1", "--mds_W")  # MDS representatives never move
    assert fixed["w_init_cos"] == pytest.approx(1.0, abs=1e-6)


def test_train_acc_eval_is_the_evaluated_checkpoints_accuracy_on_the_training_split(tmp_path):
    """Rebuild the network and W from checkpoint_last.pt (no --use_val: the evaluated checkpoint is the last) and
    score the training images listed in split.csv, each one by one, with the cosine to W's rows (ProxyDR's and
    NormFace's prediction is the nearest representative)."""
    import pandas as pd
    import torch

    from models.embedding import EmbeddingNet

    data_root = str(tmp_path / "data")
    config, _ = _run(data_root, tmp_path / "rec", "--epochs", "8")
    run_dir = os.path.join(str(tmp_path / "rec"), config["run_name"])
    ck = torch.load(os.path.join(run_dir, "checkpoint_last.pt"), weights_only=True)
    model = EmbeddingNet("simple", config["in_channels"], pretrained=False)
    model.load_state_dict(ck["model"])
    model.eval()
    W = torch.nn.functional.normalize(ck["head"]["W"], dim=1)

    run_config = train.parse_config(["--data_root", data_root, "--resize", "16"])
    data = registry.get(run_config.dataset).load(run_config)
    split = pd.read_csv(os.path.join(run_dir, "split.csv"))
    train_rows = split[split["split"] == "train"]
    assert len(train_rows) == len(data.train) == config["n_train"]
    correct = 0
    with torch.no_grad():
        for i in range(len(data.train)):
            x, y, wh = data.train[i]
            f = model(x[None].float() / 255 if x.dtype == torch.uint8 else x[None], wh[None])
            correct += int((f @ W.T).argmax(1).item() == y)
    assert config["train_acc_eval"] == pytest.approx(correct / len(data.train), abs=1e-6)  # float32 mean
    assert correct > len(data.train) // 2  # a trained network, not chance
