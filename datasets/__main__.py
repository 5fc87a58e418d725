"""Check a dataset before training: ``python -m datasets NAME [--data_root DIR] [...]``.

Loads the dataset exactly as training would (its loader in ``datasets/registry.py``,
every image opened once), prints one summary line (with where the split
comes from), the groups per level, a ``warning:`` line on stderr for each
problem that does not stop training (empty folders, a single class, classes
a split part lacks), optionally the class paths, and ends with
"N images checked, OK".  A bad input ends with one line naming the problem
and exit status 2.  NAME is ``cifar100``, ``nabirds``, ``synthetic``,
``MicroS``, ``MicroL``, ``MesoZ`` or any taxonomy folder under the data root.
"""
import os
import sys
from types import SimpleNamespace

from utils.errors import ArgumentParser, exit_on_user_error


@exit_on_user_error
def main(argv=None):
    import datasets
    from datasets import registry

    parser = ArgumentParser(prog="python -m datasets", description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--use_val", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resize", type=int, default=None)
    parser.add_argument("--gray", action="store_true", default=None)
    parser.add_argument("--official_split", action="store_true")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--paths", action="store_true", help="print every class path")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    entry = registry.get(args.dataset)
    options = SimpleNamespace(
        dataset=args.dataset, data_root=args.data_root or datasets.default_data_root(here), use_val=args.use_val,
        seed=args.seed, resize=entry.resize if args.resize is None else args.resize,
        gray=entry.gray if args.gray is None else args.gray, small=args.small, aug=False,
        official_split=args.official_split, download=args.download)
    splits = entry.load(options)
    print(splits.summary())
    h = splits.hierarchy
    print("groups per level: " + ", ".join(str(h.n_groups(level)) for level in range(h.n_levels)))
    for line in splits.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.paths:
        for i, path in enumerate(h.paths):
            print(f"{i}\t" + " > ".join(path))
    print(f"{len(splits.split_table())} images checked, OK")
    return 0


if __name__ == "__main__":
    main()
