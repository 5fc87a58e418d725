#!/usr/bin/env python
"""Small own data on a CPU: the taxonomy-folder defaults against the small-data recipe (README, 'Your own data').

A small taxonomy folder (the synthetic generator: 8 classes, 3 levels, 30
images each, sorted into folders like a user's own) is trained by
``train.py`` with the small CNN from random weights, once per setting below,
and each run's record gives: the training pass's accuracy in the last epoch,
the evaluated network's accuracy on the same training images
(``train_acc_eval``), the test accuracy (W) and the wall time.

    python bench/bench_small_data.py                 # about 10 minutes on 2 CPU cores
"""
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from datasets.synthetic import generate_synthetic  # noqa: E402
from utils import record  # noqa: E402
from utils.errors import ArgumentParser, exit_on_user_error  # noqa: E402

BASE = ["--dataset", "MyData", "--backbone", "simple", "--rand_backbone", "--seed", "1"]
SETTINGS = [
    ("taxonomy defaults (128 px, lr 1e-4)", ["--epochs", "3"]),
    ("taxonomy defaults (128 px, lr 1e-4)", ["--epochs", "15"]),
    ("recipe: --lr 1e-3 --resize 32", ["--epochs", "3", "--lr", "1e-3", "--resize", "32"]),
    ("recipe: --lr 1e-3 --resize 32", ["--epochs", "15", "--lr", "1e-3", "--resize", "32"]),
]


def measure(run_dir, seconds):
    with open(os.path.join(run_dir, record.CONFIG), encoding="utf-8") as fh:
        config = json.load(fh)
    history = record.load_history(run_dir)
    test = record.load_outputs(os.path.join(run_dir, record.OUTPUTS_TEST))
    return {"epochs": config["epochs"], "train pass acc": round(float(history["train_acc"].iloc[-1]), 3),
            "evaluated train acc": round(config["train_acc_eval"], 3),
            "test acc (W)": round(float(np.mean(test["scores"].argmax(1) == test["labels"])), 3),
            "seconds": round(seconds, 1), "warned": bool(config["warnings"])}


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images_per_class", type=int, default=30)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(os.path.join(tmp, "data", "MyData"), n_classes=8, depth=3,
                           images_per_class=args.images_per_class, seed=3)
        for label, flags in SETTINGS:
            t0 = time.time()
            run_dir = train.main(BASE + flags + ["--data_root", os.path.join(tmp, "data"),
                                                 "--record_dir", os.path.join(tmp, "rec")])
            rows.append({"setting": label, **measure(run_dir, time.time() - t0)})
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
