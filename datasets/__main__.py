"""Check a dataset before training: ``python -m datasets NAME [--data_root DIR] [...]``.

Loads the dataset exactly as training would (every image opened once), prints
one summary line and the class paths; a bad input ends with one line naming
the problem and exit status 2.  NAME is ``cifar100``, ``nabirds``, ``synthetic``,
``MicroS``, ``MicroL``, ``MesoZ`` or any taxonomy folder under the data root.
"""
import os

from utils.errors import ArgumentParser, exit_on_user_error


@exit_on_user_error
def main(argv=None):
    import datasets

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
    data_root = args.data_root or datasets.default_data_root(here)
    name = args.dataset
    if name.lower() in ("cifar100", "cifar-100"):
        splits = datasets.load_cifar100(data_root, use_val=args.use_val, small=args.small, seed=args.seed,
                                        resize=args.resize, download=args.download)
    elif name.lower() == "nabirds":
        splits = datasets.load_nabirds(data_root, use_val=args.use_val, seed=args.seed, resize=args.resize or 128,
                                       official_split=args.official_split)
    else:
        splits = datasets.load_plankton(data_root, name, use_val=args.use_val, seed=args.seed, resize=args.resize,
                                        gray=args.gray)
    print(splits.summary())
    h = splits.hierarchy
    print("groups per level: " + ", ".join(str(h.n_groups(level)) for level in range(h.n_levels)))
    if args.paths:
        for i, path in enumerate(h.paths):
            print(f"{i}\t" + " > ".join(path))
    return 0


if __name__ == "__main__":
    main()
