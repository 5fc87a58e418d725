"""The synthetic taxonomy dataset (docs/datasets.md), written in the taxonomy-folder format.

From a seed, :func:`generate_synthetic` draws a ragged class tree and visual
attributes for its nodes: object and background colour, outline (number and
depth of lobes), elongation, stripe texture and the original image size.  A
node inherits its parent's attributes with a little noise (``node_noise``), and
siblings differ in the attributes of their level (top-level groups: colour,
outline and size; then stripes; then elongation and lobe depth; then shading,
background and width/height ratio), as strongly as ``level_signal`` says for
that level; every pixel gets Gaussian noise (``pixel_noise``).  Classes close
in the tree therefore look alike, classes far apart do not, and the image size
alone carries some of the hierarchy (for ``--size_inform``).

Presets (:data:`PRESETS`) are selected by dataset name: ``synthetic`` (the
demo), ``synthetic_bench`` (the benchmark) and ``synthetic_bench_hard``.

Tree (``n_classes >= depth + 3``): three top-level groups when
``n_classes >= depth + 5``, else two (the last one is named ``nonliving`` so the
"living" subset is exercised), each with at least two children; class paths
have 2 to ``depth`` names, at least one reaches ``depth`` and at least one stays
at 2; one internal node is also a class (its folder holds images and
sub-folders): one of the deepest internal nodes at depth 2 or more, or, when
``depth == 2``, a top-level group (a class whose path has one name).

The images are PNG files in ``<root>/<path>/NNN.png``.  The generator writes
into a temporary folder next to ``<root>`` and renames it into place when done,
with ``synthetic.json`` (the parameters and the class paths) inside.
"""
import colorsys
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

from utils.errors import UserError

SYNTHETIC_NAME = "synthetic"
GENERATOR_VERSION = 2
DEFAULTS = dict(seed=0, n_classes=15, depth=4, images_per_class=40, image_size=(32, 64), level_signal=1.0,
                node_noise=0.04, pixel_noise=0.04)

#: Named presets, selected by dataset name (``train.py --dataset NAME``); each is
#: generated under ``<data_root>/<NAME>/``.  docs/datasets.md says how they were chosen.
PRESETS = {
    # the demo: small, trains in a minute on a laptop CPU
    "synthetic": dict(DEFAULTS),
    # the benchmark: >= 40 classes, 4 levels, ragged; test split >= 300 images, >= 5 per class
    "synthetic_bench": dict(DEFAULTS, n_classes=40, depth=4, images_per_class=75, level_signal=(1.0, 0.8, 0.6)),
    # the same tree, the hierarchy less visible: weaker signal below the top level, more per-class
    # deviation unrelated to the tree (node noise) and more pixel noise
    "synthetic_bench_hard": dict(DEFAULTS, n_classes=40, depth=4, images_per_class=75,
                                 level_signal=(1.0, 0.4, 0.25), node_noise=0.08, pixel_noise=0.12),
}


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _params(seed, n_classes, depth, images_per_class, image_size, level_signal=1.0, node_noise=0.04,
            pixel_noise=0.04):
    """Validated generation parameters (a UserError names the first bad one)."""

    def bad(message):
        raise UserError(f"synthetic dataset: {message}")

    if _is_int(image_size):
        image_size = (int(image_size), int(image_size))
    try:
        lo, hi = (int(v) for v in image_size)
    except (TypeError, ValueError):
        bad(f"image_size must be a side or a (min, max) pair, got {image_size!r}")
    if not 8 <= lo <= hi <= 4096:
        bad(f"image_size must satisfy 8 <= min <= max <= 4096, got {image_size!r}")
    if not _is_int(depth) or depth < 2:
        bad(f"depth must be an integer of at least 2, got {depth!r}")
    if not _is_int(n_classes) or n_classes < depth + 3:
        bad(f"n_classes must be at least depth + 3 = {depth + 3}, got {n_classes!r}")
    if not _is_int(images_per_class) or images_per_class < 1:
        bad(f"images_per_class must be at least 1, got {images_per_class!r}")
    if not _is_int(seed) or seed < 0:
        bad(f"seed must be a non-negative integer, got {seed!r}")
    signal = [level_signal] if isinstance(level_signal, (int, float, np.number)) else level_signal
    try:
        signal = [float(v) for v in signal]
    except (TypeError, ValueError):
        bad(f"level_signal must be a number or a list of numbers in [0, 1], got {level_signal!r}")
    if not signal or not all(0.0 <= v <= 1.0 for v in signal):
        bad(f"level_signal must be a number or a non-empty list of numbers in [0, 1], got {level_signal!r}")
    for name, value in (("node_noise", node_noise), ("pixel_noise", pixel_noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 1.0:
            bad(f"{name} must be a number in [0, 1], got {value!r}")
    return dict(seed=int(seed), n_classes=int(n_classes), depth=int(depth),
                images_per_class=int(images_per_class), image_size=[lo, hi], level_signal=signal,
                node_noise=float(node_noise), pixel_noise=float(pixel_noise))


# ---------------------------------------------------------------------- tree
class _Node:
    def __init__(self, name, parent):
        self.name = name
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1
        self.children = []
        self.is_class = False
        self.attrs = None
        if parent is not None:
            parent.children.append(self)

    @property
    def path(self):
        node, out = self, []
        while node.parent is not None:
            out.append(node.name)
            node = node.parent
        return out[::-1]


def _child(parent):
    return _Node(f"{parent.name}_{len(parent.children) + 1}", parent)


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _n_top(n_classes, depth):
    """Three top-level groups when the classes allow it next to a chain down to ``depth``, else two."""
    return 3 if n_classes >= depth + 5 else 2


def build_tree(rng, n_classes, depth):
    """A ragged tree whose classes are its leaves plus one internal node (see module doc)."""
    root = _Node("", None)
    n_top = _n_top(n_classes, depth)
    top_names = ["Alpha", "Beta", "Gamma", "Delta"][: n_top - 1] + ["nonliving"]
    for name in top_names:
        top = _Node(name, root)
        _child(top), _child(top)
    target = n_classes - 1  # leaves; one internal node becomes a class too
    leaves = lambda: [n for n in _walk(root) if not n.children and n.depth > 0]  # noqa: E731
    keep_shallow = root.children[-1].children[0]  # one class path stays at length 2

    # one chain down to the full depth, then random deepen / widen steps
    node = root.children[0].children[0]
    while node.depth < depth and len(leaves()) < target:
        _child(node), _child(node)
        node = node.children[0]
    while len(leaves()) < target:
        deepen = [n for n in leaves() if n.depth < depth and n is not keep_shallow]
        widen = [n for n in _walk(root) if n.children and 1 <= n.depth < depth]
        if deepen and rng.random() < 0.5:
            leaf = deepen[rng.integers(len(deepen))]
            _child(leaf), _child(leaf)
        else:
            _child(widen[rng.integers(len(widen))])
    for leaf in leaves():
        leaf.is_class = True
    internal = [n for n in _walk(root) if n.children and n.depth >= 1]
    deep = [n for n in internal if n.depth >= 2] or internal
    deepest = max(n.depth for n in deep)
    candidates = [n for n in deep if n.depth == deepest]
    candidates[rng.integers(len(candidates))].is_class = True
    return root


# ---------------------------------------------------------------- attributes
# name: (low, high, circular)
_ATTRS = {
    "fg_hue": (0.0, 1.0, True),
    "fg_sat": (0.5, 1.0, False),
    "fg_val": (0.6, 1.0, False),
    "bg_hue": (0.0, 1.0, True),
    "bg_val": (0.08, 0.45, False),
    "lobe_amp": (0.0, 0.4, False),
    "aspect": (0.45, 1.0, False),
    "stripe_freq": (0.6, 3.2, False),
    "stripe_angle": (0.0, 1.0, True),
    "stripe_depth": (0.25, 0.75, False),
    "log_side": (0.0, 1.0, False),  # mapped onto [log min, log max] of image_size
    "log_ratio": (-0.25, 0.25, False),  # log(width / height)
}
_LOBES = (0, 3, 4, 5, 6, 7, 8)

#: Attributes that tell siblings apart at each depth (1 = top-level groups; the
#: last entry serves every deeper level).  A node inherits everything else from
#: its parent with a little noise, so classes that share more ancestors share
#: more of their look.
_SPLIT_ATTRS = (
    ("fg_hue", "bg_hue", "log_side"),
    ("stripe_freq", "stripe_angle"),
    ("aspect", "lobe_amp"),
    ("stripe_depth", "fg_val", "bg_val", "log_ratio"),
)


def _clip(name, value):
    low, high, circular = _ATTRS[name]
    if circular:
        return low + (value - low) % (high - low)
    return float(np.clip(value, low, high))


def _toward(name, parent, target, strength):
    """``parent`` moved the fraction ``strength`` of the way to ``target`` (the short way round a circle)."""
    low, high, circular = _ATTRS[name]
    diff = target - parent
    if circular:
        span = high - low
        diff = (diff + 0.5 * span) % span - 0.5 * span
    return _clip(name, parent + strength * diff)


def assign_attributes(rng, root, level_signal=(1.0,), node_noise=0.04):
    """Give every node its attributes: the parent's (with noise) plus its own level's split attributes.

    Siblings spread their level's split attributes evenly over the attribute's
    range (in random order, with a little jitter); ``level_signal[d]`` (the last
    entry for deeper levels) is how far a child of a depth-``d`` node moves from
    its parent towards that spread: 1 = the full spread (siblings clearly
    distinguishable), 0 = the parent's value (the level is invisible but for
    ``node_noise``, the per-node noise as a fraction of each attribute's range).
    Top-level groups also get distinct outlines (numbers of lobes), with lobe
    depth scaled the same way.
    """
    base = {name: low + 0.5 * (high - low) for name, (low, high, _) in _ATTRS.items()}
    base["lobes"] = 0
    root.attrs = base
    lobes = rng.permutation(len(_LOBES))
    for node in _walk(root):
        m = len(node.children)
        if m == 0:
            continue
        split = _SPLIT_ATTRS[min(node.depth, len(_SPLIT_ATTRS) - 1)]
        strength = level_signal[min(node.depth, len(level_signal) - 1)]
        slots = {name: rng.permutation(m) for name in split}
        offset = rng.random()  # circular attributes: random rotation of the even spread
        for k, child in enumerate(node.children):
            attrs = dict(node.attrs)
            for name, (low, high, circular) in _ATTRS.items():
                if name in split:
                    position = (slots[name][k] + 0.5 + 0.3 * (rng.random() - 0.5)) / m
                    if circular:
                        position += offset
                    attrs[name] = _toward(name, node.attrs[name], _clip(name, low + position * (high - low)), strength)
                else:
                    attrs[name] = _clip(name, attrs[name] + node_noise * (high - low) * rng.normal())
            if node.depth == 0:
                attrs["lobes"] = _LOBES[lobes[k % len(_LOBES)]]
                attrs["lobe_amp"] = _toward("lobe_amp", node.attrs["lobe_amp"], 0.15 + 0.2 * rng.random(), strength)
            child.attrs = attrs


# ----------------------------------------------------------------- rendering
def render(attrs, rng, size_range, pixel_noise=0.04):
    """One image (uint8 H x W x 3) of a class with attributes ``attrs``; ``pixel_noise``: std of the
    per-pixel Gaussian noise (0..1 intensity scale)."""
    lo, hi = np.log(size_range[0]), np.log(size_range[1])
    side = np.exp(lo + attrs["log_side"] * (hi - lo))
    ratio = np.exp(attrs["log_ratio"])
    jitter = np.exp(0.06 * rng.normal(size=2))
    width = int(np.clip(round(side * np.sqrt(ratio) * jitter[0]), size_range[0], size_range[1]))
    height = int(np.clip(round(side / np.sqrt(ratio) * jitter[1]), size_range[0], size_range[1]))

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (x + 0.5) / min(width, height)
    y = (y + 0.5) / min(width, height)
    cx = 0.5 * width / min(width, height) + 0.08 * rng.normal()
    cy = 0.5 * height / min(width, height) + 0.08 * rng.normal()
    radius = 0.32 * np.exp(0.08 * rng.normal())
    rot = rng.random() * 2 * np.pi
    u, v = (x - cx) / radius, (y - cy) / radius
    u, v = u * np.cos(rot) + v * np.sin(rot), -u * np.sin(rot) + v * np.cos(rot)
    v = v / attrs["aspect"]
    r = np.sqrt(u**2 + v**2)
    phi = np.arctan2(v, u)
    boundary = 1.0 + attrs["lobe_amp"] * np.cos(attrs["lobes"] * phi)
    inside = 1.0 / (1.0 + np.exp(-np.clip((boundary - r) * 12.0, -30, 30)))

    angle = attrs["stripe_angle"] * np.pi
    phase = rng.random() * 2 * np.pi
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * attrs["stripe_freq"] * (u * np.cos(angle) + v * np.sin(angle)) + phase)
    fg = np.array(colorsys.hsv_to_rgb(attrs["fg_hue"], attrs["fg_sat"], attrs["fg_val"]), dtype=np.float32)
    fg = np.clip(fg + 0.03 * rng.normal(size=3), 0, 1)
    bg = np.array(colorsys.hsv_to_rgb(attrs["bg_hue"], 0.5, attrs["bg_val"]), dtype=np.float32)
    bg = np.clip(bg + 0.03 * rng.normal(size=3), 0, 1)
    shade = 1.0 - attrs["stripe_depth"] * stripes
    image = inside[..., None] * (fg * shade[..., None]) + (1.0 - inside[..., None]) * bg
    image = image + pixel_noise * rng.normal(size=image.shape)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------- generation
def generate_synthetic(root, **params):
    """Write the synthetic dataset into folder ``root`` (replacing a previous one); returns ``root``.

    ``params``: those of :data:`DEFAULTS` (the demo preset), any of them overridden.

    Written into a temporary sibling folder first and renamed into place once
    complete, so an interrupted run never leaves a partial dataset.
    """
    params = _params(**{**DEFAULTS, **params})
    root = os.path.abspath(os.fspath(root))
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    rng = np.random.default_rng(params["seed"])
    tree = build_tree(rng, params["n_classes"], params["depth"])
    assign_attributes(rng, tree, params["level_signal"], params["node_noise"])
    classes = sorted((n for n in _walk(tree) if n.is_class), key=lambda n: n.path)

    tmp = os.path.join(parent, f".{os.path.basename(root)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for index, node in enumerate(classes):
            folder = os.path.join(tmp, *node.path)
            os.makedirs(folder, exist_ok=True)
            for k in range(params["images_per_class"]):
                image_rng = np.random.default_rng([params["seed"], index, k])
                pixels = render(node.attrs, image_rng, params["image_size"], params["pixel_noise"])
                Image.fromarray(pixels, "RGB").save(os.path.join(folder, f"{k:03d}.png"), compress_level=1)
        info = dict(generator="datasets.synthetic", version=GENERATOR_VERSION, **params,
                    classes=[n.path for n in classes])
        with open(os.path.join(tmp, "synthetic.json"), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=1)
        old = None
        if os.path.exists(root):
            old = os.path.join(parent, f".{os.path.basename(root)}.old-{os.getpid()}")
            os.replace(root, old)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _stored_params(folder):
    """The parameters in ``folder/synthetic.json``, or None when the folder is not a generated set."""
    try:
        with open(os.path.join(folder, "synthetic.json"), encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("generator") != "datasets.synthetic":
        return None
    return info


def preset(name):
    """The generation parameters of preset ``name`` (a copy), or None when ``name`` is not a preset."""
    return dict(PRESETS[name]) if name in PRESETS else None


def ensure_synthetic(data_root, *, name=SYNTHETIC_NAME, **params):
    """``<data_root>/<name>/`` generated with these parameters; returns the folder.

    ``params`` override those of the preset ``name`` (of :data:`DEFAULTS` when
    ``name`` is not a preset).

    Generated on first use and reused afterwards.  When the folder holds a set
    generated with other parameters (or by another generator version) it is
    regenerated, with a notice on stderr; a folder of that name that this
    generator did not write is never touched (UserError).
    """
    params = _params(**{**PRESETS.get(name, DEFAULTS), **params})
    folder = os.path.join(os.fspath(data_root), name)
    if os.path.exists(folder):
        info = _stored_params(folder)
        if info is None:
            raise UserError(
                f"{folder} exists but was not generated by this project (no valid synthetic.json); "
                "move it away or choose another --data_root"
            )
        stored = {k: info.get(k) for k in params}
        if info.get("version") == GENERATOR_VERSION and stored == params:
            return folder
        print(f"note: regenerating {folder}: it was generated with {stored}, asked for {params}", file=sys.stderr)
    try:
        generate_synthetic(folder, **params)
    except OSError as err:
        # another process may have generated the same set at the same time
        info = _stored_params(folder)
        if info is None or {k: info.get(k) for k in params} != params:
            raise UserError(f"cannot write the synthetic dataset to {folder}: {err.strerror or err}; "
                            "check that --data_root is writable") from None
    return folder
