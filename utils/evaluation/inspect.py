"""Inspect any classifier's class vectors against a taxonomy, without training (``evaluate.py --weights``).

    python evaluate.py --weights fc.npy --hierarchy hierarchy.csv --out inspect_fc
    python evaluate.py --weights checkpoint_last.pt --key head.W --hierarchy record/<run>/hierarchy.csv
    python evaluate.py --weights model.pt --hierarchy MicroS --data_root data

The class vectors (rows of the weight matrix, row i = class i of the
hierarchy) are L2-normalised and compared with the tree distances ``d_T`` with
the same hierarchical-inference measures that ``evaluate.py`` computes for W
in a run record (:func:`utils.evaluation.measures.representation_metrics`),
once with the euclidean (chord) and once with the angular distance between the
normalised vectors: the names get the suffix ``_euc`` / ``_arccos``.

Reading the files is ``utils/evaluation/weights.py``; here: :func:`inspect`
(arrays in, measures out, pure), :func:`write_results` (the files) and
:func:`run` (the command).  Bad input raises :class:`utils.errors.UserError`.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from utils import record
from utils.errors import UserError
from utils.evaluation import chance
from utils.evaluation.measures import (N_PERM, add_reference_trees, add_representation, chance_counts,
                                       headline_level, reference_trees, wants_living)
from utils.evaluation.stages import LOG, Stages, file_log, stage
from utils.evaluation.weights import load_hierarchy, load_weights
from utils.io import write_json, write_npz, write_text

#: Distances between the normalised class vectors, as (name suffix, distance of representative_distances).
DISTANCES = (("euc", "euc"), ("arccos", "arccos"))
SOURCE_JSON = "source.json"
DISTANCES_NPZ = "distances.npz"


# ------------------------------------------------------------------ command line
def add_arguments(parser):
    """``--weights`` mode: any classifier's class vectors against a taxonomy."""
    g = parser.add_argument_group(
        "inspect any classifier (instead of RUN)",
        "python evaluate.py --weights FILE --hierarchy FILE [--key NAME] [--out DIR]",
    )
    g.add_argument("--weights", metavar="FILE",
                   help="class vectors [C, D]: a .npy/.npz array or a PyTorch state dict / checkpoint")
    g.add_argument("--hierarchy", metavar="FILE",
                   help="hierarchy CSV (index,class,path or Class,Path,Number; row i = class i), "
                   "or a taxonomy-folder dataset name with --data_root")
    g.add_argument("--key", metavar="NAME",
                   help="the tensor in a state dict / .npz, dotted for nested checkpoints (fc.weight, head.W); "
                   "default: the one 2-D tensor with C rows")
    g.add_argument("--out", metavar="DIR", help="output folder (default: inspect_<weights file name>)")
    g.add_argument("--data_root", metavar="DIR", help="folder holding the dataset named by --hierarchy")


def check_arguments(parser, args):
    """Usage errors (exit 2) of the --weights options against RUN folders."""
    if args.weights is None:
        given = [f"--{n}" for n in ("hierarchy", "key", "out", "data_root") if getattr(args, n) is not None]
        if given:
            parser.error(f"{', '.join(given)} only go with --weights")
        if not args.runs:
            parser.error("give at least one RUN, or --weights FILE --hierarchy FILE")
        return
    if args.runs:
        parser.error("give either RUN folders or --weights, not both")
    if args.hierarchy is None:
        parser.error("--weights needs --hierarchy (a hierarchy CSV, or a dataset name with --data_root)")
    if args.last or args.summary_dir is not None:
        parser.error("--last and --summary_dir are for RUN folders, not --weights")


# ------------------------------------------------------------------ measures
@dataclass
class Inspection:
    metrics: dict  # flat name -> value: n_classes, dim, then <measure>_euc, then <measure>_arccos
    distances: dict = field(default_factory=dict)  # "euc", "arccos" -> C x C distances of the normalised vectors (float32)
    linkage: dict = field(default_factory=dict)  # "euc", "arccos", "true" -> WPGMA linkage matrix
    newick: dict = field(default_factory=dict)  # "euc", "arccos", "true", "taxonomy" -> Newick text


def inspect(W, hierarchy, *, living=False, n_perm=N_PERM, seed=0, stages=None):
    """Hierarchical inference of the class vectors ``W`` [C, D] for both distances (pure: arrays in, results out).

    ``stages``: progress of the stages (:mod:`utils.evaluation.stages`).
    """
    W = np.asarray(W)
    result = Inspection({"n_classes": int(W.shape[0]), "dim": int(W.shape[1]), **chance_counts(n_perm),
                         **chance.level_chance(hierarchy)})
    reference = reference_trees(hierarchy, stages)
    # The permutation tests depend on the ranks of the pair distances only; the angle is a monotone function
    # of the chord, so the chord's tests are reused when the ranks are the same (equal fingerprints), and its
    # bounds when a few ties differ (utils.evaluation.representation.pair_correlation).
    known = {}
    for k, (suffix, distance) in enumerate(DISTANCES):
        known["keep"] = k + 1 < len(DISTANCES)
        add_representation(result, suffix, W, hierarchy, distance, living, n_perm, seed, reference, stages, known)
    add_reference_trees(result, hierarchy, reference)
    return result


# ------------------------------------------------------------------ files
def write_results(out, result, hierarchy, source, plots=True, stages=None):
    """metrics.json/.csv, source.json, distances.npz, tree_<euc|arccos|true|taxonomy>.nwk and the PNG plots."""
    path = lambda name: os.path.join(out, name)  # noqa: E731
    with stage(stages, "files"):
        record.write_metrics(path(record.METRICS_JSON), path(record.METRICS_CSV), result.metrics)
        write_json(path(SOURCE_JSON), source)
        write_npz(path(DISTANCES_NPZ), d_T=hierarchy.distances, **result.distances)  # int16 (Hierarchy.distances)
        for kind, text in result.newick.items():
            write_text(path(f"tree_{kind}.nwk"), text)
    if not plots or hierarchy.n_classes < 2:
        return
    with stage(stages, "plots"):
        _write_plots(path, result, hierarchy, source)


def _write_plots(path, result, hierarchy, source):
    from utils.evaluation import plots as P

    name = os.path.basename(str(source.get("weights", "weights"))) + (f" [{source['key']}]" if source.get("key") else "")
    for suffix, distance in DISTANCES:
        P.plot_trees(path(f"tree_{suffix}.png"), result.linkage[suffix], hierarchy,
                     "the class vectors", distance=distance, run=name)
        P.plot_distances(path(f"distances_{suffix}.png"), result.distances[suffix], hierarchy, "class vectors",
                         distance, run=name)


def default_out(weights):
    """``inspect_<file stem>`` in the current folder."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(os.fspath(weights))))[0]
    return f"inspect_{stem}"


def _fmt(value):
    if value is None:
        return "-".rjust(9)
    return (str(value) if isinstance(value, int) else f"{value:.4f}").rjust(9)


def summary_block(result, where, hierarchy):
    """A readable block of the main measures for both distances, each with its chance level beneath."""
    level = headline_level(hierarchy)
    names = ["corr_mean", "corr_elem", "corr_perm_p", f"mapr_{level}", "rf_norm", "rf_taxonomy"]
    chances = ["corr_mean_chance", None, "corr_mean_perm_p", None, "rf_norm_chance", "rf_taxonomy_chance"]
    m = result.metrics
    lines = [
        f"{where}: {m['n_classes']} classes x {m['dim']} dimensions; "
        f"hierarchy {hierarchy.n_classes} classes, {hierarchy.n_levels} levels",
        "  " + " " * 8 + "".join(n.rjust(12) for n in names),
    ]
    for suffix, _ in DISTANCES:
        lines.append(f"  {suffix:<8}" + "".join(_fmt(m.get(f"{n}_{suffix}")).rjust(12) for n in names))
        cells = [m.get(f"mapr_chance_{level}") if n is None and i == 3 else m.get(f"{n}_{suffix}") if n else None
                 for i, n in enumerate(chances)]
        lines.append(f"  {'  chance':<8}" + "".join(_fmt(v).rjust(12) for v in cells))
    lines.append(f"  chance: the same vectors with the classes relabelled at random ({m.get('n_chance')} relabellings "
                 f"for corr_mean, {m.get('n_rf_chance')} for the trees; mapr exact); under corr_perm_p: corr_mean's "
                 "own permutation p-value; 95th percentile of corr_mean: "
                 + ", ".join(f"{_fmt(m.get(f'corr_mean_chance95_{s}')).strip()} ({s})" for s, _ in DISTANCES))
    return "\n".join(lines)


def run(args):
    """``evaluate.py --weights``: ``args`` has weights, hierarchy, key, out, data_root, n_perm, perm_seed, no_plots, quiet."""
    hierarchy, dataset = load_hierarchy(args.hierarchy, args.data_root)
    W, name = load_weights(args.weights, hierarchy.n_classes, args.key)
    living = wants_living(dataset, hierarchy)
    out = args.out or default_out(args.weights)
    try:
        stages = Stages(file_log(os.path.join(out, LOG)))
    except OSError as err:
        raise UserError(f"cannot write the results into {out}: {err.strerror or err}; choose another --out") from None
    result = inspect(W, hierarchy, living=living, n_perm=args.n_perm, seed=args.perm_seed, stages=stages)
    source = {
        "weights": os.path.abspath(args.weights),
        "key": name,
        "hierarchy": os.path.abspath(args.hierarchy) if args.data_root is None else args.hierarchy,
        "data_root": None if args.data_root is None else os.path.abspath(args.data_root),
        "shape": [int(s) for s in W.shape],
        "n_perm": args.n_perm,
        "perm_seed": args.perm_seed,
    }
    try:
        write_results(out, result, hierarchy, source, plots=not args.no_plots, stages=stages)
    except OSError as err:
        raise UserError(f"cannot write the results into {out}: {err.strerror or err}; choose another --out") from None
    where = f"{args.weights} [{name}]" if name else args.weights
    if not args.quiet:
        print(summary_block(result, where, hierarchy))
    print(f"written to {out}/ ({record.METRICS_JSON}, {record.METRICS_CSV}, trees and plots)")
    return 0
