"""Writes the example figures of docs/figures/ from simulated runs (no dataset, no training).

    python tools/figure_examples.py [--classes 100 10000] [--out docs/figures]

The committed examples are its default output (``example_<kind>_<classes>.png``);
``--classes 15 100 555 10000`` writes every size looked at.  Prints the seconds
each figure took.

Hierarchies: the synthetic demo tree (15 classes), CIFAR-100's shipped
hierarchy (100), a NABirds-like tree under one root (555) and a 10,000-class
tree.  Representatives: every taxonomy node draws a random direction, a class
sums the directions along its path (weights 1, 0.7, 0.5, 0.35, ...) plus noise,
normalised; test embeddings add noise to their class's vector.  So the
figures show a model that learned part of the hierarchy, on the real figure
code (utils/evaluation/plots.py).
"""
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import trees  # noqa: E402
from utils.errors import ArgumentParser  # noqa: E402
from utils.evaluation import plots  # noqa: E402
from utils.hierarchy import Hierarchy  # noqa: E402


def synthetic_demo():
    from datasets.synthetic import build_tree

    nodes, paths = [build_tree(np.random.default_rng(0), 15, 4)], []
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.is_class:
            paths.append(node.path)
    paths.sort()
    return Hierarchy([p[-1] for p in paths], paths)


def cifar100():
    from datasets.cifar100 import shipped_hierarchy

    table = shipped_hierarchy()
    paths = [[*table[c], c] for c in sorted(table)]
    return Hierarchy(sorted(table), paths)


def nested(n_classes, depth, root=None, seed=0):
    """A ragged tree: each level splits its classes into random runs; about 10 % of paths stop one level early."""
    rng = np.random.default_rng(seed)
    branching = n_classes ** (1.0 / depth)
    prefixes = [[] for _ in range(n_classes)]
    spans = [(0, n_classes)]
    for level in range(depth - 1):
        nxt = []
        for lo, hi in spans:
            size = hi - lo
            k = int(np.clip(rng.poisson(branching), 2, max(2, size)))
            cuts = np.sort(rng.choice(np.arange(lo + 1, hi), size=min(k - 1, size - 1), replace=False)) if size > 1 else []
            bounds = [lo, *cuts, hi]
            for g, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                for c in range(a, b):
                    prefixes[c].append(f"{'ABCDEFGH'[level]}{len(nxt) + 1}")
                nxt.append((a, b))
        spans = nxt
    paths = []
    for c, p in enumerate(prefixes):
        cut = len(p) if rng.random() > 0.1 else max(1, len(p) - 1)
        paths.append(([root] if root else []) + p[:cut] + [f"class{c}"])
    return Hierarchy([p[-1] for p in paths], paths)


def simulated_vectors(h, seed=0, dim=64, noise=0.45):
    rng = np.random.default_rng(seed)
    weights = [1.0, 0.7, 0.5, 0.35, 0.25, 0.2]
    x = np.zeros((h.n_classes, dim))
    for level in range(h.n_levels):
        groups = h.level_groups(level)
        direction = rng.normal(size=(groups.max() + 1, dim)) / np.sqrt(dim)
        deep = (h.lengths > level)[:, None]
        x += deep * weights[min(level, len(weights) - 1)] * direction[groups]
    x += noise * rng.normal(size=x.shape) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chord(x):
    g = np.clip(x @ x.T, -1.0, 1.0)
    d = np.sqrt(np.maximum(2.0 - 2.0 * g, 0.0))
    np.fill_diagonal(d, 0.0)
    return d


def learned_tree(D):
    if D.shape[0] <= 600:
        return trees.agglomerate(D, "wpgma")
    from scipy.cluster.hierarchy import linkage  # the project's WPGMA is O(C^3): too slow for a figure demo
    from scipy.spatial.distance import squareform

    return linkage(squareform(D, checks=False), "weighted")


def history(epochs=15, dynamic=False, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    acc = 1 - 0.9 * np.exp(-e / 3.5) + 0.01 * rng.normal(size=epochs)
    return pd.DataFrame({
        "epoch": e, "train_loss": 3.0 * np.exp(-e / 4) + 0.1, "train_acc": np.clip(acc, 0, 1),
        "val_acc": np.clip(acc - 0.05, 0, 1), "val_acc_proto": np.clip(acc - 0.07, 0, 1),
        "scale": 7.9 + 0.4 * np.log(e) if dynamic else np.full(epochs, 10.0), "seconds": np.full(epochs, 4.0),
    })


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[100, 10000])
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "figures"))
    args = p.parse_args(argv)
    makers = {15: synthetic_demo, 100: cifar100, 555: lambda: nested(555, 4, root="Birds", seed=5)}
    for n in args.classes:
        h = makers.get(n, lambda: nested(n, 4, seed=n))()
        run = f"simulated_{n}_classes_DR_euc_seed1"
        x = simulated_vectors(h)
        D = chord(x)
        Z = learned_tree(D)
        timings = {}
        start = time.perf_counter()
        plots.plot_trees(os.path.join(args.out, f"example_tree_{n}.png"), Z, h, "W", distance="euc", run=run)
        timings["tree"] = time.perf_counter() - start
        start = time.perf_counter()
        plots.plot_distances(os.path.join(args.out, f"example_distances_{n}.png"), D, h, "W", "euc", run=run)
        timings["distances"] = time.perf_counter() - start
        if n <= 555:
            rng = np.random.default_rng(1)
            labels = np.repeat(np.arange(n), 8 if n < 50 else 4)
            emb = x[labels] + 0.12 * rng.normal(size=(labels.size, x.shape[1]))
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            from utils.evaluation.chance import hs_chance_curve
            from utils.evaluation.retrieval import hs_curve

            sim = h.similarities("euc")
            start = time.perf_counter()
            plots.plot_hs_curve(os.path.join(args.out, f"example_hs_curve_{n}.png"), hs_curve(emb, labels, sim),
                                hs_chance_curve(labels, sim, 250), run=run, n_test=labels.size, distance="euc")
            timings["hs"] = time.perf_counter() - start
            plots.plot_history(os.path.join(args.out, f"example_training_curves_{n}.png"), history(dynamic=n == 100),
                               run=run)
        print(n, "classes:", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()), flush=True)


if __name__ == "__main__":
    main()
