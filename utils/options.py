"""The result-changing run options in one table: run-name tags, summary labels and report grouping.

Every flag that changes a run's result is one :class:`Option` row of
:data:`OPTIONS`, in the order its tag appears in a run name
(``<dataset>_<backbone>_<method>_<distance>[_<tags>]_seed<N>``, README 'Run
records').  A row gives, for a run's configuration (a ``config.json`` mapping,
or a :class:`utils.training.config.RunConfig` as a dict):

* ``tag``: its part of the run name, or None when the flag is at its default;
* ``label``: its part of the summary's ``options`` column (``+``-joined), or None.

Flags whose default depends on the script and backbone (``lr``, ``epochs``,
``batch_size``, ``resize``, ``gray``) are compared with the default recorded
beside them as ``<flag>_default``.  Flags that do not change the result
(workers, device, folders, ``--test_each_epoch``, ``--resume``,
``--overwrite``, ``--compile``, ``--deterministic``) have no row and never
appear.
"""
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

# Records written before ``lr_default`` / ``batch_size_default`` existed are compared with these.
LEGACY_DEFAULTS = {"lr": 1e-4, "batch_size": 32}


def float_tag(x: float) -> str:
    """A short exact-enough form of a float for names and labels: 1e-3, 2.5e-4, 1e0."""
    mantissa, exponent = f"{float(x):.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def differs(c: Mapping, flag: str) -> bool:
    """Whether ``c[flag]`` is set and not the default recorded as ``c[<flag>_default]`` (absent: not a difference)."""
    default = c.get(f"{flag}_default", LEGACY_DEFAULTS.get(flag))
    return c.get(flag) is not None and default is not None and c.get(flag) != default


def _is_set(flag):
    return lambda c: bool(c.get(flag))


@dataclass(frozen=True)
class Option:
    """One result-changing option: its name (for ``skip``), when it is on, and how it is written."""

    name: str
    on: Callable[[Mapping], bool]
    tag: Callable[[Mapping], Optional[str]]
    label: Callable[[Mapping], str]


def _ema_tag(c):
    return "ema" if c.get("alpha") in (None, 0.01) else f"ema{c['alpha']:g}"


def _ema_label(c):
    return "ema" if c.get("alpha") in (None, 0.01) else f"ema+alpha={c['alpha']}"


def _mds_tag(c):
    return "mds" if c.get("beta") in (None, 1, 1.0) else f"mds{c['beta']:g}"


def _mds_label(c):
    return "mds_W" if c.get("beta") in (None, 1, 1.0) else f"mds_W+beta={c['beta']}"


def _constant(text):
    return lambda c: text


#: The options in run-name order.  ``name`` is the config key (or a short name where one flag has two rows).
OPTIONS = (
    Option("rand_backbone", _is_set("rand_backbone"), _constant("rand"), _constant("rand_backbone")),
    Option("size_inform", _is_set("size_inform"), _constant("size"), _constant("size_inform")),
    Option("gray", lambda c: bool(c.get("gray")) and not c.get("gray_default"), _constant("gray"), _constant("gray")),
    Option("small", _is_set("small"), _constant("small"), _constant("small")),
    Option("aug", _is_set("aug"), _constant("aug"), _constant("aug")),
    Option("resize", lambda c: c.get("resize") is not None and c.get("resize") != c.get("resize_default"),
           lambda c: f"r{c['resize']}", lambda c: f"resize={c['resize']}"),
    Option("official_split", _is_set("official_split"), _constant("offsplit"), _constant("official_split")),
    Option("clspri", _is_set("clspri"), _constant("clspri"), _constant("clspri")),
    Option("ema", _is_set("ema"), _ema_tag, _ema_label),
    Option("mds_W", _is_set("mds_W"), _mds_tag, _mds_label),
    Option("CORR", _is_set("CORR"), _constant("corr"), _constant("CORR")),
    Option("dynamic", _is_set("dynamic"), _constant("dnm"), _constant("dynamic")),
    Option("scale_update", lambda c: bool(c.get("dynamic")) and c.get("scale_update", "equations") != "equations",
           _constant("sucode"), lambda c: f"scale_update={c['scale_update']}"),
    Option("lr", lambda c: differs(c, "lr"), lambda c: f"lr{float_tag(c['lr'])}", lambda c: f"lr={float_tag(c['lr'])}"),
    Option("batch_size", lambda c: differs(c, "batch_size"), lambda c: f"bs{c['batch_size']}",
           lambda c: f"batch_size={c['batch_size']}"),
    Option("untrained", lambda c: c.get("epochs") == 0, lambda c: "ep0" if differs(c, "epochs") else None,
           _constant("untrained")),
    Option("epochs", lambda c: c.get("epochs") != 0 and differs(c, "epochs"), lambda c: f"ep{c['epochs']}",
           lambda c: f"epochs={c['epochs']}"),
    Option("use_val", _is_set("use_val"), _constant("val"), _constant("use_val")),
)
OPTION_NAMES = tuple(o.name for o in OPTIONS)

#: The options that make the rows of the paper's grid (standard, EMA, dynamic, MDS, CORR; see grid.py).
PAPER_GRID_OPTIONS = ("ema", "mds_W", "CORR", "dynamic")


def _on(c, skip):
    return [o for o in OPTIONS if o.name not in skip and o.on(c)]


def option_tags(c: Mapping) -> list:
    """The option part of a run name, in table order."""
    return [t for t in (o.tag(c) for o in _on(c, ())) if t is not None]


def options_label(c: Mapping, skip=()) -> str:
    """The ``options`` column of the summary, e.g. ``size_inform+mds_W+dynamic`` or ``lr=1e-3+untrained``;
    ``-`` when no option is set.  ``skip``: option names left out (see :data:`OPTION_NAMES`)."""
    unknown = set(skip) - set(OPTION_NAMES)
    if unknown:
        raise ValueError(f"unknown option names {sorted(unknown)}")
    parts = [o.label(c) for o in _on(c, skip)]
    return "+".join(parts) if parts else "-"


def grid_row(c: Mapping) -> str:
    """The row of the paper's grid a configuration belongs to: ``standard``, ``ema``, ``dnm``, ``ema+dnm``,
    ``mds``, ``mds+dnm`` or ``corr`` (whatever its other options)."""
    if c.get("CORR"):
        return "corr"
    parts = [short for flag, short in (("ema", "ema"), ("mds_W", "mds"), ("dynamic", "dnm")) if c.get(flag)]
    return "+".join(parts) if parts else "standard"


def variant_label(c: Mapping) -> str:
    """Everything about a run but its grid row, its method and its seed: the distance and the other options
    (``untrained`` left out), e.g. ``euc, rand_backbone+use_val``.  Runs of one grid share it."""
    return f"{c.get('distance', '?')}, {options_label(c, skip=PAPER_GRID_OPTIONS + ('untrained',))}"


def run_name(c: Mapping) -> str:
    """``<dataset>_<backbone>_<method>_<distance>[_<options>]_seed<N>``."""
    parts = [c["dataset"], c["backbone"], c["method"], c["distance"], *option_tags(c), f"seed{c['seed']}"]
    return "_".join(str(p) for p in parts)
