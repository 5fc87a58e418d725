#!/usr/bin/env python
"""Print evaluated runs side by side (the end of `make demo`).

    python tools/compare.py record/demo                  every evaluated run in the folder
    python tools/compare.py record/demo/run_a record/demo/run_b

One column per run (headed by its method), one row per measure: test accuracy,
corr_mean_W and its permutation p-value, rf_taxonomy_W, AHD@5 (ahd5_W), and
how far W moved from its initialisation (w_init_cos from config.json).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import record  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402

ROWS = (
    ("acc_W", "test accuracy (W)", "higher is better"),
    ("corr_mean_W", "corr_mean_W: W distances vs tree distances", "higher: W reflect the taxonomy"),
    ("corr_perm_p_W", "corr_perm_p_W: permutation p-value", "below 0.05: better than chance"),
    ("rf_taxonomy_W", "rf_taxonomy_W: tree of W vs taxonomy", "lower is better (0 = same tree)"),
    ("ahd5_W", "ahd5_W: AHD@5, tree distance of top 5", "lower is better"),
    ("w_init_cos", "w_init_cos: cos(initial W, final W)", "1 = W never moved"),
)
METHOD_NAMES = {"DR": "ProxyDR", "normface": "NormFace", "softmax": "Softmax"}


def find_runs(paths):
    """The evaluated run folders named by ``paths`` (run folders, or folders of them), in order."""
    runs = []
    for path in paths:
        if not os.path.isdir(path):
            raise UserError(f"{path} is not a folder; give evaluated run folders or a folder of them")
        runs += record.evaluated_runs(path)
    if not runs:
        raise UserError(f"no evaluated run (metrics.json) in {', '.join(paths)}; run evaluate.py first")
    return runs


def table(runs):
    """The side-by-side table as text."""
    columns = []
    for run in runs:
        config, metrics = record.load_config(run), record.load_metrics(run)
        values = {**metrics, "w_init_cos": config.get("w_init_cos")}
        head = METHOD_NAMES.get(config.get("method"), str(config.get("method")))
        columns.append((head, values))
    width = max(len(label) for _, label, _ in ROWS)
    lines = [" " * width + "".join(f"{head:>11}" for head, _ in columns)]
    for key, label, note in ROWS:
        cells = []
        for _, values in columns:
            v = values.get(key)
            cells.append(f"{'-' if v is None else format(v, '.4f'):>11}")
        lines.append(f"{label:<{width}}" + "".join(cells) + f"   ({note})")
    lines.append("runs: " + ", ".join(os.path.basename(os.path.normpath(r)) for r in runs))
    return "\n".join(lines)


@exit_on_user_error
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="evaluated run folders, or folders of them")
    args = p.parse_args(argv)
    print(table(find_runs(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
