#!/usr/bin/env python
"""Train on NABirds with its bird taxonomy (555 classes).

    python train_nabirds.py --GPU 0 --method DR --distance euc --seed 1 --use_val

Reads <data_root>/nabirds/ as distributed (images/, images.txt, classes.txt, hierarchy.txt,
image_class_labels.txt, train_test_split.txt).  The record goes to record/<run name>/.
"""
import os

from datasets import load_nabirds
from utils.cli import build_parser, parse_with
from utils.errors import exit_on_user_error
from utils.trainer import train

RESIZE = 128


def build():
    p = build_parser(__doc__, backbone="resnet50", epochs=100)
    g = p.add_argument_group("data")
    g.add_argument("--aug", action="store_true", help="random affine + horizontal flip on the training split")
    g.add_argument("--resize", type=int, default=RESIZE, help=f"square side images are resized to (default {RESIZE})")
    g.add_argument("--official_split", action="store_true",
                   help="use train_test_split.txt instead of the paper's random 70/10/20 split")
    g.add_argument("--small", action="store_true",
                   help="train on 5,000 images (with --use_val validate on 30,000), test on the rest "
                        "(smaller archives: the same fractions)")
    p.set_defaults(dataset="nabirds", resize_default=RESIZE)
    return p


def load_data(args):
    return load_nabirds(args.data_root, use_val=args.use_val, seed=args.seed, resize=args.resize, aug=args.aug,
                        official_split=args.official_split, small=args.small)


def parse_args(argv, error=None):
    """The run's arguments as training sees them (grid.py names runs with it)."""
    return parse_with(build(), argv, error)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    return train(args, load_data, default_workers=4, script_dir=os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    main()
