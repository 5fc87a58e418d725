#!/usr/bin/env python
"""Findings of the synthetic benchmark, written from evaluated run records (no hand editing).

    python tools/results_synthetic.py record/synthetic_bench [record/synthetic_bench_hard] \\
        [--out docs/results_synthetic.md] [--figures docs/figures] [--readme README.md]

Reads every run folder (config.json + metrics.json, as written by train.py and
evaluate.py) under the given record folders, groups the runs by dataset name
(one section per dataset: the benchmark and its hard variant side by side),
and writes a Markdown report: the summary tables over seeds, the per-seed
paired differences ProxyDR - NormFace for every option, and one sentence per
finding of the paper, chosen by the numbers (rules in ``FINDING_RULES``).
It also prints the headline block and, with ``--readme``, rewrites the part of
the README between the markers ``<!-- results_synthetic:begin -->`` and
``<!-- results_synthetic:end -->``.
"""
import argparse
import datetime
import os
import re
import sys

import numpy as np
import pandas as pd
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import options, record  # noqa: E402
from utils.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402
from utils.io import write_text  # noqa: E402

#: The options compared between ProxyDR and NormFace (the paper's table rows).
OPTIONS = ("standard", "ema", "dnm", "ema+dnm", "mds", "mds+dnm")
#: Options that do not use the hierarchy in training (finding 1).
NO_HIERARCHY = ("standard", "ema", "dnm", "ema+dnm")
#: Measures where a lower value is better.
LOWER_IS_BETTER = ("ahc_W", "ahd5_W", "rf_taxonomy_W")
#: The hierarchy-informed measures of finding 2.
FINDING2 = ("ahc_W", "ahd5_W", "hp5_W", "hs@250", "ahs250")
ALPHA = 0.05
README_BEGIN = "<!-- results_synthetic:begin -->"
README_END = "<!-- results_synthetic:end -->"

FINDING_RULES = f"""\
How each verdict is chosen (p: two-sided paired t-test, level {ALPHA}):

* finding 1 (corr_mean_W, options without the hierarchy: {', '.join(NO_HIERARCHY)}): **holds** when the
  pooled per-seed differences favour ProxyDR with p < {ALPHA} and every option's mean difference favours
  ProxyDR; **does not hold** when the pooled mean difference does not favour ProxyDR; **mixed** otherwise;
* finding 2 ({', '.join(FINDING2)}, all six options pooled): **holds** when at least one measure favours
  ProxyDR with p < {ALPHA} and none favours NormFace with p < {ALPHA}; **does not hold** when no measure
  favours ProxyDR with p < {ALPHA}; **mixed** otherwise;
* findings 1 and 2 are **not tested** with fewer than two ProxyDR/NormFace pairs;
* finding 3 (corr_perm_p_proto of the untrained `--epochs 0` runs): **holds** when every such run has
  p < {ALPHA}; **does not hold** when none has; **mixed** otherwise.

Pooling treats the (option, seed) pairs as independent, which they are not quite (the seeds share data
splits across options); the per-option rows show the differences option by option."""


# ------------------------------------------------------------------ loading
def _seconds(config):
    try:
        start = datetime.datetime.fromisoformat(config["start_time"])
        end = datetime.datetime.fromisoformat(config["end_time"])
    except (KeyError, TypeError, ValueError):
        return None, None, None
    return start, end, (end - start).total_seconds()


def load_runs(folders):
    """One row per evaluated run: dataset, method, option, seed, untrained, timing and every metric."""
    rows = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise UserError(f"{folder} is not a folder; give the record folder(s) of the evaluated grid")
        for dirpath in record.evaluated_runs(folder):
            config, metrics = record.load_config(dirpath), record.load_metrics(dirpath)
            start, end, seconds = _seconds(config)
            history = record.load_history(dirpath)
            rows.append(dict(
                train_acc_last=None if history is None else float(history["train_acc"].iloc[-1]),
                w_init_cos=config.get("w_init_cos"), train_acc_eval=config.get("train_acc_eval"),
                run=os.path.basename(dirpath), path=dirpath, dataset=config.get("dataset"),
                method=config.get("method"), distance=config.get("distance"), option=options.grid_row(config),
                variant=options.variant_label(config),
                seed=config.get("seed"), untrained=config.get("epochs") == 0, start=start, end=end,
                seconds=seconds, config=config, **metrics,
            ))
    if not rows:
        raise UserError(f"no evaluated runs (config.json + metrics.json) under {', '.join(folders)}; "
                        "run the grid and evaluate.py first")
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ statistics
def better_sign(metric):
    return -1.0 if metric in LOWER_IS_BETTER else 1.0


def paired(dr, nf, metric):
    """Per-seed differences ProxyDR - NormFace and their summary.

    ``dr``/``nf``: Series indexed by seed.  Returns a dict: n, mean, std (ddof 1),
    better (seeds where ProxyDR is better, in the metric's direction), p_t (paired
    t-test, two-sided), p_wilcoxon (Wilcoxon signed-rank, two-sided, exact), diffs.
    """
    seeds = sorted(set(dr.dropna().index) & set(nf.dropna().index))
    d = np.array([float(dr[s]) - float(nf[s]) for s in seeds])
    out = dict(metric=metric, n=len(d), diffs=d, mean=np.nan, std=np.nan, better=0, p_t=np.nan, p_wilcoxon=np.nan)
    if len(d) == 0:
        return out
    out["mean"] = float(d.mean())
    out["better"] = int((better_sign(metric) * d > 0).sum())
    if len(d) >= 2:
        out["std"] = float(d.std(ddof=1))
        if np.any(d != d[0]):
            out["p_t"] = float(stats.ttest_rel(dr[seeds].astype(float), nf[seeds].astype(float)).pvalue)
        elif d[0] != 0:
            out["p_t"] = 0.0  # identical non-zero differences: no spread at all
        if np.any(d != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    return out


def compared_metrics(frame):
    """The measures compared per option, in report order (those present in the records)."""
    names = ["corr_mean_W", "corr_elem_W"]
    for kind in ("W", "proto"):
        levels = sorted(int(m.group(1)) for c in frame.columns if (m := re.fullmatch(rf"mapr_(\d+)_{kind}", c)))
        names += [f"mapr_{level}_{kind}" for level in levels if frame[f"mapr_{level}_{kind}"].notna().any()]
    names += ["rf_taxonomy_W", "ahc_W", "ahd5_W", "hp5_W", "hs@250", "ahs250"]
    return [n for n in names if n in frame.columns]


def _series(part, method, option, metric):
    rows = part[(part.method == method) & (part.option == option) & ~part.untrained]
    return rows.groupby("seed")[metric].first() if metric in rows else pd.Series(dtype=float)


def paired_table(part):
    """Paired differences for every option and measure of one dataset (a list of dicts with ``option``)."""
    out = []
    for option in OPTIONS:
        for metric in compared_metrics(part):
            result = paired(_series(part, "DR", option, metric), _series(part, "normface", option, metric), metric)
            if result["n"]:
                out.append(dict(option=option, **result))
    return out


def pooled(part, options, metric):
    """Paired differences of ``metric`` pooled over ``options`` (pairs = (option, seed))."""
    dr, nf = [], []
    for option in options:
        a, b = _series(part, "DR", option, metric), _series(part, "normface", option, metric)
        for seed in sorted(set(a.dropna().index) & set(b.dropna().index)):
            dr.append(a[seed])
            nf.append(b[seed])
    index = list(range(len(dr)))
    return paired(pd.Series(dr, index=index, dtype=float), pd.Series(nf, index=index, dtype=float), metric)


# ------------------------------------------------------------------ findings
def _favours_dr(result):
    return better_sign(result["metric"]) * result["mean"] > 0


def _significant(result):
    return not np.isnan(result["p_t"]) and result["p_t"] < ALPHA


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.1e}"


def _mean_of(part, method, options, metric):
    rows = part[(part.method == method) & part.option.isin(options) & ~part.untrained]
    return float(rows[metric].mean()) if metric in rows and len(rows) else np.nan


def finding1(part):
    """(verdict, sentence): ProxyDR's W reflect the taxonomy better than NormFace's without the hierarchy."""
    pool = pooled(part, NO_HIERARCHY, "corr_mean_W")
    per_option = [paired(_series(part, "DR", o, "corr_mean_W"), _series(part, "normface", o, "corr_mean_W"),
                         "corr_mean_W") for o in NO_HIERARCHY]
    per_option = [r for r in per_option if r["n"]]
    if pool["n"] == 0:
        return "not tested", "Finding 1 is not tested here: no paired ProxyDR/NormFace runs without the hierarchy."
    n_fav = sum(_favours_dr(r) for r in per_option)
    if pool["n"] < 2:
        verdict = "not tested (fewer than two pairs)"
    elif not _favours_dr(pool):
        verdict = "does not hold"
    elif _significant(pool) and n_fav == len(per_option):
        verdict = "holds"
    else:
        verdict = "mixed"
    sentence = (
        f"Finding 1 ({verdict}): without the hierarchy in training, ProxyDR's representatives correlate with the "
        f"taxonomy at corr_mean_W {_fmt(_mean_of(part, 'DR', NO_HIERARCHY, 'corr_mean_W'), 3)} against NormFace's "
        f"{_fmt(_mean_of(part, 'normface', NO_HIERARCHY, 'corr_mean_W'), 3)} (paired difference "
        f"{_fmt(pool['mean'], 3)} ± {_fmt(pool['std'], 3)}, ProxyDR better in {pool['better']} of {pool['n']} "
        f"option-seed pairs, paired t-test p = {_fmt(pool['p_t'], 3)}; mean difference in ProxyDR's favour in "
        f"{n_fav} of {len(per_option)} options)."
    )
    return verdict, sentence


def finding2(part):
    """(verdict, sentence): ProxyDR improves some hierarchy-informed measures."""
    results = [pooled(part, OPTIONS, m) for m in FINDING2 if m in part.columns]
    results = [r for r in results if r["n"]]
    if not results:
        return "not tested", "Finding 2 is not tested here: no paired ProxyDR/NormFace runs."
    for_dr = [r for r in results if _favours_dr(r) and _significant(r)]
    for_nf = [r for r in results if not _favours_dr(r) and r["mean"] != 0 and _significant(r)]
    if max(r["n"] for r in results) < 2:
        verdict = "not tested (fewer than two pairs)"
    elif not for_dr:
        verdict = "does not hold"
    elif for_nf:
        verdict = "mixed"
    else:
        verdict = "holds"
    parts = [f"{r['metric']} {_fmt(r['mean'], 3)} (better in {r['better']}/{r['n']}, p = {_fmt(r['p_t'], 3)})"
             for r in results]
    sentence = (
        f"Finding 2 ({verdict}): over all six options, ProxyDR minus NormFace is " + "; ".join(parts)
        + f" ({len(for_dr)} measure(s) significantly in ProxyDR's favour, {len(for_nf)} in NormFace's; "
        "lower is better for ahc and ahd5)."
    )
    return verdict, sentence


def finding3(part):
    """(verdict, sentence): an untrained network's prototypes correlate with the taxonomy better than chance."""
    rows = part[part.untrained]
    if "corr_perm_p_proto" not in rows or rows["corr_perm_p_proto"].notna().sum() == 0:
        return "not tested", "Finding 3 is not tested here: no evaluated `--epochs 0` runs with a permutation test."
    p = rows["corr_perm_p_proto"].dropna().astype(float)
    n_below = int((p < ALPHA).sum())
    verdict = "holds" if n_below == len(p) else ("does not hold" if n_below == 0 else "mixed")
    spread = (f"permutation p-value {_fmt(float(p.min()), 3)} in every run" if p.min() == p.max() else
              f"permutation p-values {_fmt(float(p.min()), 3)} to {_fmt(float(p.max()), 3)}")
    sentence = (
        f"Finding 3 ({verdict}): the prototypes of the untrained networks (`--epochs 0`, {len(p)} runs) correlate "
        f"with the taxonomy at corr_mean_proto {_fmt(float(rows['corr_mean_proto'].mean()), 3)}, {spread} "
        f"({n_below} of {len(p)} below {ALPHA})."
    )
    return verdict, sentence


# ------------------------------------------------------------------ report
def training_table(part):
    """Did the networks learn?  Per method and option, mean ± std over seeds of the training accuracy of the
    evaluated checkpoint (``train_acc_eval``: the training split scored after training, no augmentation), the
    running training accuracy of the last epoch (``history.csv``, measured while the weights still move), the test
    accuracy (W) and ``w_init_cos`` (mean cosine between the initial and final rows of W; 1 = W never moved, as
    for fixed MDS representatives and untrained runs)."""
    lines = ["| method | option | runs | train acc (evaluated checkpoint) | train acc (running, last epoch) | "
             "test acc (W) | w_init_cos |", "|---|---|---:|---:|---:|---:|---:|"]
    order = {o: i for i, o in enumerate(OPTIONS + ("corr",))}
    groups = part.assign(opt=[("untrained" if u else o) for o, u in zip(part.option, part.untrained)])
    keys = sorted(groups.groupby(["method", "opt"]).groups, key=lambda k: (k[0], order.get(k[1], -1)))
    for method, opt in keys:
        g = groups[(groups.method == method) & (groups.opt == opt)]
        cells = []
        for column in ("train_acc_eval", "train_acc_last", "acc_W", "w_init_cos"):
            v = pd.to_numeric(g[column], errors="coerce").dropna() if column in g else pd.Series(dtype=float)
            cells.append("-" if v.empty else f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}")
        lines.append(f"| {method} | {opt} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def learned_enough(part, threshold=0.95):
    """One sentence: how many standard NormFace / ProxyDR runs reach ``threshold`` training accuracy on their
    evaluated checkpoint (the benchmark preset's requirement), naming the runs that do not."""
    runs = part[(part.option == "standard") & ~part.untrained & part.method.isin(["DR", "normface"])]
    acc = pd.to_numeric(runs["train_acc_eval"], errors="coerce") if "train_acc_eval" in runs else None
    if acc is None or acc.notna().sum() == 0:
        return "No training accuracy of the evaluated checkpoints is recorded (`train_acc_eval`)."
    below = runs[acc < threshold]
    text = (f"Standard NormFace and ProxyDR runs at or above {threshold:.0%} training accuracy on their evaluated "
            f"checkpoint: {int((acc >= threshold).sum())} of {int(acc.notna().sum())}")
    if below.empty:
        return text + "."
    return text + "; below: " + ", ".join(f"{m} seed {int(sd)} ({a:.3f})" for m, sd, a in
                                          zip(below.method, below.seed, acc[acc < threshold])) + "."


def summary_tables(part, docs="evaluate.md"):
    """The evaluate.py summary (mean ± std over seeds) of one dataset's runs, as Markdown (``docs``: the link
    to docs/evaluate.md from the report's folder)."""
    from utils.evaluation.summary import summarise, summary_markdown

    rows = []
    for _, r in part.iterrows():
        metrics = {k: r[k] for k in part.columns if k not in ("run", "path", "dataset", "method", "distance",
                                                                "option", "variant", "seed", "untrained", "start", "end",
                                                                "seconds", "config", "train_acc_last", "w_init_cos",
                                                                "train_acc_eval")}
        group = re.sub(r"_seed\d+$", "", r["run"]) + ("/untrained" if r["untrained"] else "")  # never pooled
        rows.append(dict(run=r["run"], group=group, dataset=r["dataset"], backbone=r["config"].get("backbone"),
                         method=r["method"], distance=r["distance"], options=options.options_label(r["config"]), **metrics))
    text = summary_markdown(summarise(rows), docs=docs)
    lines = [line for line in text.splitlines() if not line.startswith("# ")]
    return "\n".join("##" + line if line.startswith("#") else line for line in lines).strip()


def timing(part):
    """(sum of run seconds, wall span in seconds from the first start to the last end, runs timed)."""
    timed = part.dropna(subset=["seconds"])
    if timed.empty:
        return None, None, 0
    span = (max(timed["end"]) - min(timed["start"])).total_seconds()
    return float(timed["seconds"].sum()), float(span), len(timed)


def _minutes(seconds):
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def dataset_section(dataset, part, docs="evaluate.md"):
    lines = [f"## {dataset}", ""]
    total, span, n_timed = timing(part)
    seeds = sorted(part.seed.dropna().unique())
    lines += [f"{len(part)} evaluated runs, seeds {', '.join(str(int(s)) for s in seeds)}; training time "
              f"{_minutes(total)} summed over {n_timed} runs, {_minutes(span)} from the first start to the last "
              "end (config.json start_time/end_time).", ""]
    lines += ["### Findings", ""]
    verdicts = {}
    for name, rule in (("1", finding1), ("2", finding2), ("3", finding3)):
        verdict, sentence = rule(part)
        verdicts[name] = (verdict, sentence)
        lines += [f"* {sentence}"]
    lines += [""]

    lines += ["### Did the networks learn?", "",
              "Mean ± standard deviation over seeds; `w_init_cos` is the mean cosine between W's rows at "
              "initialisation and at the evaluated checkpoint (1: W never moved).", "", training_table(part), "",
              learned_enough(part), ""]
    lines += ["### Paired differences ProxyDR - NormFace", "",
              "Per option and measure: the per-seed differences, their mean and sample standard deviation, the "
              "number of seeds where ProxyDR is better (lower is better for "
              + ", ".join(LOWER_IS_BETTER) + "), the two-sided paired t-test p-value, and the Wilcoxon "
              "signed-rank p-value (exact; with n seeds its smallest possible value is 2 / 2^n, 0.25 for 3 seeds and "
              "0.0625 for 5, so the t-test is the more informative one, at the price of assuming normal "
              "differences).", "",
              "| option | measure | seeds | differences | mean | std | ProxyDR better | p (paired t) | p (Wilcoxon) |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in paired_table(part):
        diffs = ", ".join(_fmt(float(v), 3) for v in r["diffs"])
        lines.append(f"| {r['option']} | {r['metric']} | {r['n']} | {diffs} | {_fmt(r['mean'])} | {_fmt(r['std'])} "
                     f"| {r['better']}/{r['n']} | {_fmt(r['p_t'], 3)} | {_fmt(r['p_wilcoxon'], 3)} |")
    lines += ["", summary_tables(part, docs), ""]
    return "\n".join(lines), verdicts, (total, span)


def headline(sections):
    """The short block for the README: per dataset, the three verdicts and the grid time."""
    lines = []
    for dataset, (verdicts, (total, span)) in sections.items():
        lines.append(f"**{dataset}** (grid: {_minutes(span)} wall, {_minutes(total)} of training summed):")
        lines.append("")
        lines += [f"* {sentence}" for _, sentence in verdicts.values()]
        lines.append("")
    return "\n".join(lines).strip()


def rewrite_readme(path, block):
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if README_BEGIN not in text or README_END not in text:
        raise UserError(f"{path} lacks the markers {README_BEGIN} ... {README_END}; add them where the findings go")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    write_text(path, f"{head}{README_BEGIN}\n{block}\n{README_END}{tail}")


def tree_figures(part, folder):
    """Learned WPGMA trees of ProxyDR and NormFace (standard option, smallest seed) beside the taxonomy."""
    from utils import trees
    from utils.evaluation import plots
    from utils.evaluation import representation as rep_m

    done = []
    runs = part[(part.option == "standard") & ~part.untrained & part.method.isin(["DR", "normface"])]
    common = set(runs[runs.method == "DR"].seed) & set(runs[runs.method == "normface"].seed)
    if not common:
        return done
    seed = min(common)
    os.makedirs(folder, exist_ok=True)
    for method in ("normface", "DR"):
        row = runs[(runs.method == method) & (runs.seed == seed)].iloc[0]
        run = record.load_run(row["path"])
        D = rep_m.representative_distances(run.outputs["representatives"], str(row["distance"]))
        Z = trees.agglomerate(D, "wpgma")
        label = {"DR": "ProxyDR", "normface": "NormFace"}[method]
        path = os.path.join(folder, f"trees_{row['dataset']}_{method}_seed{int(seed)}.png")
        plots.plot_trees(path, Z, run.hierarchy, f"{label}'s W", distance=str(row["distance"]), run=run.name)
        done.append(path)
    return done


def build_report(frame, figures=None, out_dir=None):
    """(markdown text, headline block)."""
    lines = ["# Findings on the synthetic benchmark", "",
             "Generated by `tools/results_synthetic.py` from the evaluated records of `make reproduce`; "
             "do not edit by hand.", "", FINDING_RULES, ""]
    sections = {}
    variants = frame.groupby("dataset")["variant"].nunique()
    for (dataset, variant), part in frame.groupby(["dataset", "variant"], sort=True):
        # runs that differ in anything but the grid row, method and seed never share a row
        title = dataset if variants[dataset] == 1 else f"{dataset} ({variant})"
        docs = os.path.relpath(os.path.join(ROOT, "docs", "evaluate.md"), out_dir or os.path.join(ROOT, "docs"))
        text, verdicts, times = dataset_section(title, part, docs)
        sections[title] = (verdicts, times)
        lines += [text, ""]
        if figures:
            paths = tree_figures(part, figures)
            if paths:
                lines += ["### Learned trees (standard option, one seed)", ""]
                base = out_dir or os.curdir
                lines += [f"![{os.path.basename(p)}]({os.path.relpath(p, base)})" for p in paths] + [""]
    return "\n".join(lines).rstrip() + "\n", headline(sections)


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+", help="record folder(s) holding the evaluated grid runs")
    p.add_argument("--out", default=os.path.join("docs", "results_synthetic.md"), help="the Markdown report")
    p.add_argument("--figures", default=os.path.join("docs", "figures"),
                   help="folder for the learned-tree figures ('' skips them)")
    p.add_argument("--readme", default=None, help="rewrite this README's results_synthetic section")
    return p.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    frame = load_runs(args.records)
    text, block = build_report(frame, args.figures or None, os.path.dirname(os.path.abspath(args.out)))
    try:
        write_text(args.out, text)
    except OSError as err:
        raise UserError(f"cannot write {args.out}: {err.strerror or err}; choose another --out") from None
    if args.readme:
        rewrite_readme(args.readme, block)
    print(block)
    print(f"\nreport written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
