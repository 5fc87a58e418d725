"""Benchmark: every measure of evaluate.py against the paper's approach to HS@250 alone.

    python bench/bench_evaluate.py                 # 10,000 side by side, then 100,000 in a child process
    python bench/bench_evaluate.py --skip_big      # only the side-by-side comparison

Data: a CIFAR-100-shaped synthetic record (100 classes under 20 superclasses,
7 middle groups and 3 top groups; 128-d embeddings around hierarchical class
centres), so nothing needs downloading.

"All measures" = :func:`utils.evaluation.measures.evaluate_outputs` (W and
prototype classification, correlations with the 999-permutation test, level
retrieval, WPGMA/UPGMA trees and Robinson-Foulds, hs@1..250 and ahs250); file
writing and plots are timed separately.  "Paper HS@250" = the similarity
matrix, a full argsort of it, the N x N class-similarity matrix and a full
argsort of that, then the same averages: the two N x N argsorts of the
original protocol.  Both run in the same process, alternately, ``--repeat``
times; the median is reported.  The two hs curves are compared as a check.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.hierarchy import Hierarchy  # noqa: E402
from utils.evaluation.measures import evaluate_outputs  # noqa: E402
from utils.evaluation.retrieval import default_workers, hs_curve  # noqa: E402


def cifar_like_hierarchy():
    """3 top groups, 7 middle groups, 20 superclasses of 5 classes: 100 classes, 4 levels."""
    middle_of_super = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6]
    top_of_middle = [0, 0, 0, 1, 1, 2, 2]
    paths = []
    for c in range(100):
        s = c // 5
        m = middle_of_super[s]
        paths.append([f"top{top_of_middle[m]}", f"mid{m}", f"super{s}", f"class{c}"])
    return Hierarchy([p[-1] for p in paths], paths)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_outputs(hierarchy, n, dim=128, seed=0):
    """A record whose class centres follow the hierarchy, with noisy normalised embeddings."""
    rng = np.random.default_rng(seed)
    centre = np.zeros((hierarchy.n_classes, dim))
    for level, weight in zip(range(hierarchy.n_levels), (1.0, 0.8, 0.6, 0.5)):
        groups = hierarchy.level_groups(level)
        centre += weight * rng.normal(size=(groups.max() + 1, dim))[groups]
    W = _unit(centre)
    labels = rng.integers(0, hierarchy.n_classes, n)
    emb = _unit(W[labels] + 0.09 * rng.normal(size=(n, dim))).astype(np.float32)
    protos = _unit(np.stack([emb[labels == c].mean(0) if (labels == c).any() else W[c] for c in range(len(W))]))
    distance = np.sqrt(np.maximum(2 - 2 * emb @ W.T, 0))
    scores = (-10 * np.log(distance + 1e-6)).astype(np.float32)  # ProxyDR-euc scores
    d_proto = np.sqrt(np.maximum(2 - 2 * emb @ protos.T, 0))
    return {
        "labels": labels.astype(np.int64),
        "embeddings": emb,
        "scores": scores,
        "scores_proto": (-10 * np.log(d_proto + 1e-6)).astype(np.float32),
        "representatives": W.astype(np.float32),
        "prototypes": protos.astype(np.float32),
    }


def paper_hs(embeddings, labels, sim, k=250):
    """hs@1..k the way the original does it: two full N x N argsorts."""
    x = embeddings.astype(np.float32)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1)[:, :k]  # full argsort 1
    del similarity
    gains = np.cumsum(sim[labels[:, None], labels[order]], axis=1)
    pair_sim = sim[labels[:, None], labels[None, :]]  # N x N class similarities
    np.fill_diagonal(pair_sim, -np.inf)
    best = np.argsort(-pair_sim, axis=1)[:, :k]  # full argsort 2
    ideal = np.cumsum(np.take_along_axis(pair_sim, best, axis=1), axis=1)
    return (gains / ideal).mean(axis=0)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def side_by_side(n, repeat, seed=0):
    h = cifar_like_hierarchy()
    outputs = synthetic_outputs(h, n, seed=seed)
    config = {"distance": "euc", "beta": 1.0, "dataset": "CIFAR100"}
    sim = h.similarities("euc", 1.0)
    ours, paper, hs_only = [], [], []
    for rep in range(repeat):
        jobs = [("ours", lambda: evaluate_outputs(config, h, outputs)), ("paper", lambda: paper_hs(outputs["embeddings"], outputs["labels"], sim))]
        if rep % 2:
            jobs.reverse()
        for name, job in jobs:
            seconds, result = _timed(job)
            if name == "ours":
                ours.append(seconds)
                evaluation = result
            else:
                paper.append(seconds)
                reference = result
        hs_only.append(_timed(lambda: hs_curve(outputs["embeddings"], outputs["labels"], sim))[0])
    diff = float(np.max(np.abs(evaluation.hs - reference)))

    # files and plots of one run, for the record (not part of "all measures")
    from utils import record

    with tempfile.TemporaryDirectory() as folder:
        run = os.path.join(folder, "bench_seed0")
        os.makedirs(run)
        record.save_outputs(os.path.join(run, record.OUTPUTS_TEST), **outputs)
        h.to_csv(os.path.join(run, record.HIERARCHY))
        with open(os.path.join(run, record.CONFIG), "w") as fh:
            json.dump(config, fh)
        import evaluate

        loaded = record.load_run(run)
        files_s, _ = _timed(lambda: evaluate.write_run_files(loaded, evaluation, False, plots=False))
        plots_s, _ = _timed(lambda: evaluate.write_run_files(loaded, evaluation, False, plots=True))
    return {
        "n": n,
        "ours_all_measures_s": float(np.median(ours)),
        "ours_hs_only_s": float(np.median(hs_only)),
        "paper_hs250_s": float(np.median(paper)),
        "max_abs_hs_difference": diff,
        "write_files_s": files_s,
        "write_files_and_plots_s": plots_s,
        "acc_W": evaluation.metrics["acc_W"],
        "hs@250": evaluation.metrics["hs@250"],
    }


def peak_rss_kib():
    """Peak resident memory of this process, KiB.

    ``VmHWM`` of /proc/self/status belongs to this process's own address space;
    ``ru_maxrss`` is only the fallback, since Linux carries it over from the
    parent across a vfork + exec (it would report the parent's N x N arrays).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(n, seed=0):
    """Evaluate n embeddings in this process and report time and peak memory (run in a child)."""
    h = cifar_like_hierarchy()
    outputs = synthetic_outputs(h, n, seed=seed)
    seconds, evaluation = _timed(lambda: evaluate_outputs({"distance": "euc", "beta": 1.0}, h, outputs))
    peak_kib = peak_rss_kib()
    print(json.dumps({"n": n, "ours_all_measures_s": seconds, "peak_rss_gib": peak_kib / 2**20, "hs@250": evaluation.metrics["hs@250"], "ahs250": evaluation.metrics["ahs250"]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="embeddings of the side-by-side comparison (default 10000)")
    parser.add_argument("--big", type=int, default=100_000, help="embeddings of the large run (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating repetitions of the comparison (default 3)")
    parser.add_argument("--skip_big", action="store_true", help="skip the large run")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"CPUs: {os.cpu_count()}, hs@k worker threads: {default_workers()}", flush=True)
    small = side_by_side(args.n, args.repeat)
    print(json.dumps(small, indent=2), flush=True)
    faster = small["paper_hs250_s"] / small["ours_all_measures_s"]
    print(
        f"\n| N = {args.n:,}, 100 classes, 128-d | seconds (median of {args.repeat}) |\n|---|---:|\n"
        f"| evaluate.py, all measures | {small['ours_all_measures_s']:.2f} |\n"
        f"| evaluate.py, hs@1..250 alone | {small['ours_hs_only_s']:.2f} |\n"
        f"| paper's HS@250 alone (two full N x N argsorts) | {small['paper_hs250_s']:.2f} |\n"
        f"\nall measures are {faster:.1f}x faster than the paper's HS@250 alone; "
        f"largest hs@k difference {small['max_abs_hs_difference']:.1e}",
        flush=True,
    )
    if args.skip_big:
        return
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(args.big)], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        sys.exit(result.returncode)
    big = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(big, indent=2))
    print(f"\n| N = {args.big:,} | {big['ours_all_measures_s']:.1f} s, peak memory {big['peak_rss_gib']:.2f} GiB |")


if __name__ == "__main__":
    main()
