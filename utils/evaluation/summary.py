"""The summary over seeds of several evaluated runs: ``summary.csv`` and ``summary.md`` (the paper's tables).

A run's group is its run name without the seed; its ``options`` column is
:func:`utils.options.options_label` of its configuration.
"""
import numpy as np
import pandas as pd

from utils import record
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
