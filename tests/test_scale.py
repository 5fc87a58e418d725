"""evaluate.py at the class counts of today's classifiers: bad input still fails fast, stages are logged."""
import os
import resource

import numpy as np
import pytest

import evaluate
from utils.hierarchy import Hierarchy


def _run(*args):
    try:
        return evaluate.main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code


def test_weights_with_too_few_rows_for_22000_classes_is_one_line_and_exit_2(tmp_path, capsys):
    C = 22000
    paths = [[f"k{c % 7}", f"o{c % 91}", f"f{c % 1301}", f"s{c}"] for c in range(C)]
    Hierarchy([p[-1] for p in paths], paths).to_csv(tmp_path / "h.csv")
    np.save(tmp_path / "W.npy", np.ones((21000, 4), dtype=np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert _run("--weights", tmp_path / "W.npy", "--hierarchy", tmp_path / "h.csv", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "21000 rows but the hierarchy has 22000 classes" in err
    # the 22000 x 22000 tree distances (3.9 GB) were never built, and nothing was written
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB: under 1 GiB more
    assert not os.path.exists(tmp_path / "out")


def test_every_stage_is_one_line_of_the_log(tmp_path):
    rng = np.random.default_rng(0)
    paths = [[f"a{c % 3}", f"b{c % 7}", f"c{c}"] for c in range(40)]
    h = Hierarchy([p[-1] for p in paths], paths)
    h.to_csv(tmp_path / "h.csv")
    W = rng.normal(size=(40, 8)) + 3 * rng.normal(size=(3, 8))[h.level_groups(0)]
    np.save(tmp_path / "W.npy", W)
    assert _run("--weights", tmp_path / "W.npy", "--hierarchy", tmp_path / "h.csv", "--out", tmp_path / "out",
                "--quiet", "--n_perm", "99", "--no_plots") == 0
    lines = (tmp_path / "out" / "evaluate.log").read_text().splitlines()
    stages = [line.split(" ", 2)[2].rsplit(":", 1)[0] for line in lines]  # after the date and time
    per_distance = ["distances", "corr_mean and level retrieval", "permutation test", "chance of corr_mean",
                    "trees (WPGMA, UPGMA)", "chance of rf"]
    assert stages == (["reference trees (WPGMA, UPGMA of d_T)"] + [f"{s} (euc)" for s in per_distance]
                      + [f"{s} (arccos)" for s in per_distance] + ["files"])
    assert all(line.endswith(" s") for line in lines)


def test_top_k_and_softmax_confidence_in_row_blocks(monkeypatch):
    from utils.evaluation import classification as cls_m, representation as rm

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(500, 40)).astype(np.float32)  # ties at the k-th value
    top, confidence = cls_m.topk(scores, 5), cls_m.max_softmax(scores)
    monkeypatch.setattr(rm, "BLOCK_BYTES", 8 * 40 * 7)  # seven rows per block (rm.rows_per_block)
    np.testing.assert_array_equal(cls_m.topk(scores, 5), top)
    np.testing.assert_array_equal(cls_m.max_softmax(scores), confidence)
    order = np.lexsort((np.arange(40)[None, :].repeat(500, 0), -scores), axis=1)  # by score, then index
    np.testing.assert_array_equal(top, order[:, :5])


def test_mds_in_blocks_of_rows_is_the_same_fit(monkeypatch):
    import torch

    from losses import mds

    rng = np.random.default_rng(4)
    target = rng.random((90, 90))
    target = np.sqrt(2.0) * (target + target.T) / 2
    np.fill_diagonal(target, 0.0)
    V = torch.randn(90, 8, generator=torch.Generator().manual_seed(2))
    whole = mds.fit_mds(target, 8, "euc", steps=40, lr=1e-2, generator=torch.Generator().manual_seed(5))
    full = mds.mds_distances(V, "arccos")
    monkeypatch.setattr(mds, "BLOCK_CLASSES", 10)
    monkeypatch.setattr(mds, "BLOCK_BYTES", 4 * 90 * 13)  # 13 rows per block, the last one shorter
    blocks = torch.cat([mds.mds_distances(V, "arccos", rows) for rows in mds._row_blocks(90)])
    assert len(mds._row_blocks(90)) == 7 and torch.equal(full, blocks)
    steps = []
    blocked = mds.fit_mds(target, 8, "euc", steps=40, lr=1e-2, generator=torch.Generator().manual_seed(5),
                          progress=lambda done, total: steps.append((done, total)))
    assert steps[-1] == (40, 40)
    torch.testing.assert_close(blocked[0], whole[0], atol=1e-4, rtol=0)  # float32 sums in another order
    assert blocked[1] == pytest.approx(whole[1], rel=1e-6) and blocked[2] == pytest.approx(whole[2], rel=1e-5)
    assert blocked[2] < 0.5 * blocked[1]  # it fits
