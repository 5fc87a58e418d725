"""Command-line flags shared by the three training scripts, their checks, and run names.

Flag names and meanings follow the paper's code; each training script
adds its dataset flags and defaults and hands the parsed arguments to
``utils.trainer.train``.
"""
import argparse

import torch

from losses.scale import SCALE_UPDATES
from models.backbones import BACKBONES
from utils.errors import UserError

METHOD_ALIASES = {"SD": "normface", "normface": "normface", "DR": "DR", "softmax": "softmax"}
DEFAULT_LR = 1e-4
DEFAULT_BATCH_SIZE = 32


def _lr_help(lr_by_backbone, lr):
    special = [f"{float_tag(v)} for {name}" for name, v in lr_by_backbone.items() if v != lr]
    return ", ".join(special + [f"{float_tag(lr)} otherwise" if special else float_tag(lr)])


def build_parser(description, *, backbone, epochs, lr=DEFAULT_LR, lr_by_backbone=None, lr_note=None, epilog=None):
    """The flags every training script has; ``backbone``/``epochs`` are the dataset's defaults.

    ``lr``: the script's learning rate (the paper's ``DEFAULT_LR``; the synthetic
    presets choose their own); ``lr_by_backbone``: the learning rate per backbone
    where it differs (the paper's ``train.py`` trains resnet50 at 1e-5);
    ``lr_note``: added to ``--lr``'s help.  The
    defaults that run names are compared with are kept as ``<flag>_default``
    (set here, resolved per backbone by :func:`check_args`) and recorded in
    ``config.json``.
    """
    lr_by_backbone = dict(lr_by_backbone or {})
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
    g.add_argument("--backbone", default=backbone, choices=BACKBONES, help=f"backbone (default {backbone})")
    g.add_argument("--rand_backbone", action="store_true", help="random backbone weights instead of ImageNet")
    g.add_argument("--size_inform", action="store_true",
                   help="add Linear(2,128)(log [width, height]) of the original image to the embedding")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs,
                   help=f"training epochs (default {epochs}); 0 records the untrained network")
    g.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"batch size (default {DEFAULT_BATCH_SIZE})")
    g.add_argument("--lr", type=float, default=None,
                   help=f"Adam learning rate of the network and the scale (default {_lr_help(lr_by_backbone, lr)}"
                        + (f"; {lr_note})" if lr_note else ")"))
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
                   help="data-loading worker processes (default: 4, 0 for in-memory data)")
    g.add_argument("--data_root", default=None,
                   help="folder holding the datasets (default ./data, or DATA_init of config.json beside the scripts)")
    g.add_argument("--record_dir", default="record", help="where run folders are written (default record/)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the network (CUDA: CUDA-graph replay); recorded, not in the run name")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (bit-identical reruns on one GPU, slower); recorded, not in the run name")
    p.set_defaults(lr_by_backbone=lr_by_backbone, lr_otherwise=lr, epochs_default=epochs, batch_size_default=DEFAULT_BATCH_SIZE)
    return p


def parse_with(parser, argv, error=None):
    """``parser.parse_args(argv)``; ``error(message)`` replaces argparse's exit on a bad argument (grid.py
    turns it into one line naming the flag)."""
    if error is not None:
        parser.error = error
    return parser.parse_args(argv)


def resolve_lr(args):
    """``args.lr_default`` for the backbone, and ``args.lr`` from it when ``--lr`` was not given."""
    table = vars(args).pop("lr_by_backbone", None)
    otherwise = vars(args).pop("lr_otherwise", DEFAULT_LR)
    if table is not None or not hasattr(args, "lr_default"):
        args.lr_default = (table or {}).get(args.backbone, otherwise)
    if getattr(args, "lr", None) is None:
        args.lr = args.lr_default
    return args


def check_args(args):
    """Refuse contradictory or out-of-range options (exit 2 before any work)."""
    args.method = METHOD_ALIASES[args.method]
    resolve_lr(args)
    if args.CORR and not args.mds_W:
        raise UserError("--CORR needs fixed representatives: add --mds_W (the paper's CORR is --method DR --mds_W --CORR)")
    if args.CORR and args.method != "DR":
        raise UserError(f"--CORR predicts with ProxyDR's score: use --method DR, not {args.method}")
    if args.ema and args.mds_W:
        raise UserError("--ema and --mds_W contradict each other (EMA moves W, MDS fixes it): choose one")
    if args.method == "softmax":
        for flag in ("ema", "mds_W", "dynamic"):
            if getattr(args, flag):
                raise UserError(f"--{flag} applies to normalised representatives: use --method DR or normface")
    if not 0.0 < args.alpha <= 1.0:
        raise UserError(f"--alpha must be in (0, 1], got {args.alpha}")
    if args.beta <= 0:
        raise UserError(f"--beta must be positive, got {args.beta}")
    if args.epochs < 0:
        raise UserError(f"--epochs must be 0 or more, got {args.epochs}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    if getattr(args, "scale_update", "equations") != "equations" and not args.dynamic:
        raise UserError(f"--scale_update {args.scale_update} changes the dynamic scale: add --dynamic or drop it")
    if args.lr <= 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f"--num_workers must be 0 or more, got {args.num_workers}")
    if args.resume and args.overwrite:
        raise UserError("--resume continues a run and --overwrite replaces it: choose one")
    return args


def resolve_device(args, log=print):
    """``--device`` wins; ``--GPU N`` means ``cuda:N`` where CUDA exists, else the CPU with a notice."""
    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise UserError(f"--device {args.device!r} is not a torch device (e.g. cpu, cuda:0)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {args.device} asked for CUDA, which is not available here: use --device cpu")
        return device
    if args.GPU is not None:
        if torch.cuda.is_available():
            if args.GPU >= torch.cuda.device_count():
                raise UserError(f"--GPU {args.GPU}: only {torch.cuda.device_count()} GPU(s) here")
            return torch.device(f"cuda:{args.GPU}")
        log(f"notice: CUDA is not available; --GPU {args.GPU} ignored, training on the CPU")
    return torch.device("cpu")


def float_tag(x):
    """A short exact-enough form of a float for run names: 1e-3, 2.5e-4, 1e0."""
    mantissa, exponent = f"{x:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _differs(args, flag):
    """Whether ``args.<flag>`` is not the script's default ``args.<flag>_default`` (absent: no tag)."""
    default = getattr(args, f"{flag}_default", None)
    return default is not None and getattr(args, flag, None) != default


def option_tags(args):
    """Option part of a run name, in a fixed order (README, 'Run records').

    Every flag that changes the result appears when it is not at its default
    for the script and backbone; flags that do not (workers, device, folders,
    --test_each_epoch, --resume, --overwrite) never do.
    """
    tags = []
    if args.rand_backbone:
        tags.append("rand")
    if args.size_inform:
        tags.append("size")
    if getattr(args, "gray", None) and not getattr(args, "gray_default", False):
        tags.append("gray")
    if getattr(args, "small", False):
        tags.append("small")
    if getattr(args, "aug", False):
        tags.append("aug")
    if getattr(args, "resize", None) is not None and args.resize != getattr(args, "resize_default", None):
        tags.append(f"r{args.resize}")
    if getattr(args, "official_split", False):
        tags.append("offsplit")
    if args.clspri:
        tags.append("clspri")
    if args.ema:
        tags.append("ema" if args.alpha == 0.01 else f"ema{args.alpha:g}")
    if args.mds_W:
        tags.append("mds" if args.beta == 1.0 else f"mds{args.beta:g}")
    if args.CORR:
        tags.append("corr")
    if args.dynamic:
        tags.append("dnm")
        if getattr(args, "scale_update", "equations") == "paper_code":
            tags.append("sucode")
    if _differs(args, "lr"):
        tags.append(f"lr{float_tag(args.lr)}")
    if _differs(args, "batch_size"):
        tags.append(f"bs{args.batch_size}")
    if _differs(args, "epochs"):
        tags.append(f"ep{args.epochs}")
    if args.use_val:
        tags.append("val")
    return tags


def run_name(args):
    """``<dataset>_<backbone>_<method>_<distance>[_<options>]_seed<N>``."""
    parts = [args.dataset, args.backbone, args.method, args.distance, *option_tags(args), f"seed{args.seed}"]
    return "_".join(str(p) for p in parts)
