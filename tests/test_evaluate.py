"""evaluate.py end to end on small hand-built records, and the record format of utils/record.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import evaluate
from utils import record
from utils.errors import UserError
from utils.hierarchy import Hierarchy
from utils.io import write_json

PATHS = [["A", "a1", "x"], ["A", "a1", "y"], ["A", "a2"], ["A", "a2", "z"], ["B", "u"], ["B", "v"]]
HIERARCHY = Hierarchy([p[-1] for p in PATHS], PATHS)


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_run(folder, seed=1, per_class=3, wrong=0, proto=True, config=None, history=True, hierarchy=HIERARCHY):
    """A record whose embeddings sit exactly on their class representative (one-hot W).

    ``wrong`` images (the first ones) get the scores of the next class, so acc = 1 - wrong / N.
    """
    C = hierarchy.n_classes
    W = np.eye(C, 8, dtype=np.float32)
    labels = np.repeat(np.arange(C), per_class).astype(np.int64)
    emb = W[labels]
    scores = 10 * emb @ W.T
    scores[:wrong] = scores[:wrong][:, (np.arange(C) - 1) % C]  # predicts label + 1
    os.makedirs(folder, exist_ok=True)
    record.save_outputs(
        os.path.join(folder, record.OUTPUTS_TEST), labels, emb, scores, W, W, scores if proto else None
    )
    hierarchy.to_csv(os.path.join(folder, record.HIERARCHY))
    cfg = dict(dataset="synthetic", backbone="simple", method="DR", distance="euc", beta=1.0, seed=seed)
    cfg.update(config or {})
    write_json(os.path.join(folder, record.CONFIG), cfg)
    if history:
        with open(os.path.join(folder, record.HISTORY), "w") as fh:
            fh.write("epoch,train_loss,train_acc,val_acc,val_acc_proto,scale,seconds\n")
            fh.write("1,2.0,0.4,,,10,1.5\n2,1.0,0.7,,,10,1.4\n")
    return folder


def run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "evaluate.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _load(path):
    def refuse(token):
        raise AssertionError(f"non-JSON number {token} in {path}")

    with open(path) as fh:
        return json.load(fh, parse_constant=refuse)


# ------------------------------------------------------------------ record format
def test_save_outputs_validates(tmp_path):
    W = np.eye(3, 4, dtype=np.float32)
    labels = np.array([0, 1, 2])
    good = dict(labels=labels, embeddings=W, scores=W[:, :3], representatives=W, prototypes=W)
    record.save_outputs(tmp_path / "ok.npz", **good)
    with np.load(tmp_path / "ok.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(good)
        assert data["labels"].dtype == np.int64 and data["scores"].dtype == np.float32
    bad_cases = [
        dict(good, embeddings=2 * W),  # not normalised
        dict(good, labels=labels.astype(float)),  # float labels
        dict(good, scores=W[:2, :3]),  # N disagrees
        dict(good, prototypes=W[:2]),  # C disagrees
        dict(good, labels=np.array([0, 1, 3])),  # label out of range
        dict(good, scores=np.full((3, 3), np.nan, dtype=np.float32)),
    ]
    for case in bad_cases:
        with pytest.raises(ValueError):
            record.save_outputs(tmp_path / "bad.npz", **case)
    assert not (tmp_path / "bad.npz").exists()


def test_save_outputs_accepts_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    W = torch.eye(3, 4)
    record.save_outputs(tmp_path / "t.npz", torch.arange(3), W, W[:, :3], W, W, scores_proto=W[:, :3])
    out = record.load_outputs(tmp_path / "t.npz")
    assert out["labels"].dtype == np.int64 and out["scores_proto"].shape == (3, 3)


def test_load_outputs_names_the_inconsistent_array(tmp_path):
    W = np.eye(3, 4, dtype=np.float32)
    np.savez(tmp_path / "o.npz", labels=np.arange(3), embeddings=W, scores=W[:, :3], representatives=W, prototypes=W[:2])
    with pytest.raises(UserError, match="'prototypes'"):
        record.load_outputs(tmp_path / "o.npz")
    np.savez(tmp_path / "m.npz", labels=np.arange(3), embeddings=W, scores=W[:, :3], representatives=W)
    with pytest.raises(UserError, match="'prototypes' is missing"):
        record.load_outputs(tmp_path / "m.npz")


def test_group_name_and_find_runs(tmp_path):
    assert record.group_name("MicroS_inception_DR_euc_size_mds_dnm_val_seed12") == "MicroS_inception_DR_euc_size_mds_dnm_val"
    a = make_run(tmp_path / "runs" / "x_seed1")
    b = make_run(tmp_path / "runs" / "x_seed2")
    os.makedirs(tmp_path / "runs" / "not_a_run")
    assert record.find_runs([tmp_path / "runs"]) == [str(a), str(b)]
    assert record.find_runs([a, tmp_path / "runs"]) == [str(a), str(b)]
    with pytest.raises(UserError):
        record.find_runs([tmp_path / "runs" / "not_a_run"])
    # a run still training (no outputs yet) is left out of a folder of runs, but not when named
    os.remove(b / record.OUTPUTS_TEST)
    skipped = []
    assert record.find_runs([tmp_path / "runs"], outputs=record.OUTPUTS_TEST, skipped=skipped) == [str(a)]
    assert skipped == [str(b)]
    assert record.find_runs([b], outputs=record.OUTPUTS_TEST) == [str(b)]
    with pytest.raises(UserError):
        record.find_runs([tmp_path / "missing"])


# ------------------------------------------------------------------ one run
def test_evaluate_one_perfect_run(tmp_path, capsys):
    run = make_run(tmp_path / "synthetic_simple_DR_euc_seed1", proto=False)
    assert evaluate.main([str(run)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic_simple_DR_euc_seed1" in printed and "acc" in printed
    m = _load(run / "metrics.json")
    # every image sits on its representative and the scores are right: no mistakes at all
    assert m["acc_W"] == 1.0 and m["top5_W"] == 1.0 and m["ahc_W"] == 0.0
    # 6 classes: the hp5 radius (the 6th nearest class) covers every class, so hp5 is 1 for any model: null
    assert m["hp5_W"] is None and "covers all 6 classes" in m["hp5_null_reason"]
    assert m["acc_level_0_W"] == 1.0 and m["f1_W"] == 1.0
    # softmax-like record without scores_proto: no _proto classification, but prototype representation metrics
    assert "acc_proto" not in m and "ece_proto" not in m and "corr_mean_proto" in m
    # one-hot W: all representatives equally far apart.  Over the pairs nothing is ranked, so
    # corr_elem (and its permutation test) is undefined; per column the diagonal (0) is included
    # (faithful), so column i has D ranks (1 on the diagonal, 4 elsewhere), centred (-2.5, .5, ...),
    # and r_i = 7.5 / sqrt(7.5 * |centred d_T ranks|^2) with |.|^2 = 17, 17, 16.5, 16.5, 15.5, 15.5
    assert m["corr_elem_W"] is None and m["corr_perm_p_W"] is None
    r = np.sqrt(7.5 / np.array([17, 17, 16.5, 16.5, 15.5, 15.5]))
    assert m["corr_mean_W"] == pytest.approx(np.tanh(np.arctanh(r).mean()), abs=1e-6)
    # the level where no group has two members is missing, not a number
    assert m["mapr_2_W"] is None and m["p1_2_W"] is None
    # hs: 3 images per class, identical within a class: the 2 nearest are the same class (sim 1);
    # with N - 1 = 17 < 250 neighbours, hs@k for k > 17 and ahs250 are undefined
    assert m["hs@1"] == pytest.approx(1.0)
    assert m["hs@50"] is None and m["ahs250"] is None
    assert m["n_test"] == 18 and m["n_classes"] == 6
    csv = pd.read_csv(run / "metrics.csv")
    assert list(csv.columns) == ["name", "value"] and list(csv["name"]) == list(m)
    per_class = pd.read_csv(run / "per_class.csv")
    assert set(per_class["scores"]) == {"W"} and len(per_class) == 2 + 4 + 6
    with np.load(run / "confusion.npz") as cms:
        np.testing.assert_array_equal(cms["W_class"], 3 * np.eye(6))
    assert pd.read_csv(run / "hs_curve.csv")["k"].tolist() == list(range(1, 18))
    for name in ("tree_W.nwk", "tree_proto.nwk", "tree_true.nwk", "tree_taxonomy.nwk"):
        assert (run / name).read_text().strip().endswith(";")
    for name in ("tree_W.png", "tree_proto.png", "distances_W.png", "distances_proto.png", "training_curves.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hierarchy_aware_numbers_of_a_run_with_mistakes(tmp_path):
    # 2 of 18 images predict label + 1: image 0 (x -> y, d_T 2) and image 1 (same), so
    # acc = 16/18, ahc = (2 + 2)/18, acc_level_1 = 1 (x and y are both in A/a1)
    run = make_run(tmp_path / "r_seed1", wrong=2, config={"dataset": "MicroS"})
    evaluate.main([str(run), "--no_plots", "--n_perm", "0", "--quiet"])
    m = _load(run / "metrics.json")
    assert m["acc_W"] == pytest.approx(16 / 18) and m["acc_proto"] == pytest.approx(16 / 18)
    assert m["ahc_W"] == pytest.approx(4 / 18)
    assert m["acc_level_1_W"] == 1.0 and m["acc_level_0_W"] == 1.0
    assert m["corr_perm_p_W"] is None  # --n_perm 0 skips the test
    assert "corr_mean_living_W" in m  # MicroS: the living variants exist
    assert not (run / "tree_W.png").exists()


def test_living_variants_only_where_they_mean_something(tmp_path):
    run = make_run(tmp_path / "plain_seed1")
    evaluate.main([str(run), "--no_plots", "--n_perm", "0", "--quiet"])
    assert "corr_mean_living_W" not in _load(run / "metrics.json")
    paths = PATHS[:4] + [["nonliving", "u"], ["nonliving", "v"]]
    mixed = make_run(tmp_path / "mixed_seed1", hierarchy=Hierarchy([p[-1] for p in paths], paths))
    evaluate.main([str(mixed), "--no_plots", "--n_perm", "0", "--quiet"])
    assert "corr_elem_living_W" in _load(mixed / "metrics.json")


def test_summary_over_seeds(tmp_path):
    runs = tmp_path / "record"
    make_run(runs / "syn_DR_euc_seed1", seed=1)  # acc 1
    make_run(runs / "syn_DR_euc_seed2", seed=2, wrong=9)  # acc 0.5
    make_run(runs / "syn_softmax_euc_seed1", seed=1, config={"method": "softmax", "mds_W": True}, proto=False)
    assert evaluate.main([str(runs), "--no_plots", "--n_perm", "0", "--quiet"]) == 0
    summary = pd.read_csv(runs / "summary.csv")
    dr = summary[summary["group"] == "syn_DR_euc"].iloc[0]
    assert dr["n_runs"] == 2 and dr["method"] == "DR" and dr["options"] == "-"
    assert dr["acc_W_mean"] == pytest.approx(0.75)
    assert dr["acc_W_std"] == pytest.approx(np.sqrt(2 * 0.25**2))  # sample std of (1, 0.5)
    sm = summary[summary["group"] == "syn_softmax_euc"].iloc[0]
    assert sm["n_runs"] == 1 and np.isnan(sm["acc_W_std"]) and sm["options"] == "mds_W"
    md = (runs / "summary.md").read_text()
    assert "0.7500 ± 0.3536" in md and "| softmax | euc | mds_W | 1 |" in md


def test_last_reads_the_last_outputs(tmp_path):
    run = make_run(tmp_path / "r_seed1")  # no --use_val: the evaluated checkpoint is the last one
    evaluate.main([str(run), "--last", "--no_plots", "--n_perm", "0", "--quiet"])
    assert (run / "metrics_last.json").exists() and not (run / "metrics.json").exists()
    val = make_run(tmp_path / "v_seed1", config={"use_val": True, "best_epoch": 1, "epochs": 2})
    result = run_cli(val, "--last")
    assert result.returncode == 2 and "outputs_test_last.npz" in result.stderr


# ------------------------------------------------------------------ refusals
def test_inconsistent_record_is_refused_with_one_line(tmp_path):
    run = make_run(tmp_path / "r_seed1")
    W = np.eye(6, 8, dtype=np.float32)
    np.savez(run / record.OUTPUTS_TEST, labels=np.arange(6), embeddings=W, scores=W[:5, :6], representatives=W, prototypes=W)
    result = run_cli(run)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "'scores'" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_folder_that_is_not_a_record_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(tmp_path / "empty")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    run = make_run(tmp_path / "r_seed1")
    os.remove(run / record.OUTPUTS_TEST)
    result = run_cli(run)
    assert result.returncode == 2 and "outputs_test.npz" in result.stderr


def test_class_count_must_match_the_hierarchy(tmp_path):
    run = make_run(tmp_path / "r_seed1")
    Hierarchy(["a", "b"], [["a"], ["b"]]).to_csv(run / record.HIERARCHY)
    with pytest.raises(UserError, match="hierarchy.csv lists 2"):
        record.load_run(run)


def test_help_lists_the_options():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--last", "--no_plots", "--summary_dir", "--n_perm"):
        assert flag in result.stdout


def test_training_curves_tolerate_missing_columns_and_empty_values(tmp_path):
    from utils.evaluation import plots

    partial = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, None, 1.0], "val_acc": [None, None, None]})
    assert plots.plot_history(tmp_path / "a.png", partial) is True
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    # nothing numeric to draw: no file, no error
    assert plots.plot_history(tmp_path / "b.png", pd.DataFrame({"epoch": [1], "val_acc": [None]})) is False
    assert plots.plot_history(tmp_path / "c.png", None) is False
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "c.png").exists()


# ------------------------------------------------------------------ a root with one child (NABirds-like)
BIRDS = [["Birds"] + p for p in PATHS]  # level 0 has one group: trivial


def test_headline_level_skips_a_single_group_level(tmp_path, capsys):
    from utils.evaluation.measures import headline_level

    birds = Hierarchy([p[-1] for p in BIRDS], BIRDS)
    assert [birds.n_groups(level) for level in range(birds.n_levels)] == [1, 2, 4, 6]
    assert headline_level(birds) == 1 and headline_level(HIERARCHY) == 0
    runs = tmp_path / "record"
    make_run(runs / "birds_DR_euc_seed1", seed=1, hierarchy=birds)
    make_run(runs / "birds_DR_euc_seed2", seed=2, wrong=3, hierarchy=birds)
    assert evaluate.main([str(runs), "--no_plots", "--n_perm", "0"]) == 0
    printed = capsys.readouterr().out
    m = _load(runs / "birds_DR_euc_seed1" / "metrics.json")
    # every level is still computed; level 0 is the trivial 1.0, level 1 = the old level 0 of PATHS
    assert m["headline_level"] == 1 and m["mapr_0_W"] == 1.0 and "mapr_1_W" in m
    md = (runs / "summary.md").read_text()
    assert "mapr_1_W" in md and "mapr_1_proto" in md and "mapr_0_W" not in md
    assert "mapr_1" in printed.split("summary")[0] and "mapr_0" not in printed


def test_tree_plot_of_555_classes_under_a_single_root(tmp_path):
    from utils import trees
    from utils.evaluation import plots
    from utils.evaluation.representation import representative_distances

    n = 555
    paths = [["Birds", f"order{i % 7}", f"family{i % 37}", f"species{i}"] for i in range(n)]
    h = Hierarchy([p[-1] for p in paths], paths)
    assert plots.strip_level(h) == 1  # level 0 has 1 group, level 1 has 7
    rng = np.random.default_rng(0)
    Z_learned = trees.agglomerate(representative_distances(rng.normal(size=(n, 12)), "euc"))
    Z_true = trees.agglomerate(h.distances)
    plots.plot_trees(tmp_path / "tree_W.png", Z_learned, h, "W")
    assert (tmp_path / "tree_W.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the strips: one colour per level-1 group, the same on both sides, in each dendrogram's leaf order
    groups = h.level_groups(1)
    seen = {}
    for Z in (Z_learned, Z_true):
        colours, order = plots.strip_colours(Z, h, 1)
        assert sorted(order) == list(range(n)) and colours.shape == (n, 4)
        for g, colour in zip(groups[order], map(tuple, colours)):
            assert seen.setdefault(int(g), colour) == colour
    assert len(set(seen.values())) == 7
    colours, legend = plots.leaf_colours(h, 1)
    assert [name for name, _ in legend] == [f"order{i}" for i in range(7)]
    assert all(tuple(legend[g][1]) == seen[g] for g in range(7))
    # the taxonomy's tree keeps each order together: its strip changes colour 6 times
    true_strip, _ = plots.strip_colours(Z_true, h, 1)
    assert int(np.any(np.diff(true_strip, axis=0) != 0, axis=1).sum()) == 6


# ------------------------------------------------------------------ chance levels, trivial measures, legends
def test_chance_levels_and_trivial_measures_in_metrics_and_summary(tmp_path):
    runs = tmp_path / "runs"
    for seed in (1, 2):  # 6 classes x 9 images: N - 1 = 53 other test images, so hs@50 is near 1 for anything
        make_run(runs / f"synthetic_simple_DR_euc_seed{seed}", seed=seed, per_class=9, wrong=seed)
    assert evaluate.main([str(runs), "--no_plots", "--n_perm", "20", "--quiet"]) == 0
    m = _load(runs / "synthetic_simple_DR_euc_seed1" / "metrics.json")
    assert m["n_chance"] == 20 and m["n_rf_chance"] == 20  # never more relabellings than --n_perm
    for name in ("corr_mean_chance_W", "corr_mean_chance95_W", "corr_mean_perm_p_W", "rf_norm_chance_W",
                 "rf_taxonomy_chance_proto", "mapr_chance_0", "hs_chance@1"):
        assert m[name] is not None, name
    # level 0 has groups of 4 and 2 classes (C = 6, N = 5): (4 E[MAP@3 of 5] + 2 E[MAP@1 of 5]) / 6
    h3, h1 = 1 + 1 / 2 + 1 / 3, 1.0
    expected = (4 * (h3 + 2 / 4 * (3 - h3)) / 5 + 2 * h1 / 5) / 6
    assert m["mapr_chance_0"] == pytest.approx(expected)
    # hs@50: random embeddings are expected to reach 0.95 or more, so it is null, with the reason
    assert m["hs_chance@50"] >= 0.95 and m["hs@50"] is None and "goes to 1" in m["hs@50_null_reason"]
    assert m["hs@1"] is not None and m["hs_chance@1"] < m["hs@1"]
    md = (runs / "summary.md").read_text()
    table = md.split("### Hierarchical inference (W)")[1].split("###")[0]
    assert "| corr_mean_W | corr_mean_chance_W |" in table
    assert "- `corr_mean_W`: Spearman correlation" in table and "higher is better" in table
    assert "- `corr_mean_chance_W`: corr_mean of the same representatives" in table and "20 relabellings" in table
    assert f"]({os.path.relpath(os.path.join(ROOT, 'docs', 'evaluate.md'), runs)})" in table
    retrieval = md.split("### Retrieval")[1]
    assert "- `hs@50` is null (-) where marked: random embeddings are expected to score" in retrieval
    classification = md.split("### Classification (W)")[1].split("###")[0]
    assert "- `hp5_W` is null (-) where marked: the hp5 radius" in classification
    # every table has one legend line per column
    for block in md.split("### ")[1:]:
        header = next(line for line in block.splitlines() if line.startswith("| method"))
        columns = [c.strip() for c in header.strip("|").split("|")][4:]
        assert all(f"- `{c}`: " in block for c in columns), block.splitlines()[0]


def test_a_closed_pipe_ends_quietly(tmp_path):
    run = make_run(tmp_path / "synthetic_simple_DR_euc_seed1")
    read, write = os.pipe()
    os.close(read)  # `evaluate.py ... | head` after head has exited
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), str(run), "--no_plots", "--n_perm", "0"],
                          stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""
