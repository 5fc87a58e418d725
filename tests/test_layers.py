"""The import layers (README, 'The pieces'): every import points down, and only public names cross packages.

0. the bottom of ``utils/`` (errors, io, hierarchy, trees, record, lock, options);
1. ``losses/``, ``models/``, ``datasets/``: may import layer 0;
2. ``utils/training/`` and ``utils/evaluation/``: may import layers 0-1, not each other;
3. the scripts, ``tools/`` and ``bench/``: anything.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOTTOM = ("utils.errors", "utils.io", "utils.hierarchy", "utils.trees", "utils.record", "utils.lock", "utils.options")
PROJECT = ("utils", "losses", "models", "datasets", "train", "train_cifar100", "train_nabirds", "evaluate", "grid",
           "tools", "bench", "tests")


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def project_imports(path):
    """``(imported module, names)`` of every import of a project module in ``path`` (function-level ones too)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return [(m, names) for m, names in found if m.split(".")[0] in PROJECT]


def layer(module):
    if module in BOTTOM or module == "utils":
        return 0
    if module.split(".")[0] in ("losses", "models", "datasets"):
        return 1
    if module.startswith(("utils.training", "utils.evaluation")):
        return 2
    return 3


def sources():
    for folder in ("utils", "losses", "models", "datasets"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            yield from (os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".py"))


def resolved(module, names):
    """The modules an import names: ``from utils import record`` imports ``utils.record``."""
    subs = [f"{module}.{n}" for n in names if os.path.exists(os.path.join(ROOT, *f"{module}.{n}".split(".")) + ".py")
            or os.path.isdir(os.path.join(ROOT, *f"{module}.{n}".split(".")))]
    return subs or [module]


@pytest.mark.parametrize("path", list(sources()), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_import_points_down(path):
    me = module_name(path)
    for module, names in project_imports(path):
        for target in resolved(module, names):
            here, there = layer(me), layer(target)
            assert there < here or (there == here and (here != 2 or target.split(".")[1] == me.split(".")[1])) \
                or target == me.rsplit(".", 1)[0], f"{me} (layer {here}) imports {target} (layer {there})"


@pytest.mark.parametrize("path", list(sources()), ids=lambda p: os.path.relpath(p, ROOT))
def test_only_public_names_cross_packages(path):
    me = module_name(path)
    for module, names in project_imports(path):
        if module.split(".")[:2] == me.split(".")[:2]:
            continue  # the same package
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{me} imports the private {private} from {module}"


def test_the_checker_sees_a_bad_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from utils.training.run import train\nfrom datasets.taxonomy import _hidden\n")
    assert project_imports(str(bad)) == [("utils.training.run", ("train",)), ("datasets.taxonomy", ("_hidden",))]
    assert layer("utils.training.run") == 2 > layer("datasets.taxonomy") == 1 > layer("utils.record") == 0
