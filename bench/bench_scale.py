"""Benchmark: ``evaluate.py`` from 1,000 to 21,843 classes, time and peak memory per stage, no download.

    python bench/bench_scale.py                                  # everything below (about 45 minutes on 2 cores)
    python bench/bench_scale.py --sizes 1000,2000 --no_record    # a quick run
    python bench/bench_scale.py --sizes 10000 --trees inat --plots

``evaluate.py --weights W.npy --hierarchy h.csv`` runs on synthetic class
vectors for two tree shapes at each size (``--sizes``; dimension 2048, and
1024 above 10,000 classes as for ImageNet-21k):

* ``inat``: iNaturalist-shaped, 7 levels with 3 / 13 / 51 / 273 / 1,103 /
  4,884 / 10,000 groups per level at 10,000 classes (scaled with the size;
  random parents, so the class order says nothing about the tree);
* ``ragged``: a deep ragged tree like WordNet's under ImageNet-21k: random
  branching (2 + geometric), Dirichlet(0.4) subtree sizes, a quarter of the
  inner nodes are classes themselves, depth up to 19, classes in random order.

The class vectors follow the tree (noise plus one random vector per node on
the path, shrinking with depth), as a trained classifier's would.
``--random`` adds rows with class vectors that ignore the tree, where the
permutation test cannot be decided by its first pass (the worst case).
Then ``evaluate.py RUN`` on a synthetic record with 10,000 classes and
100,000 test embeddings (``--record_classes``, ``--record_images``;
``--no_record`` skips it; ``--random`` rows only up to 5,000 classes).

Every configuration runs in a child process; its stages are timed by
``utils.evaluation.stages`` (the lines of ``evaluate.log``) and each stage's
peak memory is read from ``/proc/self/status`` (VmHWM, reset at the start of
the stage).  Plots are timed too unless ``--no_plots`` (or above
``--plots_up_to`` classes).  The table is
Markdown; the exponent is the least-squares slope of log(total seconds)
against log(classes) per tree shape.  The machine load (1-minute average) is
printed before and after each child.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import ArgumentParser, exit_on_user_error  # noqa: E402
from utils.hierarchy import Hierarchy  # noqa: E402

SIZES = (1000, 2000, 5000, 10000, 21843)
INAT_GROUPS = (3, 13, 51, 273, 1103, 4884, 10000)  # groups per level at 10,000 classes
STAGE_GROUPS = ("reference trees", "distances", "corr_mean and", "permutation test", "chance of corr_mean",
                "trees (", "chance of rf", "classification", "hs@k", "files", "plots")


# ------------------------------------------------------------------ synthetic data
def inat_tree(n_classes, seed=0):
    """A 7-level tree with the iNaturalist 2021 group counts per level, scaled to ``n_classes``."""
    rng = np.random.default_rng(seed)
    groups = [max(1, round(g * n_classes / INAT_GROUPS[-1])) for g in INAT_GROUPS[:-1]] + [n_classes]
    groups = [int(g) for g in np.maximum.accumulate(np.minimum(groups, n_classes))]
    parents = []  # parents[l][g]: the level-l group above group g of level l + 1 (every group has a child)
    for level in range(1, len(groups)):
        above = np.concatenate([np.arange(groups[level - 1]), rng.integers(0, groups[level - 1], groups[level] - groups[level - 1])])
        parents.append(rng.permutation(above))
    node = np.arange(n_classes)
    chain = [node]
    for level in range(len(groups) - 2, -1, -1):
        node = parents[level][node]
        chain.append(node)
    chain = np.stack(chain[::-1], axis=1)
    paths = [[f"L{level}_{g}" for level, g in enumerate(row[:-1])] + [f"c{c}"] for c, row in enumerate(chain)]
    return Hierarchy([p[-1] for p in paths], paths)


def ragged_tree(n_classes, seed=0, max_depth=19, inner_classes=0.25):
    """A random tree of ``n_classes`` classes, depth up to ``max_depth``, some classes at inner nodes."""
    rng = np.random.default_rng(seed)
    paths = []
    todo = [((), n_classes)]  # (node path, classes still to place under it)
    made = 0
    while todo:
        prefix, n = todo.pop()
        if prefix and (n == 1 or rng.random() < inner_classes):
            paths.append(list(prefix))  # a class at this node
            n -= 1
        if n == 0:
            continue
        if len(prefix) >= max_depth - 1:
            for _ in range(n):
                made += 1
                paths.append(list(prefix) + [f"c{made}"])
            continue
        k = int(min(n, 2 + rng.geometric(0.35)))
        sizes = 1 + rng.multinomial(n - k, rng.dirichlet(np.full(k, 0.4)))
        for size in sizes:
            made += 1
            todo.append((prefix + (f"n{made}",), int(size)))
    order = rng.permutation(len(paths))
    return Hierarchy([f"k{i}" for i in range(len(paths))], [paths[i] for i in order])


def class_vectors(hierarchy, dim, seed=0, follow_tree=True):
    """Noise plus, when ``follow_tree``, one random vector per node on each class's path (0.8^depth)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((hierarchy.n_classes, dim)).astype(np.float32)
    if follow_tree:
        for level in range(hierarchy.n_levels):
            groups = hierarchy.level_groups(level)
            W += (0.8**level * rng.standard_normal((groups.max() + 1, dim))).astype(np.float32)[groups]
    return W


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_record(folder, hierarchy, n_images, dim=128, seed=0, block=2000):
    """A run record (config, hierarchy, outputs_test.npz) of ProxyDR-euc-like scores, written in blocks."""
    from utils import record

    rng = np.random.default_rng(seed)
    W = _unit(class_vectors(hierarchy, dim, seed).astype(np.float64)).astype(np.float32)
    labels = rng.integers(0, hierarchy.n_classes, n_images)
    emb = _unit(W[labels] + 0.05 * rng.standard_normal((n_images, dim)).astype(np.float32)).astype(np.float32)
    counts = np.bincount(labels, minlength=hierarchy.n_classes)[:, None]
    sums = np.zeros_like(W)
    np.add.at(sums, labels, emb)
    protos = _unit(np.where(counts > 0, sums, W)).astype(np.float32)
    scores = np.empty((n_images, hierarchy.n_classes), dtype=np.float32)
    scores_proto = np.empty_like(scores)
    for r0 in range(0, n_images, block):
        for out, reps in ((scores, W), (scores_proto, protos)):
            d = np.sqrt(np.maximum(2 - 2 * emb[r0:r0 + block] @ reps.T, 0))
            out[r0:r0 + block] = -10 * np.log(d + 1e-6)
    os.makedirs(folder, exist_ok=True)
    record.save_outputs(os.path.join(folder, record.OUTPUTS_TEST), labels, emb, scores, W, protos, scores_proto)
    hierarchy.to_csv(os.path.join(folder, record.HIERARCHY))
    with open(os.path.join(folder, record.CONFIG), "w") as fh:
        json.dump({"dataset": "bench", "method": "DR", "distance": "euc", "beta": 1.0, "backbone": "bench",
                   "epochs": 1, "seed": 0}, fh)


# ------------------------------------------------------------------ one configuration (child process)
def _vm(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    return float("nan")


def _measure_stages():
    """Time and peak memory of every stage of evaluate.py in this process (hooks of utils.evaluation.stages)."""
    from utils.evaluation import stages

    found = []

    def started(self, name):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current resident size
        except OSError:
            pass

    def finished(self, name, seconds):
        found.append({"stage": name, "seconds": seconds, "peak_gib": _vm("VmHWM")})
        print(f"#     {name}: {seconds:.1f} s, peak {found[-1]['peak_gib']:.2f} GiB", file=sys.stderr, flush=True)
        return ""

    stages.Stages.started = started
    stages.Stages.finished = finished
    return found


def child(kind, tree, n_classes, dim_or_images, follow_tree, plots):
    import evaluate

    found = _measure_stages()
    make = inat_tree if tree == "inat" else ragged_tree
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        hierarchy = make(n_classes)
        if kind == "weights":
            W = class_vectors(hierarchy, dim_or_images, follow_tree=follow_tree)
            np.save(os.path.join(folder, "W.npy"), W)
            hierarchy.to_csv(os.path.join(folder, "hierarchy.csv"))
            del W
            argv = ["--weights", os.path.join(folder, "W.npy"), "--hierarchy", os.path.join(folder, "hierarchy.csv"),
                    "--out", os.path.join(folder, "out"), "--quiet"]
        else:
            run = os.path.join(folder, "bench_seed0")
            write_record(run, hierarchy, dim_or_images)
            argv = [run, "--quiet"]
        if not plots:
            argv.append("--no_plots")
        made = time.perf_counter() - start
        del hierarchy
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        start = time.perf_counter()
        evaluate.main(argv)
        total = time.perf_counter() - start
        metrics_path = os.path.join(folder, "out" if kind == "weights" else "bench_seed0", "metrics.json")
        with open(metrics_path) as fh:
            metrics = json.load(fh)
    keep = [k for k in metrics if k.startswith(("corr_elem_", "corr_perm_p", "rf_norm", "acc_W", "hs@250"))]
    print(json.dumps({"kind": kind, "tree": tree, "classes": n_classes, "size": dim_or_images, "made_s": made,
                      "total_s": total, "peak_gib": max([s["peak_gib"] for s in found] + [0.0]), "stages": found,
                      "metrics": {k: metrics[k] for k in keep}}))


# ------------------------------------------------------------------ the table
def run_child(args, *spec):
    load = os.getloadavg()[0]
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *map(str, spec)]
    print(f"# {' '.join(map(str, spec))}: load {load:.2f} ...", file=sys.stderr, flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        print(result.stderr[-3000:], file=sys.stderr)
        return None
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["load_before"], row["load_after"] = load, os.getloadavg()[0]
    print(f"#   {row['total_s']:.1f} s, peak {row['peak_gib']:.2f} GiB, load after {row['load_after']:.2f}",
          file=sys.stderr, flush=True)
    return row


def stage_sums(row):
    sums = {}
    for s in row["stages"]:
        group = next((g for g in STAGE_GROUPS if s["stage"].startswith(g)), s["stage"])
        seconds, peak = sums.get(group, (0.0, 0.0))
        sums[group] = (seconds + s["seconds"], max(peak, s["peak_gib"]))
    return sums


def table(rows):
    groups = [g for g in STAGE_GROUPS if any(g in stage_sums(r) for r in rows)]
    head = ["what", "classes", "dim / images", "total s", "peak GiB", "load"] + [g.rstrip(" (") for g in groups]
    head.append("other")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for r in rows:
        sums = stage_sums(r)
        what = f"{r['kind']} {r['tree']}" + ("" if r.get("follow_tree", True) else " (random W)")
        cells = [what, f"{r['classes']:,}", f"{r['size']:,}", f"{r['total_s']:.1f}", f"{r['peak_gib']:.2f}",
                 f"{r['load_before']:.1f}-{r['load_after']:.1f}"]
        cells += [f"{sums[g][0]:.1f} ({sums[g][1]:.1f})" if g in sums else "-" for g in groups]
        cells.append(f"{r['total_s'] - sum(v[0] for v in sums.values()):.1f}")  # reading the files, d_T, ...
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def exponent(rows):
    """Least-squares slope of log(total seconds) on log(classes), per tree shape (rows following the tree)."""
    out = {}
    for tree in sorted({r["tree"] for r in rows}):
        pts = [(r["classes"], r["total_s"]) for r in rows if r["tree"] == tree and r["kind"] == "weights"
               and r.get("follow_tree", True)]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[tree] = float(np.polyfit(x, y, 1)[0])
    return out


@exit_on_user_error
def main():
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="class counts, comma-separated")
    parser.add_argument("--trees", default="inat,ragged", help="tree shapes: inat, ragged (comma-separated)")
    parser.add_argument("--dim", type=int, default=None, help="class vector dimension (default 2048; 1024 above 10,000)")
    parser.add_argument("--random", action="store_true", help="also class vectors that ignore the tree")
    parser.add_argument("--no_plots", action="store_true", help="skip the plots (default: timed)")
    parser.add_argument("--plots_up_to", type=int, default=None,
                        help="time the plots only up to this many classes (default: at every size)")
    parser.add_argument("--no_record", action="store_true", help="skip the run record")
    parser.add_argument("--record_classes", type=int, default=10000)
    parser.add_argument("--record_images", type=int, default=100000)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--child", nargs=6, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, tree, classes, size, follow, plots = args.child
        child(kind, tree, int(classes), int(size), follow == "1", plots == "1")
        return
    print(f"CPUs: {os.cpu_count()}; load {os.getloadavg()}", flush=True)
    rows = []
    for tree in args.trees.split(","):
        for classes in (int(c) for c in args.sizes.split(",")):
            dim = args.dim or (2048 if classes <= 10000 else 1024)
            plots = "0" if args.no_plots or classes > (args.plots_up_to or classes) else "1"
            for follow in ("1", "0") if args.random and classes <= 5000 else ("1",):
                row = run_child(args, "weights", tree, classes, dim, follow, plots)
                if row:
                    row["follow_tree"] = follow == "1"
                    rows.append(row)
    if not args.no_record:
        plots = "0" if args.no_plots or args.record_classes > (args.plots_up_to or args.record_classes) else "1"
        row = run_child(args, "record", "inat", args.record_classes, args.record_images, "1", plots)
        if row:
            rows.append(row)
    print(table(rows))
    print()
    print("Cells: seconds (peak GiB) per stage, summed over the two distances or the W and prototype sets; "
          "other: the rest (reading the files, building d_T).")
    for tree, slope in exponent(rows).items():
        print(f"fitted exponent ({tree}, evaluate.py --weights): total seconds ~ classes^{slope:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
