"""tools/results_synthetic.py on a hand-built miniature grid of records (two seeds)."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from tools import results_synthetic as R
from utils.errors import UserError

OPTION_FLAGS = {"standard": {}, "ema": {"ema": True}, "dnm": {"dynamic": True}}
# corr_mean_W per (option, seed): ProxyDR, NormFace
CORR = {
    ("standard", 1): (0.50, 0.30), ("standard", 2): (0.40, 0.35),
    ("ema", 1): (0.45, 0.25), ("ema", 2): (0.42, 0.30),
    ("dnm", 1): (0.48, 0.28), ("dnm", 2): (0.41, 0.26),
}
# ahc_W per (option, seed): ProxyDR, NormFace (lower is better)
AHC = {
    ("standard", 1): (1.0, 1.1), ("standard", 2): (1.2, 1.1),
    ("ema", 1): (0.9, 1.3), ("ema", 2): (1.0, 1.2),
    ("dnm", 1): (0.8, 1.0), ("dnm", 2): (0.9, 1.2),
}


def write_run(root, dataset, method, option, seed, metrics, epochs=10, minute=0):
    name = f"{dataset}_simple_{method}_euc_{option}_{'ep0_' if epochs == 0 else ''}seed{seed}"
    folder = root / name
    folder.mkdir(parents=True)
    config = dict(dataset=dataset, backbone="simple", method=method, distance="euc", seed=seed, epochs=epochs,
                  ema=False, dynamic=False, mds_W=False, CORR=False, beta=1.0, alpha=0.01,
                  start_time=f"2026-11-28T10:{minute:02d}:00+00:00", end_time=f"2026-11-28T10:{minute:02d}:30+00:00")
    config.update(OPTION_FLAGS[option])
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def make_grid(root, dataset="synthetic_bench", flip=False, random_p=(0.001, 0.002, 0.004, 0.003)):
    minute = 0
    for (option, seed), (dr, nf) in CORR.items():
        if flip:
            dr, nf = nf, dr
        ahc_dr, ahc_nf = AHC[(option, seed)]
        for method, corr, ahc in (("DR", dr, ahc_dr), ("normface", nf, ahc_nf)):
            write_run(root, dataset, method, option, seed, {"corr_mean_W": corr, "ahc_W": ahc, "acc_W": 0.9},
                      minute=minute)
            minute += 1
    for k, (method, seed) in enumerate((("DR", 1), ("DR", 2), ("normface", 1), ("normface", 2))):
        write_run(root, dataset, method, "standard", seed,
                  {"corr_mean_W": 0.0, "ahc_W": 2.0, "corr_mean_proto": 0.2, "corr_perm_p_proto": random_p[k]},
                  epochs=0, minute=minute)
        minute += 1


def test_paired_differences_counts_and_p_values(tmp_path):
    make_grid(tmp_path)
    frame = R.load_runs([str(tmp_path)])
    assert len(frame) == 16 and frame.untrained.sum() == 4
    table = {(r["option"], r["metric"]): r for r in R.paired_table(frame[frame.dataset == "synthetic_bench"])}

    r = table[("standard", "corr_mean_W")]
    # differences 0.20 and 0.05: mean 0.125, std |0.20 - 0.05| / sqrt 2
    assert r["n"] == 2 and r["better"] == 2
    np.testing.assert_allclose(r["diffs"], [0.20, 0.05])
    assert r["mean"] == pytest.approx(0.125)
    assert r["std"] == pytest.approx(0.15 / math.sqrt(2))
    # two pairs: t = mean / (std / sqrt 2) = 0.125 / 0.075 with 1 degree of freedom (Cauchy): p = 1 - 2 atan(t) / pi
    assert r["p_t"] == pytest.approx(1 - 2 * math.atan(0.125 / 0.075) / math.pi)
    assert r["p_wilcoxon"] == pytest.approx(0.5)  # exact, n = 2, both positive: 2 * (1/4)

    r = table[("standard", "ahc_W")]  # differences -0.1, +0.1: ProxyDR better (lower) in one seed
    assert r["better"] == 1 and r["mean"] == pytest.approx(0.0, abs=1e-12)
    r = table[("ema", "ahc_W")]  # -0.4, -0.2: better in both
    assert r["better"] == 2 and r["mean"] == pytest.approx(-0.3)
    assert r["p_t"] == pytest.approx(stats.ttest_rel([0.9, 1.0], [1.3, 1.2]).pvalue)

    pool = R.pooled(frame, R.NO_HIERARCHY, "corr_mean_W")
    dr = [CORR[k][0] for k in CORR]
    nf = [CORR[k][1] for k in CORR]
    assert pool["n"] == 6 and pool["better"] == 6
    assert pool["p_t"] == pytest.approx(stats.ttest_rel(dr, nf).pvalue)


def test_report_findings_follow_the_numbers(tmp_path, capsys):
    make_grid(tmp_path / "bench")
    make_grid(tmp_path / "hard", dataset="synthetic_bench_hard", flip=True, random_p=(0.001, 0.2, 0.3, 0.5))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{R.README_BEGIN}\nold\n{R.README_END}\nrest\n")
    out = tmp_path / "docs" / "results.md"
    R.main([str(tmp_path / "bench"), str(tmp_path / "hard"), "--out", str(out), "--figures", "",
            "--readme", str(readme)])
    text = out.read_text()
    bench, hard = text.split("\n## synthetic_bench_hard\n")
    bench = bench.split("## synthetic_bench\n")[1]
    # benchmark: ProxyDR better in all 6 pairs, p well below 0.05; random-weight p-values all below 0.05
    assert "Finding 1 (holds)" in bench and "6 of 6 option-seed pairs" in bench
    assert "Finding 3 (holds)" in bench and "4 of 4 below 0.05" in bench
    # ahc pooled: diffs -0.1, .1, -.4, -.2, -.2, -.3 -> in ProxyDR's favour; p from scipy decides finding 2
    p_ahc = stats.ttest_rel([AHC[k][0] for k in AHC], [AHC[k][1] for k in AHC]).pvalue
    assert p_ahc < 0.05 and "Finding 2 (holds)" in bench
    # the hard copy has ProxyDR and NormFace swapped on corr_mean_W: finding 1 flips
    assert "Finding 1 (does not hold)" in hard and "0 of 6 option-seed pairs" in hard
    assert "Finding 3 (mixed)" in hard and "1 of 4 below 0.05" in hard
    # timing: 16 runs of 30 s = 8.0 min summed; first start 10:00, last end 10:15:30
    assert "8.0 min summed over 16 runs, 15.5 min from the first start" in bench
    assert "| standard | corr_mean_W | 2 | 0.200, 0.050 | 0.1250 |" in bench
    assert "### Hierarchical inference (W)" in bench  # the evaluate.py summary tables
    new = readme.read_text()
    assert "\nold\n" not in new and "Finding 1 (holds)" in new and new.endswith(f"{R.README_END}\nrest\n")
    assert "Finding 1 (does not hold)" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        R.main([str(tmp_path), "--out", str(tmp_path / "r.md"), "--figures", ""])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "no evaluated runs" in err and len(err.splitlines()) == 1
    make_grid(tmp_path / "g")
    (tmp_path / "README.md").write_text("no markers\n")
    with pytest.raises(UserError, match="lacks the markers"):
        R.rewrite_readme(str(tmp_path / "README.md"), "block")
    assert (tmp_path / "README.md").read_text() == "no markers\n"


def test_compare_prints_runs_side_by_side(tmp_path, capsys):
    from tools import compare

    for method, corr, p in (("normface", 0.2086, 0.002), ("DR", 0.395, 0.001)):
        folder = tmp_path / f"synthetic_simple_{method}_euc_rand_seed1"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"method": method, "w_init_cos": 0.85}))
        (folder / "metrics.json").write_text(json.dumps({"acc_W": 0.9, "corr_mean_W": corr, "corr_perm_p_W": p,
                                                         "rf_taxonomy_W": None, "ahd5_W": 3.5}))
    (tmp_path / "summary.md").write_text("not a run")
    assert compare.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ProxyDR", "NormFace"]  # folders in sorted order: DR before normface
    corr = next(line for line in lines if line.startswith("corr_mean_W"))
    assert "0.3950" in corr and corr.index("0.3950") < corr.index("0.2086")
    rf = next(line for line in lines if line.startswith("rf_taxonomy_W"))
    words = rf.split()
    assert words[words.index("taxonomy") + 1: words.index("taxonomy") + 3] == ["-", "-"]  # null shown as -
    with pytest.raises(SystemExit) as stop:
        compare.main([str(tmp_path / "missing")])
    assert stop.value.code == 2


def test_training_table_means_and_standard_deviations(tmp_path):
    make_grid(tmp_path)
    for seed, acc, cos in ((1, 0.96, 0.80), (2, 0.98, 0.90)):  # standard ProxyDR: what training recorded
        folder = tmp_path / f"synthetic_bench_simple_DR_euc_standard_seed{seed}"
        config = json.loads((folder / "config.json").read_text())
        config.update(train_acc_eval=acc, w_init_cos=cos)
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "history.csv").write_text(f"epoch,train_acc\n1,0.5\n2,{acc - 0.02}\n")
    frame = R.load_runs([str(tmp_path)])
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in R.training_table(frame).splitlines()}
    # mean and sample std: train acc 0.97 ± 0.0141, running 0.95 ± 0.0141, test 0.9 ± 0, w_init_cos 0.85 ± 0.0707
    assert rows[("DR", "standard")] == ("| DR | standard | 2 | 0.970 ± 0.014 | 0.950 ± 0.014 | 0.900 ± 0.000 | "
                                        "0.850 ± 0.071 |")
    assert rows[("DR", "untrained")].endswith("| - | - | - | - |")  # nothing recorded for those runs
    assert R.learned_enough(frame) == ("Standard NormFace and ProxyDR runs at or above 95% training accuracy on "
                                       "their evaluated checkpoint: 2 of 2.")
    assert R.learned_enough(frame, threshold=0.97).endswith("1 of 2; below: DR seed 1 (0.960).")


def test_runs_that_differ_in_any_other_option_are_reported_apart(tmp_path):
    """Two grids that differ only in --distance or --clspri never share a row (utils/options.variant_label)."""
    make_grid(tmp_path / "euc")
    make_grid(tmp_path / "clspri", flip=True)
    for folder in (tmp_path / "clspri").iterdir():
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, clspri=True)))
    frame = R.load_runs([str(tmp_path)])
    assert sorted(frame.variant.unique()) == ["euc, -", "euc, clspri"]
    assert set(frame.option) == {"standard", "ema", "dnm"}  # the grid row, whatever the other options
    text, block = R.build_report(frame)
    assert "## synthetic_bench (euc, -)" in text and "## synthetic_bench (euc, clspri)" in text
    # each variant keeps its own seeds: the flipped grid is NormFace's, the other ProxyDR's
    assert "Finding 1 (holds)" in block and "Finding 1 (does not hold)" in block
