"""Dataset loaders; see ``docs/datasets.md``.  Which datasets exist and their defaults: ``datasets/registry.py``.

Every loader returns a :class:`DataSplits` whose datasets yield
``(image, label, wh)``: a float32 ``[C, S, S]`` image in [0, 1], the int label
(index into ``hierarchy``) and the float32 original ``(width, height)``.
Bad input raises :class:`utils.errors.UserError` with one line naming the
problem and the fix.
"""
import json
import os

from datasets.cifar100 import load_cifar100
from datasets.common import CACHE_LIMIT_BYTES, IMAGE_EXTENSIONS, DataSplits, train_augmentation
from datasets.nabirds import load_nabirds
from datasets.synthetic import SYNTHETIC_NAME, ensure_synthetic, generate_synthetic
from datasets.taxonomy import load_csv_description, load_plankton, load_taxonomy_folder
from utils.errors import UserError


def default_data_root(script_dir):
    """``--data_root`` default: ``DATA_init`` from ``<script_dir>/config.json`` when present, else ``./data``.

    A relative ``DATA_init`` is taken relative to ``script_dir``.
    """
    config = os.path.join(os.fspath(script_dir), "config.json")
    if not os.path.isfile(config):
        return os.path.join(os.curdir, "data")
    try:
        with open(config, encoding="utf-8") as fh:
            entries = json.load(fh)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {config} ({err}); fix it or remove it and pass --data_root") from None
    value = entries.get("DATA_init") if isinstance(entries, dict) else None
    if value is None:
        return os.path.join(os.curdir, "data")
    if not isinstance(value, str) or not value:
        raise UserError(f"DATA_init in {config} must be a folder name; fix it or pass --data_root")
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.join(os.fspath(script_dir), value)


__all__ = [
    "CACHE_LIMIT_BYTES",
    "DataSplits",
    "IMAGE_EXTENSIONS",
    "SYNTHETIC_NAME",
    "default_data_root",
    "ensure_synthetic",
    "generate_synthetic",
    "load_cifar100",
    "load_csv_description",
    "load_nabirds",
    "load_plankton",
    "load_taxonomy_folder",
    "train_augmentation",
]
