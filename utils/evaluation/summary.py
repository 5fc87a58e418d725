"""The summary over seeds of several evaluated runs: ``summary.csv`` and ``summary.md`` (the paper's tables).

A run's group is its run name without the seed; its ``options`` column is
:func:`utils.options.options_label` of its configuration.  Every table of
``summary.md`` has a legend under it (:data:`LEGEND`): what each column
measures, its direction, its chance level, and why a column is null where a
measure is trivial for the tree (``<measure>_null_reason`` in metrics.json).
"""
import re

import numpy as np
import pandas as pd

from utils import record
from utils.evaluation.chance import NULL_REASON
from utils.options import options_label


def summary_row(run, metrics: dict) -> dict:
    """One row of the summary for an evaluated run (``run``: a :class:`utils.record.Run`)."""
    c = run.config
    return {
        "run": run.name,
        "group": record.group_name(run.name),
        "dataset": c.get("dataset"),
        "backbone": c.get("backbone"),
        "method": c.get("method"),
        "distance": c.get("distance"),
        "options": options_label(c),
        **metrics,
    }


def summarise(rows):
    """Mean and sample standard deviation over seeds per group of runs.

    ``rows``: dicts with ``group``, ``dataset``, ``backbone``, ``method``,
    ``distance``, ``options`` and the metrics.  Returns a DataFrame with one
    row per group: those columns, ``n_runs``, ``<metric>_mean`` /
    ``<metric>_std`` (std with ddof = 1, empty for a single run), and the
    group's ``<measure>_null_reason`` texts (the first given).
    """
    keys = ["group", "dataset", "backbone", "method", "distance", "options"]
    frame = pd.DataFrame(rows)
    notes = [c for c in frame.columns if c.endswith(NULL_REASON)]
    metric_names = [c for c in frame.columns if c not in keys and c != "run" and c not in notes]
    values = frame[metric_names].apply(pd.to_numeric, errors="coerce")
    grouped = values.groupby(frame["group"], sort=False)
    mean = grouped.mean()
    std = grouped.std(ddof=1)
    columns = {key: frame.groupby("group", sort=False)[key].first() for key in keys[1:]}
    columns["n_runs"] = grouped.size()
    for name in metric_names:
        columns[f"{name}_mean"] = mean[name]
        columns[f"{name}_std"] = std[name]
    for name in notes:
        columns[name] = frame.groupby("group", sort=False)[name].first()
    return pd.DataFrame(columns).rename_axis("group").reset_index()


# "{h}" is the headline level (:func:`headline_level`): the first level with at least two groups
SUMMARY_TABLES = (
    ("Hierarchical inference (W)", ["corr_mean_W", "corr_mean_chance_W", "corr_mean_chance95_W", "corr_mean_perm_p_W",
                                    "corr_elem_W", "corr_elem_p_W", "corr_perm_p_W", "mapr_{h}_W", "mapr_chance_{h}",
                                    "rf_norm_W", "rf_norm_chance_W", "rf_taxonomy_W", "rf_taxonomy_chance_W"]),
    ("Hierarchical inference (prototypes)", ["corr_mean_proto", "corr_mean_chance_proto", "corr_mean_chance95_proto",
                                             "corr_mean_perm_p_proto", "corr_elem_proto", "corr_elem_p_proto",
                                             "mapr_{h}_proto", "mapr_chance_{h}", "rf_norm_proto",
                                             "rf_norm_chance_proto"]),
    ("Classification (W)", ["acc_W", "top5_W", "ahc_W", "ahd5_W", "hp5_W", "ece_W", "calib_spearman_W",
                            "pointbiserial_W"]),
    ("Classification (prototypes)", ["acc_proto", "top5_proto", "ahc_proto", "ahd5_proto", "hp5_proto", "ece_proto",
                                     "calib_spearman_proto", "pointbiserial_proto"]),
    ("Retrieval", ["hs@1", "hs_chance@1", "hs@50", "hs_chance@50", "hs@250", "ahs250", "ahs250_chance"]),
)
LIVING = ("corr_mean_living_W", "corr_elem_living_W")  # after corr_mean_perm_p_W where the records have them

#: One legend line per column kind (:func:`legend_key`): what it measures, its direction, its chance level.
#: ``{h}``: the headline level; ``{k}``: the k of hs@k; ``{n_chance}`` / ``{n_rf_chance}``: the relabellings behind the chance levels.
LEGEND = {
    "corr_mean": ("Spearman correlation of each class's representative distances with its tree distances d_T "
                  "(diagonal included), Fisher-z mean over the classes", "higher is better",
                  "chance: corr_mean_chance, 95th percentile corr_mean_chance95"),
    "corr_mean_chance": ("corr_mean of the same representatives with the classes randomly relabelled: the mean "
                         "over {n_chance} relabellings", "the chance level of corr_mean", None),
    "corr_mean_chance95": ("the 95th percentile of corr_mean over those {n_chance} relabellings",
                           "a corr_mean above it is better than chance at the 5 % level", None),
    "corr_mean_perm_p": ("permutation p-value of corr_mean over the {n_chance} relabellings (at least "
                         "1/({n_chance} + 1))", "lower is better", "chance: uniform on (0, 1]"),
    "corr_elem": ("one Spearman correlation of the representative distances with d_T over all class pairs",
                  "higher is better", "chance: 0"),
    "corr_elem_p": ("its two-sided p-value (t test, as scipy.stats.spearmanr)", "lower is better", None),
    "corr_perm_p": ("permutation p-value of corr_elem (--n_perm relabellings, 999 by default)", "lower is better",
                    "chance: uniform on (0, 1]"),
    "corr_mean_living": ("corr_mean over the 'living' classes only", "higher is better", None),
    "corr_elem_living": ("corr_elem over the 'living' classes only", "higher is better", None),
    "mapr_l": ("MAP@R of finding a class's level-{h} group among the nearest representatives", "higher is better",
               "chance: mapr_chance_{h}"),
    "mapr_chance_l": ("the expected mapr_{h} under a random relabelling of the classes, exact from the group sizes",
                      "the chance level of mapr_{h}", None),
    "rf_norm": ("normalised Robinson-Foulds distance of the representatives' WPGMA tree to the WPGMA tree of d_T",
                "lower is better (0 = the same tree)", "chance: rf_norm_chance"),
    "rf_norm_chance": ("the mean rf_norm of randomly relabelled representatives ({n_rf_chance} relabellings)",
                       "the chance level of rf_norm", None),
    "rf_taxonomy": ("normalised Robinson-Foulds distance of the representatives' WPGMA tree to the taxonomy itself",
                    "lower is better (0 = the same tree)", "chance: rf_taxonomy_chance"),
    "rf_taxonomy_chance": ("the mean rf_taxonomy of randomly relabelled representatives ({n_rf_chance} "
                           "relabellings)", "the chance level of rf_taxonomy", None),
    "acc": ("test accuracy", "higher is better", "chance: 1 / classes for a uniform guess"),
    "top5": ("share of test images whose label is among the 5 highest scores", "higher is better", None),
    "ahc": ("mean tree distance d_T of the prediction to the label (0 when right)", "lower is better", None),
    "ahd5": ("mean tree distance of the top 5 predictions to the label", "lower is better", None),
    "hp5": ("hierarchical precision at 5: share of the top 5 within the label's hp5 radius", "higher is better",
            None),
    "ece": ("expected calibration error of the maximum softmax probability (15 bins)", "lower is better", None),
    "calib_spearman": ("Spearman correlation of confidence and accuracy over the calibration bins",
                       "higher is better", None),
    "pointbiserial": ("point-biserial correlation of correctness with confidence", "higher is better", None),
    "hs@k": ("class similarity of the {k} nearest test images, as a share of the best any {k} could give",
             "higher is better", "chance: hs_chance@{k}"),
    "hs_chance@k": ("the expected hs@{k} of random embeddings, exact from the class counts",
                    "the chance level of hs@{k}", None),
    "ahs250": ("area under hs@1 .. hs@250", "higher is better", "chance: ahs250_chance"),
    "ahs250_chance": ("the expected ahs250 of random embeddings", "the chance level of ahs250", None),
}


def legend_key(name):
    """The :data:`LEGEND` key of a column: ``_W`` / ``_proto`` dropped, a level number as ``l``, hs's k as ``k``."""
    base = re.sub(r"_(W|proto)$", "", name)
    base = re.sub(r"@\d+$", "@k", base)
    return re.sub(r"_\d+$", "_l", base)


def _reason_column(name):
    """The ``<measure>_null_reason`` column of a table column (``hp5_W`` -> ``hp5_null_reason``)."""
    return re.sub(r"_(W|proto)$", "", name) + NULL_REASON


def _part_headline_level(part):
    """The headline level of a (dataset, backbone) block of the summary (0 for records without one)."""
    if "headline_level_mean" not in part:
        return 0
    values = part["headline_level_mean"].dropna()
    return int(values.iloc[0]) if len(values) else 0


def _count(part, key):
    values = part[f"{key}_mean"].dropna() if f"{key}_mean" in part else pd.Series(dtype=float)
    return int(values.iloc[0]) if len(values) else "?"


def legend(names, part, docs="docs/evaluate.md"):
    """The lines under one table: one per column (what, direction, chance level, link), then why any is null."""
    fill = dict(h=_part_headline_level(part), n_chance=_count(part, "n_chance"), n_rf_chance=_count(part, "n_rf_chance"))
    lines = []
    for name in names:
        what, direction, chance = LEGEND.get(legend_key(name), (name, None, None))
        k = re.search(r"@(\d+)$", name)
        parts = [text.format(k=k.group(1) if k else "k", **fill) for text in (what, direction, chance) if text]
        lines.append(f"- `{name}`: " + "; ".join(parts) + f" ([{docs.split('/')[-1]}]({docs}))")
    for name in names:
        column = _reason_column(name)
        if column in part and part[column].notna().any():
            lines.append(f"- `{name}` is null (-) where marked: {part[column].dropna().iloc[0]}")
    return lines


def _cell(mean, std):
    if mean is None or not np.isfinite(mean):
        return "-"
    fmt = ".2e" if 0 < abs(mean) < 1e-3 else ".4f"  # p-values: small ones stay readable
    if std is None or not np.isfinite(std):
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {std:{fmt}}"


def _shown(name, part):
    """A column is shown where some run has a value, or a reason why it is null."""
    has_value = f"{name}_mean" in part and part[f"{name}_mean"].notna().any()
    column = _reason_column(name)
    return has_value or (column in part and part[column].notna().any())


def summary_markdown(summary, docs="docs/evaluate.md"):
    """The summary as Markdown: per (dataset, backbone), tables of "mean ± std" like the paper's, each with a
    legend under it (:func:`legend`; ``docs``: the link to the definitions of the measures)."""
    lines = ["# Summary over seeds", "", "Mean ± sample standard deviation over the seeds of each run group.", ""]
    for (dataset, backbone), part in summary.groupby(["dataset", "backbone"], sort=False, dropna=False):
        lines += [f"## {dataset} / {backbone}", ""]
        living = [c for c in LIVING if f"{c}_mean" in part]
        level = _part_headline_level(part)
        for title, names in SUMMARY_TABLES:
            names = [n.format(h=level) for n in names]
            if title.startswith("Hierarchical inference (W)"):
                names = names[:4] + living + names[4:]
            names = [n for n in names if _shown(n, part)]
            if not names:
                continue
            lines += [f"### {title}", ""]
            header = ["method", "distance", "options", "runs"] + names
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] * 4 + ["---:"] * len(names)) + "|")
            for _, row in part.iterrows():
                cells = [str(row["method"]), str(row["distance"]), str(row["options"]), str(int(row["n_runs"]))]
                cells += [_cell(row.get(f"{n}_mean"), row.get(f"{n}_std")) for n in names]
                lines.append("| " + " | ".join(cells) + " |")
            lines += [""] + legend(names, part, docs) + [""]
    return "\n".join(lines)
