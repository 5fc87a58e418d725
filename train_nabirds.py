#!/usr/bin/env python
"""Train on NABirds with its bird taxonomy (555 classes).

    python train_nabirds.py --GPU 0 --method DR --distance euc --seed 1 --use_val

Reads <data_root>/nabirds/ as distributed (images/, images.txt, classes.txt, hierarchy.txt,
image_class_labels.txt, train_test_split.txt).  The record goes to record/<run name>/.
"""
import functools
import os

from datasets import registry
from utils.training import cli
from utils.training.run import script_main

ENTRY = registry.get("nabirds")
HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    p = cli.build_parser(__doc__, ENTRY)
    g = p.add_argument_group("data")
    g.add_argument("--aug", action="store_true", help="random affine + horizontal flip on the training split")
    g.add_argument("--resize", type=int, default=ENTRY.resize,
                   help=f"square side images are resized to (default {ENTRY.resize})")
    g.add_argument("--official_split", action="store_true",
                   help="use train_test_split.txt instead of the paper's random 70/10/20 split")
    g.add_argument("--small", action="store_true",
                   help="train on 5,000 images (with --use_val validate on 30,000), test on the rest "
                        "(smaller archives: the same fractions)")
    return p


#: ``parse_config(argv, error=None)``: the run's configuration as training sees it (grid.py names runs with it).
parse_config = functools.partial(cli.parse_built, build, ENTRY, HERE)
main = script_main(parse_config)


if __name__ == "__main__":
    main()
