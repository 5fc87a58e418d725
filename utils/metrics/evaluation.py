"""Every evaluation measure for one run, assembled under the names of ``metrics.json``.

:func:`evaluate_outputs` is pure (arrays in, results out); ``evaluate.py``
writes the files.  Names: a metric that exists for both the representatives W
and the prototypes gets the suffix ``_W`` / ``_proto``; ``_l`` becomes the
level number.  An undefined metric is ``None`` (JSON null), never a made-up
number.
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from utils.metrics import classification as cls_m
from utils.metrics import representation as rep_m
from utils.metrics import retrieval as ret_m
from utils import trees

PLANKTON = ("MicroS", "MicroL", "MesoZ")
TOP_K = 5
N_BINS = 15
N_PERM = 999


@dataclass
class Evaluation:
    metrics: dict  # flat name -> float/int/None, in a stable order
    per_class: pd.DataFrame  # per-class and per-level precision / recall / F1
    confusion: dict  # "<W|proto>_level_<l>" and "<W|proto>_class" -> int64 matrices
    hs: np.ndarray  # hs@1 .. hs@k_max
    newick: dict = field(default_factory=dict)  # file kind ("W", "proto", "true", "taxonomy") -> text
    linkage: dict = field(default_factory=dict)  # "W", "proto", "true" -> WPGMA linkage matrix
    distances: dict = field(default_factory=dict)  # "W", "proto" -> representative distances


def headline_level(hierarchy):
    """The level of the summary's headline retrieval column: the first with at least 2 groups (0 if none)."""
    level = trees.first_level_with_groups(hierarchy, 2)
    return 0 if level is None else level


def wants_living(config, hierarchy):
    """Living-subset correlations: plankton datasets, or a hierarchy mixing "non..." and other top groups."""
    mask = hierarchy.living_mask()
    return str(config.get("dataset", "")) in PLANKTON or (mask.any() and not mask.all())


def _maybe(value):
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


# ------------------------------------------------------------ representations
def reference_trees(hierarchy):
    """The splits every representative tree is compared with: WPGMA and UPGMA of ``d_T``, and the taxonomy."""
    return {
        "wpgma": trees.tree_splits(hierarchy.distances, "wpgma")[0],
        "upgma": trees.tree_splits(hierarchy.distances, "upgma")[0],
        "taxonomy": trees.bipartitions(trees.taxonomy_clusters(hierarchy)),
    }


def add_reference_trees(result, hierarchy):
    """The WPGMA tree of ``d_T`` (linkage and Newick) and the taxonomy's own Newick, into ``result``."""
    result.linkage["true"] = trees.agglomerate(hierarchy.distances, "wpgma")
    result.newick["true"] = trees.linkage_newick(result.linkage["true"], hierarchy.names)
    result.newick["taxonomy"] = trees.taxonomy_newick(hierarchy)


def representation_metrics(reps, hierarchy, distance, living=False, n_perm=N_PERM, seed=0, reference=None):
    """Hierarchical inference of one set of representatives (names without the _W/_proto suffix).

    ``reference``: :func:`reference_trees` of the hierarchy (computed here when
    not given).  Also returns the distance matrix and the WPGMA linkage.
    """
    reference = reference_trees(hierarchy) if reference is None else reference
    D = rep_m.representative_distances(reps, distance)
    D_T = hierarchy.distances
    out = {}
    out["corr_mean"], out["corr_mean_p"] = rep_m.corr_mean(D, D_T)
    out["corr_elem"], out["corr_elem_p"] = rep_m.corr_elem(D, D_T)
    if living:
        keep = np.flatnonzero(hierarchy.living_mask())
        sub_D, sub_T = D[np.ix_(keep, keep)], D_T[np.ix_(keep, keep)]
        out["corr_mean_living"], out["corr_mean_p_living"] = rep_m.corr_mean(sub_D, sub_T)
        out["corr_elem_living"], out["corr_elem_p_living"] = rep_m.corr_elem(sub_D, sub_T)
    out["corr_perm_p"] = rep_m.corr_perm_p(D, D_T, n_perm=n_perm, seed=seed) if n_perm else None
    for level in range(hierarchy.n_levels):
        p1, rp, mapr = rep_m.level_retrieval(D, hierarchy.level_groups(level))
        out[f"p1_{level}"], out[f"rp_{level}"], out[f"mapr_{level}"] = p1, rp, mapr

    splits, Z = trees.tree_splits(D, "wpgma")
    out["rf"], out["rf_max"], out["rf_norm"] = trees.robinson_foulds(splits, reference["wpgma"])
    out["rf_upgma"] = trees.robinson_foulds(trees.tree_splits(D, "upgma")[0], reference["upgma"])[2]
    out["rf_taxonomy"] = trees.robinson_foulds(splits, reference["taxonomy"])[2]
    return {k: _maybe(v) if not isinstance(v, int) else v for k, v in out.items()}, D, Z


# ------------------------------------------------------------ classification
def classification_metrics(scores, labels, hierarchy):
    """Hierarchy-informed classification of one score matrix (names without the suffix).

    Returns ``(metrics, per_class_rows, confusion)``.
    """
    labels = np.asarray(labels)
    D_T = hierarchy.distances
    pred = cls_m.predict(scores)
    top = cls_m.topk(scores, min(TOP_K, scores.shape[1]))
    out = {"acc": cls_m.acc(pred, labels), "top5": cls_m.top_k_accuracy(top, labels)}
    for level in range(hierarchy.n_levels):
        out[f"acc_level_{level}"] = cls_m.acc_level(pred, labels, hierarchy.level_groups(level))
    out["ahc"] = cls_m.ahc(pred, labels, D_T)
    out["ahd5"] = cls_m.ahd(top, labels, D_T)
    out["hp5"] = cls_m.hp(top, labels, D_T)
    confidence, correct = cls_m.max_softmax(scores), pred == labels
    out["ece"], out["mce"] = cls_m.calibration(confidence, correct, N_BINS)
    out["calib_spearman"], out["calib_spearman_p"] = cls_m.calib_spearman(confidence, correct, N_BINS)
    out["pointbiserial"], out["pointbiserial_p"] = cls_m.pointbiserial(correct, confidence)

    frames, confusion = [], {}
    last = hierarchy.n_levels - 1
    for level in range(hierarchy.n_levels):
        groups = hierarchy.level_groups(level)
        n_groups = hierarchy.n_groups(level)
        cm = cls_m.confusion_matrix(groups[labels], groups[pred], n_groups)
        confusion[f"level_{level}"] = cm
        precision, recall, f1 = cls_m.precision_recall_f1(cm)
        suffix = "" if level == last else f"_level_{level}"
        out[f"precision{suffix}"] = cls_m.macro(precision)
        out[f"recall{suffix}"] = cls_m.macro(recall)
        out[f"f1{suffix}"] = cls_m.macro(f1)
        frames.append(
            pd.DataFrame(
                {
                    "level": level,
                    "group": np.arange(n_groups),
                    "name": hierarchy.names if level == last else hierarchy.level_names(level),
                    "support": cm.sum(axis=1),
                    "predicted": cm.sum(axis=0),
                    "correct": np.diag(cm),
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                }
            )
        )
    confusion["class"] = confusion[f"level_{last}"]
    return {k: _maybe(v) for k, v in out.items()}, pd.concat(frames, ignore_index=True), confusion


# ------------------------------------------------------------ everything
def evaluate_outputs(config, hierarchy, outputs, n_perm=N_PERM, seed=0, block_bytes=16 << 20, workers=None):
    """All measures of one run from its config, hierarchy and outputs arrays."""
    distance = str(config.get("distance", "euc"))
    beta = float(config.get("beta", 1.0) if config.get("beta") is not None else 1.0)
    labels = outputs["labels"]
    living = wants_living(config, hierarchy)
    metrics = {"n_test": int(labels.size), "n_classes": hierarchy.n_classes, "headline_level": headline_level(hierarchy)}

    frames, confusion = [], {}
    score_sets = [("W", "scores"), ("proto", "scores_proto")]
    for suffix, key in score_sets:
        if key not in outputs:
            continue
        values, table, cms = classification_metrics(outputs[key], labels, hierarchy)
        metrics.update({f"{k}_{suffix}": v for k, v in values.items()})
        frames.append(table.assign(scores=suffix))
        confusion.update({f"{suffix}_{k}": v for k, v in cms.items()})

    result = Evaluation(metrics, None, confusion, None)
    reference = reference_trees(hierarchy)
    for suffix, key in [("W", "representatives"), ("proto", "prototypes")]:
        values, D, Z = representation_metrics(outputs[key], hierarchy, distance, living, n_perm, seed, reference)
        metrics.update({f"{k}_{suffix}": v for k, v in values.items()})
        result.distances[suffix] = D
        result.linkage[suffix] = Z
        result.newick[suffix] = trees.linkage_newick(Z, hierarchy.names)
    add_reference_trees(result, hierarchy)

    sim = hierarchy.similarities(distance, beta)
    curve = ret_m.hs_curve(outputs["embeddings"], labels, sim, ret_m.HS_K_MAX, block_bytes, workers)
    for k in ret_m.HS_REPORTED:
        metrics[f"hs@{k}"] = _maybe(curve[k - 1]) if k <= curve.size else None
    metrics["ahs250"] = _maybe(ret_m.ahs(curve))
    result.hs = curve

    columns = ["scores", "level", "group", "name", "support", "predicted", "correct", "precision", "recall", "f1"]
    result.per_class = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return result


# ------------------------------------------------------------ several runs
def _float_label(x):
    mantissa, exponent = f"{float(x):.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def options_label(config):
    """The training options of a run, in the order of the run name (README, 'Run records').

    E.g. ``size_inform+mds_W+dynamic`` or ``lr=1e-3+epochs=15``.  A flag whose
    default depends on the script and backbone (``lr``, ``epochs``,
    ``batch_size``, ``resize``, ``gray``) is compared with the default recorded
    beside it in ``config.json`` (``<flag>_default``); records older than that
    are compared with 1e-4 and 32 for ``lr`` / ``batch_size``.
    """
    c = config

    def differs(flag, fallback=None):
        default = c.get(f"{flag}_default", fallback)
        return c.get(flag) is not None and default is not None and c.get(flag) != default

    parts = []
    for flag in ("rand_backbone", "size_inform"):
        if c.get(flag):
            parts.append(flag)
    if c.get("gray") and not c.get("gray_default"):
        parts.append("gray")
    for flag in ("small", "aug"):
        if c.get(flag):
            parts.append(flag)
    if c.get("resize") and c.get("resize") != c.get("resize_default"):
        parts.append(f"resize={c['resize']}")
    if c.get("official_split"):
        parts.append("official_split")
    if c.get("clspri"):
        parts.append("clspri")
    if c.get("ema"):
        parts.append("ema" if c.get("alpha") in (None, 0.01) else f"ema+alpha={c['alpha']}")
    if c.get("mds_W"):
        parts.append("mds_W" if c.get("beta") in (None, 1, 1.0) else f"mds_W+beta={c['beta']}")
    if c.get("CORR"):
        parts.append("CORR")
    if c.get("dynamic"):
        parts.append("dynamic")
        if c.get("scale_update", "equations") != "equations":
            parts.append(f"scale_update={c['scale_update']}")
    if differs("lr", 1e-4):
        parts.append(f"lr={_float_label(c['lr'])}")
    if differs("batch_size", 32):
        parts.append(f"batch_size={c['batch_size']}")
    if c.get("epochs") == 0:
        parts.append("untrained")
    elif differs("epochs"):
        parts.append(f"epochs={c['epochs']}")
    if c.get("use_val"):
        parts.append("use_val")
    return "+".join(parts) if parts else "-"


def summarise(rows):
    """Mean and sample standard deviation over seeds per group of runs.

    ``rows``: dicts with ``group``, ``dataset``, ``backbone``, ``method``,
    ``distance``, ``options`` and the metrics.  Returns a DataFrame with one
    row per group: those columns, ``n_runs``, and ``<metric>_mean`` /
    ``<metric>_std`` (std with ddof = 1, empty for a single run).
    """
    keys = ["group", "dataset", "backbone", "method", "distance", "options"]
    frame = pd.DataFrame(rows)
    metric_names = [c for c in frame.columns if c not in keys and c != "run"]
    values = frame[metric_names].apply(pd.to_numeric, errors="coerce")
    grouped = values.groupby(frame["group"], sort=False)
    mean = grouped.mean()
    std = grouped.std(ddof=1)
    columns = {key: frame.groupby("group", sort=False)[key].first() for key in keys[1:]}
    columns["n_runs"] = grouped.size()
    for name in metric_names:
        columns[f"{name}_mean"] = mean[name]
        columns[f"{name}_std"] = std[name]
    return pd.DataFrame(columns).rename_axis("group").reset_index()


# "{h}" is the headline level (:func:`headline_level`): the first level with at least two groups
SUMMARY_TABLES = (
    ("Hierarchical inference (W)", ["corr_mean_W", "corr_elem_W", "corr_elem_p_W", "corr_perm_p_W", "mapr_{h}_W", "rf_norm_W", "rf_taxonomy_W"]),
    ("Hierarchical inference (prototypes)", ["corr_mean_proto", "corr_elem_proto", "corr_elem_p_proto", "mapr_{h}_proto", "rf_norm_proto"]),
    ("Classification (W)", ["acc_W", "top5_W", "ahc_W", "ahd5_W", "hp5_W", "ece_W", "calib_spearman_W", "pointbiserial_W"]),
    ("Classification (prototypes)", ["acc_proto", "top5_proto", "ahc_proto", "ahd5_proto", "hp5_proto", "ece_proto", "calib_spearman_proto", "pointbiserial_proto"]),
    ("Retrieval", ["hs@1", "hs@50", "hs@250", "ahs250"]),
)


def _part_headline_level(part):
    """The headline level of a (dataset, backbone) block of the summary (0 for records without one)."""
    if "headline_level_mean" not in part:
        return 0
    values = part["headline_level_mean"].dropna()
    return int(values.iloc[0]) if len(values) else 0


def _cell(mean, std):
    if mean is None or not np.isfinite(mean):
        return "-"
    fmt = ".2e" if 0 < abs(mean) < 1e-3 else ".4f"  # p-values: small ones stay readable
    if std is None or not np.isfinite(std):
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {std:{fmt}}"


def summary_markdown(summary):
    """The summary as Markdown: per (dataset, backbone), tables of "mean ± std" like the paper's."""
    lines = ["# Summary over seeds", "", "Mean ± sample standard deviation over the seeds of each run group.", ""]
    for (dataset, backbone), part in summary.groupby(["dataset", "backbone"], sort=False, dropna=False):
        lines += [f"## {dataset} / {backbone}", ""]
        living = [c for c in ("corr_mean_living_W", "corr_elem_living_W") if f"{c}_mean" in part]
        level = _part_headline_level(part)
        for title, names in SUMMARY_TABLES:
            names = [n.format(h=level) for n in names]
            if title.startswith("Hierarchical inference (W)"):
                names = names[:2] + living + names[2:]
            names = [n for n in names if f"{n}_mean" in part and part[f"{n}_mean"].notna().any()]
            if not names:
                continue
            lines += [f"### {title}", ""]
            header = ["method", "distance", "options", "runs"] + names
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] * 4 + ["---:"] * len(names)) + "|")
            for _, row in part.iterrows():
                cells = [str(row["method"]), str(row["distance"]), str(row["options"]), str(int(row["n_runs"]))]
                cells += [_cell(row[f"{n}_mean"], row[f"{n}_std"]) for n in names]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)
