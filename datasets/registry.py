"""Every dataset and preset in one table: its training script, loader and defaults, and the paper's grid flags.

The training scripts take their defaults from here, ``grid.py`` its per-dataset
flags, ``evaluate.py`` whether a dataset gets the living-subset correlations,
and ``python -m datasets`` the loader.  A name that is not registered is a
taxonomy folder under the data root (:data:`TAXONOMY_FOLDER`), trained by
``train.py`` like the plankton sets.

Adding a dataset is one :class:`DatasetEntry` passed to :func:`register` (here,
or in your own code before calling a script's ``main``) and its loader
(README, 'Adding a dataset').
"""
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from utils.errors import UserError

#: The paper's learning rate (Adam, network and scale) and batch size.
PAPER_LR = 1e-4
PAPER_BATCH_SIZE = 32


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset (or a family member such as a synthetic preset).

    ``load(config)`` returns a :class:`datasets.common.DataSplits`; ``config``
    has the run's data options as attributes (``data_root``, ``use_val``,
    ``seed``, ``resize``, ``gray``, ``small``, ``aug``, ``official_split``,
    ``download``).
    """

    name: str
    script: str  # the training script: train.py, train_cifar100.py or train_nabirds.py
    load: Callable
    backbone: str = "inception"
    epochs: int = 50
    resize: Optional[int] = 128
    lr: float = PAPER_LR
    lr_by_backbone: Mapping = field(default_factory=dict)  # where the learning rate differs per backbone
    lr_note: Optional[str] = None  # added to --lr's help
    batch_size: int = PAPER_BATCH_SIZE
    num_workers: int = 4  # default loader workers
    gray: bool = False  # read as 1 channel unless --gray says otherwise
    rand_backbone: bool = False  # always random weights (the small CNN has no pretrained ones)
    grid_flags: str = ""  # the paper's flags for this dataset in grid.py (besides the configuration's)
    living: bool = False  # report correlations on the living subset too (the plankton sets)
    summary: str = ""  # one line for --help

    def lr_for(self, backbone: str) -> float:
        """The default learning rate for ``backbone``."""
        return self.lr_by_backbone.get(backbone, self.lr)


# ------------------------------------------------------------------ loaders
def load_taxonomy(config):
    from datasets.taxonomy import load_plankton

    return load_plankton(config.data_root, config.dataset, use_val=config.use_val, seed=config.seed,
                         resize=config.resize, gray=config.gray)


def load_synthetic(config):
    from datasets.synthetic import ensure_synthetic

    ensure_synthetic(config.data_root, name=config.dataset)
    return load_taxonomy(config)


def load_cifar100(config):
    from datasets.cifar100 import load_cifar100 as load

    return load(config.data_root, use_val=config.use_val, small=config.small, seed=config.seed,
                resize=config.resize, aug=config.aug, download=config.download)


def load_nabirds(config):
    from datasets.nabirds import load_nabirds as load

    return load(config.data_root, use_val=config.use_val, seed=config.seed, resize=config.resize, aug=config.aug,
                official_split=config.official_split, small=config.small)


# ------------------------------------------------------------------ the table
# The paper's train.py trains ResNet-50 at Adam 1e-5 (network and scale), every other backbone at 1e-4.
_PLANKTON = dict(script="train.py", load=load_taxonomy, lr_by_backbone={"resnet50": 1e-5},
                 grid_flags="--size_inform --use_val")
# The synthetic presets (datasets/synthetic.py): a small CNN from random weights at lr 1e-3 (1e-4 barely moves
# W in so few steps; docs/datasets.md says why), in memory (no loader workers).
_SYNTHETIC = dict(script="train.py", load=load_synthetic, backbone="simple", epochs=15, lr=1e-3, num_workers=0,
                  rand_backbone=True, grid_flags="--use_val",
                  lr_note="the synthetic presets' own, for any backbone; on the paper's datasets 1e-5 for "
                          "resnet50, 1e-4 otherwise")

#: Any name that is not registered: a taxonomy folder ``<data_root>/<name>/`` (the name is filled in by :func:`get`).
TAXONOMY_FOLDER = DatasetEntry("<folder>", **_PLANKTON, summary="<data_root>/NAME/: every folder that directly "
                               "holds images is a class, its folder path below NAME its place in the taxonomy")

REGISTRY = {}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add (or replace) a dataset; returns it."""
    REGISTRY[entry.name] = entry
    return entry


for _entry in (
    DatasetEntry("MicroS", **_PLANKTON, living=True, summary="plankton, <data_root>/MicroS/ as unpacked"),
    DatasetEntry("MicroL", **_PLANKTON, living=True, summary="plankton, <data_root>/MicroL/ as unpacked"),
    DatasetEntry("MesoZ", **_PLANKTON, gray=True, living=True, summary="plankton (gray), <data_root>/MesoZ/"),
    DatasetEntry("synthetic", **_SYNTHETIC, resize=32,
                 summary="generated under <data_root>/synthetic/ on first use (the demo preset)"),
    DatasetEntry("synthetic_bench", **_SYNTHETIC, resize=24, summary="the benchmark preset (40 classes)"),
    DatasetEntry("synthetic_bench_hard", **_SYNTHETIC, resize=24, summary="the benchmark preset, harder"),
    DatasetEntry("cifar100", script="train_cifar100.py", load=load_cifar100, backbone="resnet50", epochs=100,
                 resize=None, num_workers=2, grid_flags="--use_val --aug",
                 summary="CIFAR-100, <data_root>/cifar-100-python/"),
    DatasetEntry("nabirds", script="train_nabirds.py", load=load_nabirds, backbone="resnet50", epochs=100,
                 resize=128, grid_flags="--use_val --aug --resize 128", summary="NABirds, <data_root>/nabirds/"),
):
    register(_entry)


def get(name: str) -> DatasetEntry:
    """The entry of ``name``; a name that is not registered is a taxonomy folder of that name."""
    if name in REGISTRY:
        return REGISTRY[name]
    return dataclasses.replace(TAXONOMY_FOLDER, name=name)


def is_registered(name: str) -> bool:
    return name in REGISTRY


def entries_of(script: str) -> list:
    """The registered datasets trained by ``script``."""
    return [e for e in REGISTRY.values() if e.script == script]


def entry_for_script(script: str, name: Optional[str]) -> DatasetEntry:
    """The entry ``script`` trains for ``--dataset name`` (scripts with one dataset ignore ``name``); refuses a
    dataset that belongs to another script."""
    own = entries_of(script)
    if script != "train.py":
        return own[0]
    entry = get(name)
    if entry.script != script:
        raise UserError(f"{name} is trained by {entry.script}, not {script}: python {entry.script} --help")
    return entry


def suggest(name: str) -> str:
    """`` (did you mean X?)`` for a name close to a registered one, else ``""``."""
    close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.6)
    lowered = {n.lower(): n for n in REGISTRY}
    if name.lower() in lowered:
        close = [lowered[name.lower()]]
    return f" (did you mean {close[0]}?)" if close else ""


def epilog(script: str) -> str:
    """The datasets ``script`` trains, one per line, for its ``--help``."""
    lines = [f"  {e.name:<22}  {e.summary}" for e in entries_of(script)]
    if script == "train.py":
        lines.append(f"  {'any other NAME':<22}  {TAXONOMY_FOLDER.summary}")
    return "datasets:\n" + "\n".join(lines) + "\n"
