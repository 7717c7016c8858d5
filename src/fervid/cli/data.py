from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("data", help="inspect datasets: statistics and sample grids")
    dsub = p.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    i = dsub.add_parser("info", help="rows per split and class, imbalance, FER+ agreement")
    i.add_argument("path", help="fer2013.csv(.gz), fer2013.tar.gz or an image folder")
    i.add_argument("--ferplus", help="fer2013new.csv to add FER+ agreement statistics")
    i.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    i.add_argument("--lenient", action="store_true", help="skip bad rows/files and report them instead of failing")
    s = dsub.add_parser("show", help="a labelled grid of sample faces per class")
    s.add_argument("path")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--split", default=None)
    s.add_argument("--per-class", dest="per_class", type=int, default=8)
    s.add_argument("--ferplus", help="fer2013new.csv: draw FER+ vote bars under each face")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--lenient", action="store_true")
    k = dsub.add_parser("pack", help="write a compact uint8 cache (.npz) of chosen splits, e.g. to ship to a GPU box")
    k.add_argument("path")
    k.add_argument("--out", required=True)
    k.add_argument("--splits", nargs="+", default=None)
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset

    data = load_dataset(args.path, strict=not getattr(args, "lenient", False))
    if args.data_verb == "info":
        from ..stats import dataset_info, format_info

        info = dataset_info(data, args.ferplus)
        print(json.dumps(info) if args.json else format_info(info))
    elif args.data_verb == "show":
        from ..plots import sample_grid

        sample_grid(data, args.out, split=args.split, per_class=args.per_class, ferplus=args.ferplus, seed=args.seed)
        print(f"wrote {args.out}")
    elif args.data_verb == "pack":
        from ..data import save_pack

        if args.splits:
            data = data.split(*args.splits)
        save_pack(data, args.out)
        print(f"wrote {args.out} ({len(data)} images)")
    return 0
