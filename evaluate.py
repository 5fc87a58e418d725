"""Evaluate training runs from their records alone (no dataset or model needed).

    python evaluate.py record/<run>                 one run
    python evaluate.py record/                      every run in a folder of runs
    python evaluate.py record/a_seed1 record/a_seed2 --last
    python evaluate.py --weights FILE --hierarchy FILE   any classifier's class vectors (docs/evaluate.md)
    python evaluate.py --outputs FILE.npz --hierarchy FILE   any model's test outputs (docs/evaluate.md)

For each run this writes, into the run folder: metrics.json (flat name: value),
metrics.csv, per_class.csv, confusion.npz, hs_curve.csv, Newick trees
(tree_W.nwk, tree_proto.nwk, tree_true.nwk, tree_taxonomy.nwk), PNG plots and
evaluate.log (one line per stage, with its seconds; a progress bar on the
terminal meanwhile), and prints a summary.  With several runs it also writes summary.csv and
summary.md (mean ± std over seeds per run group) next to the runs.
The metric names are documented in docs/evaluate.md.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd
from tqdm import tqdm

from utils import record
from utils.errors import ArgumentParser, UserError, exit_on_user_error
from utils.evaluation import inspect as inspect_weights
from utils.evaluation.chance import NULL_REASON
from utils.evaluation.measures import N_PERM, evaluate_outputs
from utils.evaluation.outputs import load_model_outputs
from utils.evaluation.stages import LOG, Stages, file_log, stage
from utils.evaluation.summary import summarise, summary_markdown, summary_row
from utils.evaluation.weights import load_hierarchy
from utils.io import write_dataframe_csv, write_json, write_npz, write_text

ROOT = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = ArgumentParser(
        prog="evaluate.py",
        description=__doc__.split("\n\n")[0].strip()
        + " Computes the hierarchical-inference, hierarchy-informed classification and retrieval"
        " metrics of the paper from record/<run>/ and writes them into the run folder.",
        epilog="Exit status 2 with one line on stderr when a folder is not a run record or its arrays disagree.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run folder(s) (record/<run name>) or folder(s) of runs")
    parser.add_argument(
        "--last",
        action="store_true",
        help="evaluate outputs_test_last.npz (the last epoch) instead of outputs_test.npz; "
        "files get the suffix _last (metrics_last.json, ...)",
    )
    parser.add_argument("--no_plots", action="store_true", help="skip the PNG plots (faster)")
    parser.add_argument(
        "--summary_dir",
        default=None,
        help="where summary.csv/summary.md go when several runs are given (default: the folder holding the runs)",
    )
    parser.add_argument(
        "--n_perm",
        type=int,
        default=N_PERM,
        help=f"class relabellings of the corr_perm_p permutation test (default {N_PERM}); the chance levels "
        "use at most 99 (corr_mean) and 30 (trees) of that many; 0 skips both",
    )
    parser.add_argument("--perm_seed", type=int, default=0, help="seed of the permutation test (default 0)")
    parser.add_argument(
        "--block_mb",
        type=int,
        default=16,
        help="memory for one block of query-database similarities in hs@k, in MiB (default 16)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads computing hs@k blocks side by side (default: the number of CPUs, at most 8)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary table, no per-run block")
    inspect_weights.add_arguments(parser)
    g = parser.add_argument_group(
        "evaluate any model's test outputs (instead of RUN)",
        "python evaluate.py --outputs FILE.npz --hierarchy FILE [--distance euc|arccos] [--out DIR]; "
        "--hierarchy, --data_root and --out as for --weights",
    )
    g.add_argument("--outputs", metavar="FILE",
                   help="an .npz with labels [N] and scores [N, C], optionally embeddings [N, D], representatives "
                        "[C, D], prototypes, scores_proto (docs/evaluate.md); default --out: evaluate_<file name>")
    g.add_argument("--distance", choices=("euc", "arccos"), default=None,
                   help="distance between normalised vectors for the representation and retrieval measures "
                        "(default euc)")
    g.add_argument("--beta", type=float, default=None, help="beta of the tree-distance transform (default 1)")
    args = parser.parse_args(argv)
    if args.outputs is None:
        given = [f"--{n}" for n in ("distance", "beta") if getattr(args, n) is not None]
        if given:
            parser.error(f"{', '.join(given)} only go with --outputs")
        inspect_weights.check_arguments(parser, args)
    elif args.runs or args.weights is not None:
        parser.error("give --outputs alone, not with RUN folders or --weights")
    elif args.hierarchy is None:
        parser.error("--outputs needs --hierarchy (a hierarchy CSV, or a dataset name with --data_root)")
    elif args.key is not None or args.last or args.summary_dir is not None:
        parser.error("--key, --last and --summary_dir do not go with --outputs")
    if args.n_perm < 0:
        parser.error("--n_perm must be >= 0")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.block_mb < 1:
        parser.error("--block_mb must be >= 1")
    return args


def outputs_name(run_dir, last):
    """The outputs file to read: outputs_test.npz, or for --last outputs_test_last.npz.

    Without outputs_test_last.npz the evaluated checkpoint already is the last
    one when the run had no validation split (or its best epoch was the last),
    so outputs_test.npz is read then; otherwise the run lacks the file.
    """
    if not last:
        return record.OUTPUTS_TEST
    if os.path.isfile(os.path.join(run_dir, record.OUTPUTS_TEST_LAST)):
        return record.OUTPUTS_TEST_LAST
    config = record.load_config(run_dir)
    best = config.get("best_epoch")
    history = record.load_history(run_dir)
    last_epoch = None
    if history is not None and "epoch" in history.columns and len(history):
        last_epoch = history["epoch"].iloc[-1]
    if not config.get("use_val") or (best is not None and best in (config.get("epochs"), last_epoch)):
        return record.OUTPUTS_TEST
    raise UserError(
        f"{run_dir} has no {record.OUTPUTS_TEST_LAST} although its evaluated checkpoint is epoch {best}; "
        "evaluate it without --last"
    )


def suffixed(name, last):
    if not last:
        return name
    stem, ext = os.path.splitext(name)
    return f"{stem}_last{ext}"


def write_run_files(run, result, last, plots, stages=None):
    out = lambda name: os.path.join(run.path, suffixed(name, last))  # noqa: E731
    with stage(stages, "files"):
        _write_tables(run, result, out)
    if not plots:
        return
    with stage(stages, "plots"):
        _write_plots(run, result, out, last)


def _write_tables(run, result, out):
    record.write_metrics(out(record.METRICS_JSON), out(record.METRICS_CSV), result.metrics)
    write_dataframe_csv(out(record.PER_CLASS_CSV), result.per_class)
    write_npz(out(record.CONFUSION_NPZ), **result.confusion)
    curve = {"k": np.arange(1, result.hs.size + 1), "hs": result.hs, "hs_chance": result.hs_chance}
    write_dataframe_csv(out(record.HS_CURVE_CSV), pd.DataFrame(curve))
    trees = {"W": record.TREE_W, "proto": record.TREE_PROTO, "true": record.TREE_TRUE, "taxonomy": record.TREE_TAXONOMY}
    for kind, name in trees.items():
        if kind in result.newick:  # the W and proto trees need the representatives / prototypes
            write_text(out(name), result.newick[kind])


def _write_plots(run, result, out, last):
    from utils.evaluation import plots as P

    distance = str(run.config.get("distance", "euc"))
    name = run.name + (" (last epoch)" if last else "")
    names = {"W": "W", "proto": "prototypes"}
    for kind in [k for k in ("W", "proto") if k in result.linkage] if run.hierarchy.n_classes >= 2 else ():
        P.plot_trees(out(f"tree_{kind}.png"), result.linkage[kind], run.hierarchy,
                     names[kind], distance=distance, run=name)
        P.plot_distances(out(f"distances_{kind}.png"), result.distances[kind], run.hierarchy, names[kind], distance,
                         run=name)
    if result.hs.size:
        P.plot_hs_curve(out("hs_curve.png"), result.hs, result.hs_chance, run=name,
                        n_test=result.metrics["n_test"], distance=distance)
    P.plot_history(os.path.join(run.path, "training_curves.png"), run.history, run=run.name)


# --------------------------------------------------------------- terminal
def _fmt(value, width=7):
    if value is None:
        return "-".rjust(width)
    if isinstance(value, int):
        return str(value).rjust(width)
    return f"{value:.4f}".rjust(width)


def run_block(run, metrics):
    """A readable block of the main metrics of one run."""
    h = run.hierarchy
    lines = [
        f"{run.name}  ({metrics['n_test']} test images, {h.n_classes} classes, {h.n_levels} levels; "
        f"{run.config.get('method', '?')}, {run.config.get('distance', '?')})"
    ]
    cls = ["acc", "top5", "ahc", "ahd5", "hp5", "ece"]
    rep = ["corr_mean", "corr_elem", "corr_perm_p", f"mapr_{metrics.get('headline_level') or 0}", "rf_norm", "rf_taxonomy"]
    level = metrics.get("headline_level") or 0
    head = "  " + " " * 6 + "".join(n.rjust(9) for n in cls) + "  |" + "".join(n.rjust(12) for n in rep)
    lines.append(head)
    for kind in ("W", "proto"):
        row = "".join(_fmt(metrics.get(f"{n}_{kind}"), 9) for n in cls)
        row += "  |" + "".join(_fmt(metrics.get(f"{n}_{kind}"), 12) for n in rep)
        lines.append(f"  {kind:<6}{row}")
    lines.append(f"  {'chance':<6}{'':<{len(cls) * 9}}  |" + "".join(
        _fmt(metrics.get(n), 12) for n in ("corr_mean_chance_W", None, None, f"mapr_chance_{level}",
                                           "rf_norm_chance_W", "rf_taxonomy_chance_W")))
    notes = [f"corr_mean_perm_p {_fmt(metrics.get(f'corr_mean_perm_p_{k}'), 0)} ({k})" for k in ("W", "proto")]
    notes.append(f"corr_mean_chance95 {_fmt(metrics.get('corr_mean_chance95_W'), 0)} (W)")
    lines.append("  chance (W, classes relabelled at random): " + ", ".join(notes))
    living = [n for n in ("corr_mean_living_W", "corr_elem_living_W", "corr_mean_living_proto", "corr_elem_living_proto") if n in metrics]
    if living:
        lines.append("  living: " + "  ".join(f"{n} {_fmt(metrics[n], 0)}" for n in living))
    hs = [n for n in metrics if n.startswith("hs@") and not n.endswith(NULL_REASON)] + ["ahs250"]
    lines.append("  retrieval: " + "  ".join(f"{n} {_fmt(metrics.get(n), 0)}" for n in hs))
    chance_hs = [n for n in metrics if n.startswith("hs_chance@")] + ["ahs250_chance"]
    lines.append("  random embeddings: " + "  ".join(f"{n} {_fmt(metrics.get(n), 0)}" for n in chance_hs))
    lines += [f"  {n[: -len(NULL_REASON)]} is null: {v}" for n, v in metrics.items() if n.endswith(NULL_REASON)]
    return "\n".join(lines)


def summary_folder(run_dirs, explicit):
    if explicit:
        return explicit
    parents = [os.path.dirname(os.path.abspath(os.path.normpath(r))) for r in run_dirs]
    return os.path.commonpath(parents)


def evaluate_model_outputs(args):
    """``--outputs``: any model's test outputs against a hierarchy, measured and written as a run's evaluation
    (metrics.json, metrics.csv, per_class.csv, ...) into ``--out``, with source.json naming what was read."""
    hierarchy, dataset = load_hierarchy(args.hierarchy, args.data_root)
    arrays = load_model_outputs(args.outputs, hierarchy.n_classes)
    config = {"dataset": dataset, "distance": args.distance or "euc", "beta": 1.0 if args.beta is None else args.beta}
    stem = os.path.splitext(os.path.basename(os.path.normpath(args.outputs)))[0]
    out = args.out or f"evaluate_{stem}"
    try:
        stages = Stages(file_log(os.path.join(out, LOG)))
    except OSError as err:
        raise UserError(f"cannot write the results into {out}: {err.strerror or err}; choose another --out") from None
    result = evaluate_outputs(config, hierarchy, arrays, n_perm=args.n_perm, seed=args.perm_seed,
                              block_bytes=args.block_mb << 20, workers=args.workers, stages=stages)
    run = record.Run(out, stem, config, hierarchy, None, arrays, os.path.abspath(args.outputs))
    source = dict(config, outputs=os.path.abspath(args.outputs), arrays=sorted(arrays),
                  hierarchy=args.hierarchy if args.data_root else os.path.abspath(args.hierarchy),
                  n_perm=args.n_perm, perm_seed=args.perm_seed)
    try:
        write_run_files(run, result, False, plots=not args.no_plots, stages=stages)
        write_json(os.path.join(out, inspect_weights.SOURCE_JSON), source)
    except OSError as err:
        raise UserError(f"cannot write the results into {out}: {err.strerror or err}; choose another --out") from None
    if not args.quiet:
        print(run_block(run, result.metrics))
    print(f"written to {out}/ ({record.METRICS_JSON}, {record.METRICS_CSV}, {record.PER_CLASS_CSV}, ...)")
    return 0


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if args.weights is not None:
        return inspect_weights.run(args)
    if args.outputs is not None:
        return evaluate_model_outputs(args)
    skipped = []
    wanted = (record.OUTPUTS_TEST, record.OUTPUTS_TEST_LAST) if args.last else record.OUTPUTS_TEST
    run_dirs = record.find_runs(args.runs, outputs=wanted, skipped=skipped)
    for run_dir in skipped:
        print(f"note: skipping {run_dir}: no test outputs yet (still training?)", file=sys.stderr)
    rows = []
    bar = tqdm(run_dirs, desc="evaluating", unit="run", disable=None if len(run_dirs) > 1 else True, file=sys.stderr)
    for run_dir in bar:
        run = record.load_run(run_dir, outputs_name(run_dir, args.last))
        bar.set_postfix_str(run.name[-40:])
        try:
            stages = Stages(file_log(os.path.join(run.path, suffixed(LOG, args.last))))
        except OSError as err:
            raise UserError(f"cannot write into {run.path}: {err.strerror or err}; check its permissions") from None
        result = evaluate_outputs(
            run.config, run.hierarchy, run.outputs, n_perm=args.n_perm, seed=args.perm_seed,
            block_bytes=args.block_mb << 20, workers=args.workers, stages=stages,
        )
        try:
            write_run_files(run, result, args.last, plots=not args.no_plots, stages=stages)
        except OSError as err:
            raise UserError(f"cannot write the results into {run.path}: {err.strerror or err}; check its permissions") from None
        if not args.quiet:
            tqdm.write(run_block(run, result.metrics) + "\n")
        rows.append(summary_row(run, result.metrics))
    if len(rows) > 1:
        folder = summary_folder(run_dirs, args.summary_dir)
        summary = summarise(rows)
        text = summary_markdown(summary, docs=os.path.relpath(os.path.join(ROOT, "docs", "evaluate.md"), folder))
        try:
            write_dataframe_csv(os.path.join(folder, suffixed(record.SUMMARY_CSV, args.last)), summary)
            write_text(os.path.join(folder, suffixed(record.SUMMARY_MD, args.last)), text + "\n")
        except OSError as err:
            raise UserError(f"cannot write the summary into {folder}: {err.strerror or err}; choose a folder with --summary_dir") from None
        print(text)
        print(f"summary written to {os.path.join(folder, suffixed(record.SUMMARY_CSV, args.last))} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
