"""Benchmark: ``evaluate.py --weights`` on an ImageNet-sized classifier (1000 classes, 2048-d), no download.

    python bench/bench_inspect_weights.py                  # 1000 classes x 2048
    python bench/bench_inspect_weights.py --classes 200 --no_plots

Data: class vectors built from a synthetic 3-level taxonomy (10 top groups x
10 middle groups x C/100 classes; each class the normalised sum of one random
vector per node on its path).  Timed separately: :func:`inspect` (both
distances, the 999-permutation test run once when the ranks agree, WPGMA /
UPGMA trees, Robinson-Foulds) and :func:`write_results` (files, and the PNG
plots unless ``--no_plots``).  Prints the seconds and the peak memory.
"""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.evaluation import inspect as inspect_weights  # noqa: E402
from utils.hierarchy import Hierarchy  # noqa: E402


def synthetic(n_classes, dim, seed=0):
    paths = [[f"t{i % 10}", f"m{i % 10}_{(i // 10) % 10}", f"c{i}"] for i in range(n_classes)]
    hierarchy = Hierarchy([p[-1] for p in paths], paths)
    rng = np.random.default_rng(seed)
    node = {}
    W = np.stack([sum(node.setdefault(tuple(p[: k + 1]), rng.standard_normal(dim)) for k in range(3)) for p in paths])
    return W / np.linalg.norm(W, axis=1, keepdims=True), hierarchy


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--n_perm", type=int, default=999)
    parser.add_argument("--no_plots", action="store_true")
    args = parser.parse_args()
    W, hierarchy = synthetic(args.classes, args.dim)
    start = time.perf_counter()
    result = inspect_weights.inspect(W, hierarchy, n_perm=args.n_perm)
    measured = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        inspect_weights.write_results(out, result, hierarchy, {"bench": True}, plots=not args.no_plots)
        written = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.classes} classes x {args.dim}: measures {measured:.1f} s, files"
          f"{'' if args.no_plots else ' and plots'} {written:.1f} s, peak memory {peak:.0f} MiB; "
          f"corr_mean_euc {result.metrics['corr_mean_euc']:.3f}, corr_perm_p_euc {result.metrics['corr_perm_p_euc']}")


if __name__ == "__main__":
    main()
