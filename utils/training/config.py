"""A training run's configuration as data: built once from the flags and the dataset's defaults, checked once.

:class:`RunConfig` is frozen.  ``config.json`` holds :meth:`RunConfig.as_dict`
plus what the run measured (``utils/training/run.py``); :meth:`RunConfig.from_json`
reads it back.  Every flag of every training script is a field (a script
without a flag keeps the field's default), so nothing reads a flag with a
fallback.
"""
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from datasets.registry import DatasetEntry
from utils import options
from utils.errors import UserError

METHOD_ALIASES = {"SD": "normface", "normface": "normface", "DR": "DR", "softmax": "softmax"}


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    # method
    method: str = "DR"
    distance: str = "euc"
    dynamic: bool = False
    scale_update: str = "equations"
    ema: bool = False
    alpha: float = 0.01
    mds_W: bool = False
    beta: float = 1.0
    CORR: bool = False
    clspri: bool = False
    # model
    backbone: str = "inception"
    rand_backbone: bool = False
    size_inform: bool = False
    # training
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 1
    use_val: bool = False
    test_each_epoch: bool = False
    resume: bool = False
    overwrite: bool = False
    # data
    gray: bool = False
    resize: Optional[int] = None
    small: bool = False
    aug: bool = False
    official_split: bool = False
    download: bool = False
    # machine and files
    GPU: Optional[int] = None
    device: Optional[str] = None
    num_workers: int = 0
    data_root: str = "data"
    record_dir: str = "record"
    compile: bool = False
    deterministic: bool = False
    # the defaults the run name compares with (options.differs)
    lr_default: float = 1e-4
    epochs_default: int = 50
    batch_size_default: int = 32
    resize_default: Optional[int] = None
    gray_default: bool = False

    def __post_init__(self):
        check(self)

    @property
    def run_name(self) -> str:
        return options.run_name(self.as_dict())

    @property
    def run_dir(self) -> str:
        return os.path.join(self.record_dir, self.run_name)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_flags(cls, flags: dict, entry: DatasetEntry, data_root: str) -> "RunConfig":
        """From the parsed flags (``vars(namespace)``; flags left at ``None`` take the dataset's default)."""
        values = {k: v for k, v in flags.items() if k in FIELDS}
        backbone = values.get("backbone") or entry.backbone
        resolved = dict(
            dataset=entry.name, backbone=backbone,
            method=METHOD_ALIASES.get(values.get("method", "DR"), values.get("method")),
            lr=entry.lr_for(backbone) if values.get("lr") is None else values["lr"],
            epochs=entry.epochs if values.get("epochs") is None else values["epochs"],
            batch_size=entry.batch_size if values.get("batch_size") is None else values["batch_size"],
            resize=values.get("resize", entry.resize),
            gray=entry.gray if values.get("gray") is None else values["gray"],
            num_workers=entry.num_workers if values.get("num_workers") is None else values["num_workers"],
            rand_backbone=bool(values.get("rand_backbone")) or entry.rand_backbone,
            data_root=values.get("data_root") or data_root,
            lr_default=entry.lr_for(backbone), epochs_default=entry.epochs, batch_size_default=entry.batch_size,
            resize_default=entry.resize, gray_default=entry.gray,
        )
        return cls(**{**values, **resolved})

    @classmethod
    def from_json(cls, path: str) -> "RunConfig":
        """The configuration in a run's ``config.json`` (the measured entries are left out)."""
        try:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {path} ({err}); is it a run's config.json?") from None
        return cls(**{k: v for k, v in values.items() if k in FIELDS})


FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))


def check(c: RunConfig) -> None:
    """Refuse contradictory or out-of-range options (exit 2 before any work)."""
    if c.method not in METHOD_ALIASES.values():
        raise UserError(f"--method {c.method}: choose DR, normface (SD) or softmax")
    if c.CORR and not c.mds_W:
        raise UserError("--CORR needs fixed representatives: add --mds_W (the paper's CORR is --method DR --mds_W --CORR)")
    if c.CORR and c.method != "DR":
        raise UserError(f"--CORR predicts with ProxyDR's score: use --method DR, not {c.method}")
    if c.ema and c.mds_W:
        raise UserError("--ema and --mds_W contradict each other (EMA moves W, MDS fixes it): choose one")
    if c.method == "softmax":
        for flag in ("ema", "mds_W", "dynamic"):
            if getattr(c, flag):
                raise UserError(f"--{flag} applies to normalised representatives: use --method DR or normface")
    if not 0.0 < c.alpha <= 1.0:
        raise UserError(f"--alpha must be in (0, 1], got {c.alpha}")
    if c.beta <= 0:
        raise UserError(f"--beta must be positive, got {c.beta}")
    if c.epochs < 0:
        raise UserError(f"--epochs must be 0 or more, got {c.epochs}")
    if c.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {c.batch_size}")
    if c.scale_update != "equations" and not c.dynamic:
        raise UserError(f"--scale_update {c.scale_update} changes the dynamic scale: add --dynamic or drop it")
    if c.lr <= 0:
        raise UserError(f"--lr must be positive, got {c.lr}")
    if c.num_workers < 0:
        raise UserError(f"--num_workers must be 0 or more, got {c.num_workers}")
    if c.resume and c.overwrite:
        raise UserError("--resume continues a run and --overwrite replaces it: choose one")
