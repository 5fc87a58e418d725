#!/usr/bin/env python
"""Train on a plankton dataset (MicroS, MicroL, MesoZ), any taxonomy-folder dataset, or the synthetic set.

    python train.py                                   # the synthetic taxonomy set, CPU-sized
    python train.py --GPU 0 --dataset MicroS --method SD --distance euc --size_inform --seed 1 --use_val

The record goes to record/<run name>/; then run `python evaluate.py record/<run name>`.
"""
import argparse
import os
import sys

from datasets import ensure_synthetic, load_plankton
from datasets.taxonomy import GRAY_DATASETS
from utils.cli import DEFAULT_LR, build_parser, parse_with
from utils.errors import exit_on_user_error
from utils.trainer import train

# The synthetic presets (datasets/synthetic.py): a small CNN from random weights,
# lr 1e-3 (1e-4 barely moves W in this few steps); docs/datasets.md says why.
SYNTHETIC_DEFAULTS = {
    "synthetic": dict(backbone="simple", epochs=15, resize=32, lr=1e-3, batch_size=32),
    "synthetic_bench": dict(backbone="simple", epochs=15, resize=24, lr=1e-3, batch_size=32),
    "synthetic_bench_hard": dict(backbone="simple", epochs=15, resize=24, lr=1e-3, batch_size=32),
}
# The paper's train.py trains ResNet-50 at Adam 1e-5 (network and scale), every other backbone at 1e-4.
LR_BY_BACKBONE = {"resnet50": 1e-5}

EPILOG = """datasets:
  MicroS, MicroL, MesoZ   <data_root>/<name>/ as unpacked (taxonomy folders, or the class and image CSVs)
  synthetic               generated under <data_root>/synthetic/ on first use (default; the demo preset)
  synthetic_bench         the benchmark preset, <data_root>/synthetic_bench/ (synthetic_bench_hard: harder)
  any other NAME          <data_root>/NAME/: every folder that directly holds images is a class,
                          its folder path below NAME is its place in the taxonomy
"""


def build(argv):
    first = argparse.ArgumentParser(add_help=False)  # only to pick the dataset's defaults
    first.add_argument("--dataset", default="synthetic")
    known, _ = first.parse_known_args(argv)
    synthetic = known.dataset in SYNTHETIC_DEFAULTS
    defaults = SYNTHETIC_DEFAULTS.get(known.dataset, dict(backbone="inception", epochs=50, resize=128))
    p = build_parser(
        __doc__, backbone=defaults["backbone"], epochs=defaults["epochs"], lr=defaults.get("lr", DEFAULT_LR),
        lr_by_backbone=None if synthetic else LR_BY_BACKBONE, epilog=EPILOG,
        lr_note="the synthetic presets' own, for any backbone; on the paper's datasets 1e-5 for resnet50, "
                "1e-4 otherwise" if synthetic else None,
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic",
                   help="MicroS, MicroL, MesoZ, synthetic (default), or the name of a folder under --data_root")
    g.add_argument("--gray", action="store_true", default=None,
                   help="read images as 1 channel (default: on for MesoZ, off otherwise)")
    g.add_argument("--resize", type=int, default=defaults["resize"],
                   help=f"square side images are resized to (default {defaults['resize']})")
    p.set_defaults(resize_default=defaults["resize"], gray_default=known.dataset in GRAY_DATASETS)
    if "batch_size" in defaults:
        p.set_defaults(batch_size=defaults["batch_size"], batch_size_default=defaults["batch_size"])
    return p


def load_data(args):
    root = args.data_root
    if args.dataset in SYNTHETIC_DEFAULTS:
        ensure_synthetic(root, name=args.dataset)
    return load_plankton(root, args.dataset, use_val=args.use_val, seed=args.seed, resize=args.resize, gray=args.gray)


def parse_args(argv, error=None):
    """The run's arguments as training sees them (grid.py names runs with it)."""
    args = parse_with(build(argv), argv, error)
    if args.dataset in SYNTHETIC_DEFAULTS:
        args.rand_backbone = True  # the small CNN has no pretrained weights
    return args


@exit_on_user_error
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    synthetic = args.dataset in SYNTHETIC_DEFAULTS
    workers = 0 if synthetic else 4
    return train(args, load_data, default_workers=workers, script_dir=os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    main()
