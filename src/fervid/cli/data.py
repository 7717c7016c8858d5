"""``fervid data``: dataset statistics (``info``), sample grids (``show``) and packs (``pack``)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from fervid.cli.argtypes import output_path, positive_int, seed


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("data", help="inspect datasets: statistics and sample grids")
    dsub = p.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    src_help = "fer2013.csv, .csv.gz, fer2013.tar.gz, a .zip, a fervid .npz pack, or an image folder"
    i = dsub.add_parser("info", help="rows per split and class, imbalance, FER+ agreement")
    i.add_argument("path", help=src_help)
    i.add_argument("--ferplus", help="fer2013new.csv to add FER+ agreement statistics")
    i.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    i.add_argument("--lenient", action="store_true", help="skip bad rows/files and report them instead of failing")
    s = dsub.add_parser("show", help="a labelled grid of sample faces per class")
    s.add_argument("path", help=src_help)
    s.add_argument("--out", type=output_path, required=True, help="output PNG")
    s.add_argument("--split", default=None, help="Training, PublicTest, PrivateTest (default: all splits)")
    s.add_argument("--per-class", dest="per_class", type=positive_int, default=8, help="faces per class (default 8)")
    s.add_argument("--ferplus", help="fer2013new.csv: draw FER+ vote bars under each face")
    s.add_argument("--seed", type=seed, default=0, help="random seed for the sample (default 0)")
    s.add_argument("--lenient", action="store_true", help="skip bad rows/files and report them instead of failing")
    k = dsub.add_parser("pack", help="write a compact uint8 cache (.npz) of chosen splits, e.g. to ship to a GPU box")
    k.add_argument("path", help=src_help)
    k.add_argument("--out", type=output_path, required=True)
    k.add_argument("--splits", nargs="+", default=None)
    k.add_argument("--lenient", action="store_true", help="skip bad rows/files and report them instead of failing")
    for action in (i, s, k):  # reading a CSV the first time takes ~20 s: a progress line
        action.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> null, so the output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _report_skipped(data: Any) -> None:
    import sys

    if data.skipped:
        print(
            f"note: {len(data.skipped)} bad or ignored records in {data.source}; first: {data.skipped[0]}",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    from fervid.data.datasets import load_dataset
    from fervid.runtime import progress_stage
    from fervid.safety import check_not_input, preflight_output

    if args.data_verb in ("show", "pack"):  # a bad --out fails before the data is read
        check_not_input(args.out, [args.path, getattr(args, "ferplus", None)], "--out")
        preflight_output(args.out)
    data = load_dataset(args.path, strict=not getattr(args, "lenient", False))
    if args.data_verb == "info":
        from fervid.data.stats import dataset_info, format_info

        with progress_stage("statistics" + (" and FER+ votes" if args.ferplus else "")):
            info = dataset_info(data, args.ferplus)
        print(json.dumps(_json_safe(info), allow_nan=False) if args.json else format_info(info))
    elif args.data_verb == "show":
        from fervid.data.plots import sample_grid

        _report_skipped(data)
        with progress_stage(f"drawing {args.out}"):
            out = sample_grid(
                data, args.out, split=args.split, per_class=args.per_class, ferplus=args.ferplus, seed=args.seed
            )
        print(f"wrote {out}")
    elif args.data_verb == "pack":
        from fervid.data.datasets import save_pack

        _report_skipped(data)
        if args.splits:
            data = data.split(*args.splits)
        save_pack(data, args.out)
        print(f"wrote {args.out} ({len(data)} images)")
    return 0
