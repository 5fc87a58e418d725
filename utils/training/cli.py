"""The command-line flags every training script shares, and the parse into a :class:`RunConfig`.

Flag names and meanings follow the paper's code; the defaults come from the
dataset's entry in ``datasets/registry.py``.  Each training script adds its
data flags (:func:`build_parser` returns the parser) and calls :func:`parse`.
"""
import argparse

import torch

from datasets import default_data_root
from datasets.registry import DatasetEntry
from losses.scale import SCALE_UPDATES
from models.backbones import BACKBONES
from utils.errors import UserError
from utils.options import float_tag
from utils.training.config import METHOD_ALIASES, RunConfig


def _lr_help(entry):
    special = [f"{float_tag(v)} for {name}" for name, v in entry.lr_by_backbone.items() if v != entry.lr]
    return ", ".join(special + [f"{float_tag(entry.lr)} otherwise" if special else float_tag(entry.lr)])


def build_parser(description: str, entry: DatasetEntry, epilog: str = None) -> argparse.ArgumentParser:
    """The flags every training script has, with ``entry``'s defaults (``--lr`` and ``--num_workers``: None,
    resolved per backbone and dataset by :meth:`RunConfig.from_flags`)."""
    p = argparse.ArgumentParser(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("method")
    g.add_argument("--method", default="DR", choices=sorted(METHOD_ALIASES),
                   help="DR = ProxyDR (default), normface (alias SD) = NormFace, softmax = softmax baseline")
    g.add_argument("--distance", default="euc", choices=["euc", "arccos"],
                   help="euc: chord sqrt(2-2cos); arccos: angle (default euc)")
    g.add_argument("--dynamic", action="store_true", help="dynamic scale (normface, DR); else s = 10")
    g.add_argument("--scale_update", default="equations", choices=SCALE_UPDATES,
                   help="the dynamic scale's per-step update: the paper's equations (default) or paper_code, "
                        "the paper's code (docs/differences.md)")
    g.add_argument("--ema", action="store_true", help="class representatives as EMA of embeddings (no gradient)")
    g.add_argument("--alpha", type=float, default=0.01, help="EMA rate (default 0.01)")
    g.add_argument("--mds_W", action="store_true",
                   help="fix representatives by MDS on the class tree (uses the hierarchy in training)")
    g.add_argument("--beta", type=float, default=1.0, help="beta of the tree-distance transform T (default 1)")
    g.add_argument("--CORR", action="store_true", help="CORR loss 1 - cos(f, w_y); needs --method DR --mds_W")
    g.add_argument("--clspri", action="store_true", help="add log class prior (training frequencies) to the scores")

    g = p.add_argument_group("model")
    g.add_argument("--backbone", default=entry.backbone, choices=BACKBONES, help=f"backbone (default {entry.backbone})")
    g.add_argument("--rand_backbone", action="store_true", help="random backbone weights instead of ImageNet")
    g.add_argument("--size_inform", action="store_true",
                   help="add Linear(2,128)(log [width, height]) of the original image to the embedding")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=entry.epochs,
                   help=f"training epochs (default {entry.epochs}); 0 records the untrained network")
    g.add_argument("--batch_size", type=int, default=entry.batch_size,
                   help=f"batch size (default {entry.batch_size})")
    g.add_argument("--lr", type=float, default=None,
                   help=f"Adam learning rate of the network and the scale (default {_lr_help(entry)}"
                        + (f"; {entry.lr_note})" if entry.lr_note else ")"))
    g.add_argument("--seed", type=int, default=1, help="seeds the split, initialisation, data order and MDS")
    g.add_argument("--use_val", action="store_true",
                   help="hold out a validation split and evaluate the checkpoint with the best validation accuracy")
    g.add_argument("--test_each_epoch", action="store_true",
                   help="also record test accuracy after every epoch (costs a test pass per epoch)")
    g.add_argument("--resume", action="store_true", help="continue the run from its checkpoint_last.pt")
    g.add_argument("--overwrite", action="store_true", help="replace an existing record of the same run")

    g = p.add_argument_group("machine and files")
    g.add_argument("--GPU", type=int, default=None, help="use cuda:N (the CPU, with a notice, when CUDA is absent)")
    g.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda:1 (overrides --GPU)")
    g.add_argument("--num_workers", type=int, default=None,
                   help=f"data-loading worker processes (default {entry.num_workers} for {entry.name})")
    g.add_argument("--data_root", default=None,
                   help="folder holding the datasets (default ./data, or DATA_init of config.json beside the scripts)")
    g.add_argument("--record_dir", default="record", help="where run folders are written (default record/)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the network (CUDA: CUDA-graph replay); recorded, not in the run name")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (bit-identical reruns on one GPU, slower); recorded, not in the run name")
    return p


def parse(parser: argparse.ArgumentParser, argv, entry: DatasetEntry, script_dir: str, error=None) -> RunConfig:
    """The run's configuration from ``argv`` (checked); ``error(message)`` replaces argparse's exit on a bad
    argument (grid.py turns it into one line naming the flag).  ``--data_root`` defaults to ``DATA_init`` of a
    ``config.json`` in ``script_dir`` (the training scripts' folder), else ``./data``."""
    if error is not None:
        parser.error = error
    flags = vars(parser.parse_args(argv))
    data_root = flags.get("data_root") or default_data_root(script_dir)
    return RunConfig.from_flags(flags, entry, data_root)


def parse_built(build, entry: DatasetEntry, script_dir: str, argv, error=None) -> RunConfig:
    """:func:`parse` with the parser ``build()`` makes (a script's flags for its one dataset)."""
    return parse(build(), argv, entry, script_dir, error)


def resolve_device(config: RunConfig, log=print) -> torch.device:
    """``--device`` wins; ``--GPU N`` means ``cuda:N`` where CUDA exists, else the CPU with a notice."""
    if config.device is not None:
        try:
            device = torch.device(config.device)
        except RuntimeError:
            raise UserError(f"--device {config.device!r} is not a torch device (e.g. cpu, cuda:0)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {config.device} asked for CUDA, which is not available here: use --device cpu")
        return device
    if config.GPU is not None:
        if torch.cuda.is_available():
            if config.GPU >= torch.cuda.device_count():
                raise UserError(f"--GPU {config.GPU}: only {torch.cuda.device_count()} GPU(s) here")
            return torch.device(f"cuda:{config.GPU}")
        log(f"notice: CUDA is not available; --GPU {config.GPU} ignored, training on the CPU")
    return torch.device("cpu")
