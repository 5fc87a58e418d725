#!/usr/bin/env python
"""Train on CIFAR-100 (the python version) with its 4-level class hierarchy.

    python train_cifar100.py --GPU 0 --method DR --distance euc --seed 1 --use_val
    python train_cifar100.py --GPU 0 --method DR --mds_W --CORR --small --aug --seed 1 --use_val

Reads <data_root>/cifar-100-python/ (or cifar-100-python.tar.gz); --download fetches it
with torchvision where the network allows.  The record goes to record/<run name>/.
"""
import os

from datasets import load_cifar100
from utils.cli import build_parser, parse_with
from utils.errors import exit_on_user_error
from utils.trainer import train


def build():
    p = build_parser(__doc__, backbone="resnet50", epochs=100)
    g = p.add_argument_group("data")
    g.add_argument("--small", action="store_true",
                   help="train on 10%% of the training images (with --use_val the rest validates)")
    g.add_argument("--aug", action="store_true", help="random affine + horizontal flip on the training split")
    g.add_argument("--resize", type=int, default=None, help="resize the 32x32 images to N x N (default: keep 32)")
    g.add_argument("--download", action="store_true", help="download CIFAR-100 with torchvision if it is missing")
    p.set_defaults(dataset="cifar100", resize_default=None)
    return p


def load_data(args):
    return load_cifar100(args.data_root, use_val=args.use_val, small=args.small, seed=args.seed,
                         resize=args.resize, aug=args.aug, download=args.download)


def parse_args(argv, error=None):
    """The run's arguments as training sees them (grid.py names runs with it)."""
    return parse_with(build(), argv, error)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    return train(args, load_data, default_workers=2, script_dir=os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    main()
