#!/usr/bin/env python
"""Check that two record folders hold the same results: every run's arrays bit for bit, every measure exactly.

    python tools/compare_records.py record_before/ record_after/

For each run folder under the first folder (matched by run name), compares
``outputs_*.npz`` array by array (same dtype, shape and bytes) and
``metrics.json`` value by value (equal, NaN/null alike).  Prints one line per
run and exits 1 when anything differs or a run is missing from the second
folder (code changes that must not change a result are checked this way).
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import record  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402

OUTPUTS = (record.OUTPUTS_TEST, record.OUTPUTS_VAL, record.OUTPUTS_TEST_LAST)


def _same_value(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(run_a, run_b):
    """What differs between two run folders (an empty list: nothing)."""
    found = []
    for name in OUTPUTS:
        path_a, path_b = os.path.join(run_a, name), os.path.join(run_b, name)
        if not os.path.isfile(path_a):
            continue
        if not os.path.isfile(path_b):
            found.append(f"{name} missing")
            continue
        with np.load(path_a, allow_pickle=False) as a, np.load(path_b, allow_pickle=False) as b:
            for key in sorted(set(a.files) | set(b.files)):
                if key not in a.files or key not in b.files:
                    found.append(f"{name}: array {key} only in one")
                elif a[key].dtype != b[key].dtype or a[key].shape != b[key].shape or a[key].tobytes() != b[key].tobytes():
                    found.append(f"{name}: {key} differs")
    if os.path.isfile(os.path.join(run_a, record.METRICS_JSON)):
        metrics_a, metrics_b = record.load_metrics(run_a), record.load_metrics(run_b)
        for key in metrics_a.keys() | metrics_b.keys():
            if key not in metrics_a or key not in metrics_b or not _same_value(metrics_a[key], metrics_b[key]):
                found.append(f"metrics.json: {key} {metrics_a.get(key)!r} vs {metrics_b.get(key)!r}")
    return found


@exit_on_user_error
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="record folder with the reference runs")
    p.add_argument("after", help="record folder with the same runs, trained again")
    args = p.parse_args(argv)
    runs = record.find_runs([args.before], outputs=record.OUTPUTS_TEST)
    if not runs:
        raise UserError(f"no run records under {args.before}")
    bad = 0
    for run in runs:
        name = os.path.basename(os.path.normpath(run))
        other = os.path.join(args.after, os.path.relpath(run, args.before))
        found = differences(run, other) if os.path.isdir(other) else ["missing in " + args.after]
        bad += bool(found)
        print(f"{'same' if not found else 'DIFFERENT'}  {name}" + "".join(f"\n    {f}" for f in found[:10]))
    print(f"{len(runs) - bad} of {len(runs)} runs identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
