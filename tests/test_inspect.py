"""evaluate.py --weights (utils/evaluation/inspect.py, utils/evaluation/weights.py): any classifier's class vectors against a taxonomy."""
import json
import os
import sys

import numpy as np
import pytest
import torch
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import evaluate
from tests.fakes import write_fake_plankton
from utils import record
from utils.evaluation import inspect as inspect_weights
from utils.evaluation import weights
from utils.hierarchy import Hierarchy
from utils.io import write_json

# 4 x 4 x 4 = 64 classes, three levels
PATHS = [[a, f"{a}{b}", f"{a}{b}{c}"] for a in "PQRS" for b in "wxyz" for c in "1234"]
HIERARCHY = Hierarchy([p[-1] for p in PATHS], PATHS)
DIM = 64


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def tree_vectors(hierarchy, dim=DIM, seed=0):
    """Each class: the normalised sum of one random vector per node on its path (float32)."""
    rng = np.random.default_rng(seed)
    node = {}
    rows = [sum(node.setdefault(tuple(p[: i + 1]), rng.standard_normal(dim)) for i in range(len(p))) for p in hierarchy.paths]
    return _unit(rows).astype(np.float32)


def random_vectors(n, dim=DIM, seed=1):
    return _unit(np.random.default_rng(seed).standard_normal((n, dim))).astype(np.float32)


def run_main(*args):
    """evaluate.main in-process; returns its exit status (0, or the SystemExit code)."""
    try:
        return evaluate.main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code


def inspect_files(tmp_path, W, hierarchy=HIERARCHY, name="w", *extra):
    weights = tmp_path / f"{name}.npy"
    np.save(weights, W)
    hfile = tmp_path / f"{name}_hierarchy.csv"
    hierarchy.to_csv(hfile)
    out = tmp_path / f"{name}_out"
    assert run_main("--weights", weights, "--hierarchy", hfile, "--out", out, "--no_plots", "--quiet", *extra) == 0
    with open(out / "metrics.json") as fh:
        return json.load(fh), out


def chord(W):
    """Independent chord distances: |u - v| of the normalised rows."""
    U = _unit(W)
    return np.linalg.norm(U[:, None, :] - U[None, :, :], axis=2)


# ------------------------------------------------------------------ measures
def test_tree_vectors_recover_the_hierarchy_and_random_ones_do_not(tmp_path):
    tree, _ = inspect_files(tmp_path, tree_vectors(HIERARCHY), HIERARCHY, "tree")
    rand, _ = inspect_files(tmp_path, random_vectors(HIERARCHY.n_classes), HIERARCHY, "rand")
    for suffix in ("euc", "arccos"):
        assert tree[f"corr_mean_{suffix}"] > 0.6
        assert tree[f"corr_perm_p_{suffix}"] < 0.01
        assert tree[f"p1_0_{suffix}"] > 0.9  # nearest other class shares the top group
        # corr_mean includes the diagonal (faithful): every class is nearest itself in both matrices, which
        # gives random vectors a small positive corr_mean of the order of 1/C; corr_elem (pairs i < j) has none
        assert abs(rand[f"corr_mean_{suffix}"]) < 0.12
        assert abs(rand[f"corr_elem_{suffix}"]) < 0.05
        assert rand[f"corr_perm_p_{suffix}"] > 0.05
    # corr_elem against scipy's Spearman over the class pairs i < j of independent chord distances
    i, j = np.triu_indices(HIERARCHY.n_classes, 1)
    expected = stats.spearmanr(chord(tree_vectors(HIERARCHY))[i, j], HIERARCHY.distances[i, j])[0]
    assert tree["corr_elem_euc"] == pytest.approx(expected, abs=1e-9)
    # the angle is a monotone function of the chord, so every rank measure agrees
    assert tree["corr_mean_arccos"] == pytest.approx(tree["corr_mean_euc"], abs=1e-12)


@pytest.mark.parametrize("distance", ["euc", "arccos"])
def test_values_equal_those_of_a_record(tmp_path, distance):
    """The same W in a run record: every measure of W (suffix _W) equals the --weights one (suffix _<distance>)."""
    W = tree_vectors(HIERARCHY, seed=3)
    run = tmp_path / "record" / f"run_{distance}"
    C = HIERARCHY.n_classes
    labels = np.arange(C)
    record.save_outputs(run / record.OUTPUTS_TEST, labels, W, 10 * W @ W.T, W, W)
    HIERARCHY.to_csv(run / record.HIERARCHY)
    write_json(run / record.CONFIG, dict(dataset="synthetic", backbone="simple", method="DR", distance=distance, seed=1))
    assert run_main(run, "--no_plots", "--quiet", "--n_perm", "199") == 0
    with open(run / record.METRICS_JSON) as fh:
        in_record = json.load(fh)

    mine, _ = inspect_files(tmp_path, W, HIERARCHY, "same", "--n_perm", "199")
    assert mine["n_classes"] == C and mine["dim"] == DIM
    names = [k[: -len(distance) - 1] for k in mine if k.endswith("_" + distance)]
    assert {"corr_mean", "corr_mean_p", "corr_elem", "corr_perm_p", "p1_0", "rp_1", "mapr_2", "rf", "rf_upgma",
            "rf_taxonomy"} <= set(names)
    for name in names:
        assert mine[f"{name}_{distance}"] == in_record[f"{name}_W"], name


def test_files_trees_and_plots(tmp_path):
    W = tree_vectors(HIERARCHY)
    np.save(tmp_path / "w.npy", W)
    HIERARCHY.to_csv(tmp_path / "h.csv")
    out = tmp_path / "out"
    assert run_main("--weights", tmp_path / "w.npy", "--hierarchy", tmp_path / "h.csv", "--out", out,
                    "--n_perm", "9", "--quiet") == 0
    for name in ("metrics.csv", "source.json", "tree_euc.png", "tree_arccos.png", "distances_euc.png",
                 "distances_arccos.png", "tree_true.nwk", "tree_taxonomy.nwk"):
        assert (out / name).stat().st_size > 0, name
    with np.load(out / "distances.npz") as d:
        np.testing.assert_allclose(d["euc"], chord(W), atol=1e-6)
        np.testing.assert_allclose(d["arccos"], 2 * np.arcsin(np.clip(chord(W) / 2, 0, 1)), atol=1e-6)
        np.testing.assert_array_equal(d["d_T"], HIERARCHY.distances)
    import dendropy

    tree = dendropy.Tree.get(path=str(out / "tree_euc.nwk"), schema="newick", preserve_underscores=True)
    assert sorted(t.label for t in tree.taxon_namespace) == sorted(HIERARCHY.names)


# ------------------------------------------------------------------ weight files
def _err_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def test_state_dict_with_several_matrices_needs_key(tmp_path, capsys):
    C = HIERARCHY.n_classes
    W = tree_vectors(HIERARCHY)
    HIERARCHY.to_csv(tmp_path / "h.csv")
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": {"fc.weight": torch.randn(C, DIM), "proj.weight": torch.randn(C, 4)},
                "head": {"W": torch.from_numpy(W)}, "epoch": 3}, ckpt)
    base = ["--weights", ckpt, "--hierarchy", tmp_path / "h.csv", "--no_plots", "--quiet", "--n_perm", "99"]
    assert run_main(*base, "--out", tmp_path / "a") == 2
    err = _err_line(capsys)
    for name in ("model.fc.weight", "model.proj.weight", "head.W", "--key"):
        assert name in err
    assert run_main(*base, "--out", tmp_path / "b", "--key", "head.W") == 0
    mine, _ = inspect_files(tmp_path, W, HIERARCHY, "plain", "--n_perm", "99")
    with open(tmp_path / "b" / "metrics.json") as fh:
        assert json.load(fh) == mine


def test_found_without_key(tmp_path):
    """One 2-D tensor with C rows outside the optimiser state: found alone; a torchvision-style fc.weight too."""
    C = HIERARCHY.n_classes
    W = torch.from_numpy(tree_vectors(HIERARCHY))
    moments = {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(C, DIM), "exp_avg_sq": torch.rand(C, DIM)}}
    ours = {"model": {"conv.weight": torch.randn(8, 3, 3, 3), "fc.weight": torch.randn(16, 12)},
            "head": {"W": W, "seen": torch.ones(C, dtype=torch.bool)},
            "optimizer": {"state": moments, "param_groups": [{"lr": 0.1, "params": [0]}]}}
    tv = {"conv1.weight": torch.randn(8, 3, 7, 7), "fc.weight": W.double(), "fc.bias": torch.zeros(C)}
    for name, obj in (("ours", ours), ("tv", tv)):
        torch.save(obj, tmp_path / f"{name}.pt")
        got, key = weights.load_weights(tmp_path / f"{name}.pt", C)
        assert key == {"ours": "head.W", "tv": "fc.weight"}[name]
        np.testing.assert_array_equal(got, W.double().numpy())
    # a key given by its ending, and an .npz collection
    torch.save({"state_dict": {"module.fc.weight": W}}, tmp_path / "wrapped.pt")
    assert weights.load_weights(tmp_path / "wrapped.pt", C, "fc.weight")[1] == "state_dict.module.fc.weight"
    np.savez(tmp_path / "w.npz", W=W.numpy(), other=np.zeros((C, 3)))
    assert weights.load_weights(tmp_path / "w.npz", C, "W")[1] == "W"


def test_row_scale_does_not_matter(tmp_path):
    """Rows are compared by direction only, also when their squares would over- or underflow."""
    W = tree_vectors(HIERARCHY).astype(np.float64)
    scale = np.ones((HIERARCHY.n_classes, 1))
    scale[::3], scale[1::3] = 1e200, 1e-200
    np.save(tmp_path / "scaled.npy", W * scale)
    got, _ = weights.load_weights(tmp_path / "scaled.npy", HIERARCHY.n_classes)
    np.testing.assert_allclose(_unit(got), _unit(W), atol=1e-12)
    a = inspect_weights.inspect(got, HIERARCHY, n_perm=0).metrics
    b = inspect_weights.inspect(W, HIERARCHY, n_perm=0).metrics
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=1e-9), name


def test_class_table_and_dataset_folder(tmp_path):
    # class table: Number is the row of the weight matrix
    order = np.random.default_rng(0).permutation(HIERARCHY.n_classes)
    with open(tmp_path / "classes.csv", "w") as fh:
        fh.write("Class,Path,Number\n")
        for number, cls in enumerate(order):
            fh.write(f"{HIERARCHY.names[cls]},DATA_init/{'/'.join(HIERARCHY.paths[cls])},{number}\n")
    h, dataset = weights.load_hierarchy(tmp_path / "classes.csv")
    assert dataset is None
    assert h == HIERARCHY.subset(order)
    # a taxonomy-folder dataset: the class order of the training loader
    from datasets import load_plankton

    write_fake_plankton(tmp_path, "FakePlankton")
    h, dataset = weights.load_hierarchy("FakePlankton", tmp_path)
    assert dataset == "FakePlankton"
    assert h == load_plankton(tmp_path, "FakePlankton").hierarchy
    np.save(tmp_path / "six.npy", tree_vectors(h, seed=5))
    out = tmp_path / "fake_out"
    assert run_main("--weights", tmp_path / "six.npy", "--hierarchy", "FakePlankton", "--data_root", tmp_path,
                    "--out", out, "--no_plots", "--quiet", "--n_perm", "9") == 0
    with open(out / "metrics.json") as fh:
        metrics = json.load(fh)
    assert metrics["n_classes"] == 6
    assert "corr_mean_living_euc" in metrics  # a "nonliving" top group gives the living subset
    # a dataset folder holding the paper's class and image tables: the class order is Number, as in training
    write_fake_plankton(tmp_path, "Tables", paper=True, numbers=[5, 3, 0, 1, 4, 2])
    h, _ = weights.load_hierarchy("Tables", tmp_path)
    assert h == load_plankton(tmp_path, "Tables").hierarchy
    assert h.names[0] == "Tintinnida sp"  # Number 0 is the third class by sorted path


# ------------------------------------------------------------------ bad input
def _bad_inputs(tmp_path):
    C = HIERARCHY.n_classes
    W = tree_vectors(HIERARCHY)
    nan, inf, zero = W.copy(), W.copy(), W.copy()
    nan[4, 2] = np.nan
    inf[1, 0] = np.inf
    zero[7] = 0
    files = {"rows.npy": W[:-1], "nan.npy": nan, "inf.npy": inf, "zero.npy": zero, "cube.npy": W[None]}
    for name, array in files.items():
        np.save(tmp_path / name, array)
    torch.save({"head": {"W": torch.from_numpy(W)}}, tmp_path / "sd.pt")
    (tmp_path / "text.pt").write_text("not weights\n")
    torch.save(5, tmp_path / "int.pt")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    torch.save({"W": torch.ones(C, 3, dtype=torch.complex64)}, tmp_path / "complex.pt")
    return [
        ("rows.npy", [], f"{C - 1} rows but the hierarchy has {C} classes"),
        ("sd.pt", ["--key", "fc.weight"], "--key fc.weight is not in"),
        ("nan.npy", [], "NaN or inf (first in row 4"),
        ("inf.npy", [], "NaN or inf (first in row 1"),
        ("zero.npy", [], "row 7 is all zeros"),
        ("cube.npy", [], "2-D matrix"),
        ("text.pt", [], "neither a NumPy array"),
        ("int.pt", [], "neither a NumPy array"),
        ("objects.npy", [], "neither a NumPy array"),
        ("complex.pt", ["--key", "W"], "real numbers"),
        ("rows.npy", ["--key", "W"], "holds a single array"),
        ("missing.npy", [], "does not exist"),
    ]


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    HIERARCHY.to_csv(tmp_path / "h.csv")
    for name, extra, message in _bad_inputs(tmp_path):
        code = run_main("--weights", tmp_path / name, "--hierarchy", tmp_path / "h.csv", "--out", tmp_path / "o", *extra)
        assert code == 2, name
        assert message in _err_line(capsys), name
    assert not (tmp_path / "o").exists()  # nothing written for bad input
    np.save(tmp_path / "w.npy", tree_vectors(HIERARCHY))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    for hierarchy, message in ((tmp_path / "nope.csv", "does not exist"), (tmp_path / "bad.csv", "not a hierarchy file")):
        assert run_main("--weights", tmp_path / "w.npy", "--hierarchy", hierarchy) == 2
        assert message in _err_line(capsys)
    assert run_main("--weights", tmp_path / "w.npy", "--hierarchy", "Nothing", "--data_root", tmp_path) == 2
    assert "does not exist" in _err_line(capsys)


def test_usage_errors(tmp_path, capsys):
    np.save(tmp_path / "w.npy", tree_vectors(HIERARCHY))
    for args in (["--weights", tmp_path / "w.npy"], [], ["--hierarchy", tmp_path / "h.csv", tmp_path],
                 ["--weights", tmp_path / "w.npy", "--hierarchy", tmp_path / "h.csv", tmp_path]):
        assert run_main(*args) == 2
        assert "evaluate.py: error:" in capsys.readouterr().err


def test_subprocess_one_line(tmp_path):
    """The real command line: exit status 2 and exactly one line on stderr, no traceback."""
    import subprocess

    np.save(tmp_path / "w.npy", tree_vectors(HIERARCHY)[:5])
    HIERARCHY.to_csv(tmp_path / "h.csv")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--weights", str(tmp_path / "w.npy"),
                           "--hierarchy", str(tmp_path / "h.csv")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"5 rows but the hierarchy has {HIERARCHY.n_classes} classes" in done.stderr
