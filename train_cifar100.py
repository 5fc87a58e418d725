#!/usr/bin/env python
"""Train on CIFAR-100 (the python version) with its 4-level class hierarchy.

    python train_cifar100.py --GPU 0 --method DR --distance euc --seed 1 --use_val
    python train_cifar100.py --GPU 0 --method DR --mds_W --CORR --small --aug --seed 1 --use_val

Reads <data_root>/cifar-100-python/ (or cifar-100-python.tar.gz); --download fetches it
with torchvision where the network allows.  The record goes to record/<run name>/.
"""
import functools
import os

from datasets import registry
from utils.training import cli
from utils.training.run import script_main

ENTRY = registry.get("cifar100")
HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    p = cli.build_parser(__doc__, ENTRY)
    g = p.add_argument_group("data")
    g.add_argument("--small", action="store_true",
                   help="train on 10%% of the training images (with --use_val the rest validates)")
    g.add_argument("--aug", action="store_true", help="random affine + horizontal flip on the training split")
    g.add_argument("--resize", type=int, default=None, help="resize the 32x32 images to N x N (default: keep 32)")
    g.add_argument("--download", action="store_true", help="download CIFAR-100 with torchvision if it is missing")
    return p


#: ``parse_config(argv, error=None)``: the run's configuration as training sees it (grid.py names runs with it).
parse_config = functools.partial(cli.parse_built, build, ENTRY, HERE)
main = script_main(parse_config)


if __name__ == "__main__":
    main()
