#!/usr/bin/env python
"""Train on a plankton dataset (MicroS, MicroL, MesoZ), any taxonomy-folder dataset, or a synthetic preset.

    python train.py                                   # the synthetic taxonomy set, CPU-sized
    python train.py --GPU 0 --dataset MicroS --method SD --distance euc --size_inform --seed 1 --use_val

The record goes to record/<run name>/; then run `python evaluate.py record/<run name>`.
"""
import argparse
import os

from datasets import registry
from utils.training import cli
from utils.training.run import script_main

SCRIPT = "train.py"
HERE = os.path.dirname(os.path.abspath(__file__))


def build(entry):
    p = cli.build_parser(__doc__, entry, epilog=registry.epilog(SCRIPT))
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic",
                   help="MicroS, MicroL, MesoZ, synthetic (default), or the name of a folder under --data_root")
    g.add_argument("--gray", action="store_true", default=None,
                   help="read images as 1 channel (default: on for MesoZ, off otherwise)")
    g.add_argument("--resize", type=int, default=entry.resize,
                   help=f"square side images are resized to (default {entry.resize})")
    return p


def parse_config(argv, error=None):
    """The run's configuration as training sees it (grid.py names runs with it)."""
    first = argparse.ArgumentParser(add_help=False)  # only to pick the dataset's defaults
    first.add_argument("--dataset", default="synthetic")
    known, _ = first.parse_known_args(argv)
    entry = registry.entry_for_script(SCRIPT, known.dataset)
    return cli.parse(build(entry), argv, entry, HERE, error)


main = script_main(parse_config)


if __name__ == "__main__":
    main()
