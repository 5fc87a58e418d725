"""evaluate.py at the class counts of today's classifiers: bad input still fails fast, stages are logged."""
import os
import resource

import numpy as np

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
    per_distance = ["distances", "corr_mean", "permutation test", "level retrieval", "trees (WPGMA, UPGMA)"]
    assert stages == (["reference trees (WPGMA, UPGMA of d_T)"] + [f"{s} (euc)" for s in per_distance]
                      + [f"{s} (arccos)" for s in per_distance] + ["files"])
    assert all(line.endswith(" s") for line in lines)
