"""config.json's w_init_cos: the mean cosine between W's rows at initialisation and at the evaluated checkpoint."""
import json
import os

import numpy as np
import pytest

import train


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
