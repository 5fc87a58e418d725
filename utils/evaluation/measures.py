"""Every evaluation measure for one run, assembled under the names of ``metrics.json`` (docs/evaluate.md).

:func:`evaluate_outputs` is pure (arrays in, results out); ``evaluate.py``
writes the files.  Names: a metric that exists for both the representatives W
and the prototypes gets the suffix ``_W`` / ``_proto``; ``_l`` becomes the
level number.  An undefined metric is ``None`` (JSON null), never a made-up
number.
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from utils import trees
from utils.evaluation import chance
from utils.evaluation import classification as cls_m
from utils.evaluation import representation as rep_m
from utils.evaluation import retrieval as ret_m
from utils.evaluation.stages import stage

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
    distances: dict = field(default_factory=dict)  # "W", "proto" -> representative distances (float32)
    hs_chance: np.ndarray = field(default_factory=lambda: np.empty(0))  # expected hs@k of random embeddings


def headline_level(hierarchy):
    """The level of the summary's headline retrieval column: the first with at least 2 groups (0 if none)."""
    level = trees.first_level_with_groups(hierarchy, 2)
    return 0 if level is None else level


def wants_living(dataset, hierarchy):
    """Living-subset correlations: the plankton datasets (``living`` in datasets/registry.py), or a hierarchy
    mixing "non..." and other top groups."""
    from datasets import registry

    mask = hierarchy.living_mask()
    named = bool(dataset) and registry.is_registered(dataset) and registry.get(dataset).living
    return named or bool(mask.any() and not mask.all())


def _maybe(value):
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


# ------------------------------------------------------------ representations
def reference_trees(hierarchy, stages=None):
    """What every set of representatives is compared with: the splits of the WPGMA and UPGMA trees of ``d_T``
    and of the taxonomy, and the WPGMA linkage of ``d_T`` (``wpgma_linkage``: the tree_true files, built once)."""
    wpgma, Z, upgma = _wpgma_upgma(hierarchy.distances, stages, "reference trees (WPGMA, UPGMA of d_T)")
    return {"wpgma": wpgma, "upgma": upgma, "taxonomy": trees.taxonomy_splits(hierarchy), "wpgma_linkage": Z}


def _wpgma_upgma(D, stages, name):
    """The WPGMA splits and linkage and the UPGMA splits of ``D``, as one stage ``name`` (a tick per merge)."""
    C = np.shape(D)[0]
    with stage(stages, name, total=2 * max(C - 1, 0), unit="merge") as tick:
        wpgma, Z = trees.tree_splits(D, "wpgma", tick)
        upgma = trees.tree_splits(D, "upgma", lambda done, total: tick(C - 1 + done))[0]
    return wpgma, Z, upgma


def add_reference_trees(result, hierarchy, reference=None):
    """The WPGMA tree of ``d_T`` (linkage and Newick) and the taxonomy's own Newick, into ``result``."""
    Z_true = None if reference is None else reference.get("wpgma_linkage")
    result.linkage["true"] = trees.agglomerate(hierarchy.distances, "wpgma") if Z_true is None else Z_true
    result.newick["true"] = trees.linkage_newick(result.linkage["true"], hierarchy.names)
    result.newick["taxonomy"] = trees.taxonomy_newick(hierarchy)


def chance_counts(n_perm):
    """The relabellings behind the chance levels: ``n_chance`` (corr_mean) and ``n_rf_chance`` (rf), at most
    :data:`utils.evaluation.chance.N_CHANCE` / ``N_RF_CHANCE`` and never more than ``n_perm`` (0: none)."""
    return {"n_chance": min(int(n_perm), chance.N_CHANCE), "n_rf_chance": min(int(n_perm), chance.N_RF_CHANCE)}


def _corr_mean_chance(D, D_T, n_chance, seed, fingerprint, known, progress):
    """:func:`utils.evaluation.chance.corr_mean_chance`, reused from ``known`` for a matrix whose pairs rank the
    same (equal ``fingerprint``: then every column ranks the same too, and so does the null), and otherwise
    recomputed only for the classes whose column ranks changed (``cache``).  The column ranks of ``d_T``
    (C x C float32) are built here and dropped after: at 20,000 classes they are 1.9 GB that the permutation
    test need not share memory with, and they take a few seconds to rebuild."""
    key = ("corr_mean_chance", fingerprint, n_chance, seed)
    if known is not None and fingerprint and key in known:
        return known[key]
    tree_ranks = chance.column_ranks(D_T) if n_chance and np.shape(D)[0] >= 3 else None
    values = chance.corr_mean_chance(D, tree_ranks, n_chance, seed, progress, known, tree_key=D_T)
    del tree_ranks
    if known is not None and fingerprint:
        known[key] = values
    return values


def representation_metrics(reps, hierarchy, distance, living=False, n_perm=N_PERM, seed=0, reference=None,
                           stages=None, label="", known=None):
    """Hierarchical inference of one set of representatives (names without the _W/_proto suffix).

    ``reference``: :func:`reference_trees` of the hierarchy (computed here when
    not given).  With ``n_perm`` > 0 the chance levels too (:mod:`utils.evaluation.chance`,
    :func:`chance_counts`).  Also returns the distance matrix and the WPGMA
    linkage.  ``stages``: progress of the stages (:mod:`utils.evaluation.stages`),
    named after ``label``; ``known``: a dict shared by the matrices of one set
    of vectors, through which a matrix whose pairs rank as an earlier one's
    (the angle after the chord) reuses its permutation test and chance level
    (:func:`utils.evaluation.representation.pair_correlation`).
    """
    reference = reference_trees(hierarchy, stages) if reference is None else reference
    counts = chance_counts(n_perm)
    C = hierarchy.n_classes
    named = (lambda what: f"{what} ({label})") if label else (lambda what: what)
    with stage(stages, named("distances")):
        D = rep_m.representative_distances(reps, distance)
    D_T = hierarchy.distances
    out = {}
    levels = [hierarchy.level_groups(level) for level in range(hierarchy.n_levels)]
    with stage(stages, named("corr_mean and level retrieval"), total=C, unit="class") as tick:
        (out["corr_mean"], out["corr_mean_p"]), retrieval = rep_m.row_measures(D, D_T, levels, tick)
    with stage(stages, named("permutation test"), total=n_perm, unit="relabelling") as tick:
        pair = rep_m.pair_correlation(D, D_T, n_perm, seed, hierarchy, tick, known)
    out["corr_elem"], out["corr_elem_p"] = pair.r, pair.p
    if living:
        keep = np.flatnonzero(hierarchy.living_mask())
        sub_D, sub_T = D[np.ix_(keep, keep)], D_T[np.ix_(keep, keep)]
        out["corr_mean_living"], out["corr_mean_p_living"] = rep_m.corr_mean(sub_D, sub_T)
        out["corr_elem_living"], out["corr_elem_p_living"] = rep_m.corr_elem(sub_D, sub_T)
    out["corr_perm_p"] = pair.perm_p
    with stage(stages, named("chance of corr_mean"), total=counts["n_chance"], unit="relabelling") as tick:
        out.update(_corr_mean_chance(D, D_T, counts["n_chance"], seed, pair.fingerprint, known, tick))
    for level, (p1, rp, mapr) in enumerate(retrieval):
        out[f"p1_{level}"], out[f"rp_{level}"], out[f"mapr_{level}"] = p1, rp, mapr

    splits, Z, upgma = _wpgma_upgma(D, stages, named("trees (WPGMA, UPGMA)"))
    out["rf"], out["rf_max"], out["rf_norm"] = trees.robinson_foulds(splits, reference["wpgma"])
    out["rf_upgma"] = trees.robinson_foulds(upgma, reference["upgma"])[2]
    out["rf_taxonomy"] = trees.robinson_foulds(splits, reference["taxonomy"])[2]
    with stage(stages, named("chance of rf")):
        out.update(chance.rf_chance(Z, reference["wpgma_linkage"], hierarchy, counts["n_rf_chance"], seed))
    return {k: _maybe(v) if not isinstance(v, int) else v for k, v in out.items()}, D, Z


def add_representation(result, suffix, reps, hierarchy, distance, living, n_perm, seed, reference, stages=None,
                       known=None):
    """:func:`representation_metrics` of ``reps`` into ``result`` (an :class:`Evaluation` or an inspection):
    the measures as ``<name>_<suffix>``, and the distances, WPGMA linkage and Newick tree under ``suffix``.
    Returns (the measures without the suffix, the distance matrix)."""
    values, D, Z = representation_metrics(reps, hierarchy, distance, living, n_perm, seed, reference, stages,
                                          suffix, known)
    result.metrics.update({f"{k}_{suffix}": v for k, v in values.items()})
    result.distances[suffix] = D.astype(np.float32)  # for the files and plots: half the memory at 20,000 classes
    result.linkage[suffix] = Z
    result.newick[suffix] = trees.linkage_newick(Z, hierarchy.names)
    return values, D


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
        out[f"f1_paper{suffix}"] = cls_m.macro(cls_m.f1_paper(cm))
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
def mark_trivial(metrics, reasons):
    """Null every measure named in ``reasons`` (a base name: ``hp5`` nulls ``hp5_W`` and ``hp5_proto``) that
    has a reason, and record the reason as ``<name>_null_reason`` (docs/evaluate.md, "Trivial measures")."""
    for name, reason in reasons.items():
        if reason is None:
            continue
        for key in [k for k in metrics if k == name or k in (f"{name}_W", f"{name}_proto")]:
            metrics[key] = None
        metrics[f"{name}{chance.NULL_REASON}"] = reason


def evaluate_outputs(config, hierarchy, outputs, n_perm=N_PERM, seed=0, block_bytes=16 << 20, workers=None,
                     stages=None):
    """All measures of one run from its config, hierarchy and outputs arrays.

    ``outputs`` needs ``labels``; every other array adds its measures (scores: classification,
    representatives / prototypes: hierarchical inference, embeddings: retrieval) and is skipped when absent
    (``evaluate.py --outputs``; a record has them all).  ``stages``: progress, see
    :mod:`utils.evaluation.stages`."""
    distance = str(config.get("distance", "euc"))
    beta = float(config.get("beta", 1.0) if config.get("beta") is not None else 1.0)
    labels = outputs["labels"]
    living = wants_living(config.get("dataset"), hierarchy)
    metrics = {"n_test": int(labels.size), "n_classes": hierarchy.n_classes, "headline_level": headline_level(hierarchy),
               **chance_counts(n_perm), **chance.level_chance(hierarchy)}

    frames, confusion = [], {}
    score_sets = [("W", "scores"), ("proto", "scores_proto")]
    for suffix, key in score_sets:
        if key not in outputs:
            continue
        with stage(stages, f"classification ({suffix})"):
            values, table, cms = classification_metrics(outputs[key], labels, hierarchy)
        metrics.update({f"{k}_{suffix}": v for k, v in values.items()})
        frames.append(table.assign(scores=suffix))
        confusion.update({f"{suffix}_{k}": v for k, v in cms.items()})
    trivial = {f"hp{TOP_K}": chance.hp_trivial(labels, hierarchy.distances, TOP_K)}

    result = Evaluation(metrics, None, confusion, np.zeros(0))
    reference = reference_trees(hierarchy, stages)
    known = {}
    for suffix, key in [("W", "representatives"), ("proto", "prototypes")]:
        if key in outputs:
            add_representation(result, suffix, outputs[key], hierarchy, distance, living, n_perm, seed, reference,
                               stages, known)
    add_reference_trees(result, hierarchy, reference)

    if "embeddings" in outputs:
        sim = hierarchy.similarities(distance, beta)
        with stage(stages, "hs@k retrieval"):
            curve = ret_m.hs_curve(outputs["embeddings"], labels, sim, ret_m.HS_K_MAX, block_bytes, workers)
            result.hs, result.hs_chance = curve, chance.hs_chance_curve(labels, sim, ret_m.HS_K_MAX)
        for k in ret_m.HS_REPORTED:
            metrics[f"hs@{k}"] = _maybe(curve[k - 1]) if k <= curve.size else None
            metrics[f"hs_chance@{k}"] = _maybe(result.hs_chance[k - 1]) if k <= curve.size else None
            trivial[f"hs@{k}"] = chance.hs_trivial(metrics[f"hs_chance@{k}"], k, labels.size)
        metrics["ahs250"] = _maybe(ret_m.ahs(curve))
        metrics["ahs250_chance"] = _maybe(ret_m.ahs(result.hs_chance))
        trivial["ahs250"] = chance.hs_trivial(metrics["ahs250_chance"], None, labels.size)
    mark_trivial(metrics, trivial)

    columns = ["scores", "level", "group", "name", "support", "predicted", "correct", "precision", "recall", "f1"]
    result.per_class = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return result
