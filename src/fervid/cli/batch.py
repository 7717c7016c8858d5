"""``fervid batch``: emotions of every face in a corpus of photos and videos, into Parquet.

    fervid batch SOURCE [SOURCE ...] --out results.parquet [--engine local|ray] [--address ray://...|auto]
                 [--video-every N] [--workers N] [--no-progress]
                 [--model NAME] [--detector NAME] [--device D] [... the other recognizer arguments]

SOURCE: folders (searched recursively for photos and videos), CSV/Parquet manifests of paths
(a header naming the column ``path``, ``source``, ``file`` or ``filename`` in any case; or a CSV
of paths one per line without a header), or files; a file is identified by its resolved path. One row per face per photo or processed video frame; a
``.sources`` and an ``.errors`` table beside ``--out``. Running the same command again after a
crash skips the sources already done. Exit status 1 when some sources failed (listed in the
errors table); the others are all processed.
"""

from __future__ import annotations

import argparse
import json
import sys

from fervid.cli.argtypes import output_path, positive_int
from fervid.cli.recognizer_args import add_recognizer_args, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "batch",
        help="batch inference over folders of photos, videos or a manifest, into Parquet",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", nargs="+", metavar="SOURCE", help="folders, CSV/Parquet manifests or files")
    p.add_argument("--out", type=output_path, required=True, help="the results table (Parquet), e.g. results.parquet")
    p.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: this process (no Ray needed); ray: Ray Data on a Ray cluster",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto (the cluster this machine is part of) or ray://HOST:10001; "
        "default: a local Ray instance",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="Ray actors, each with its own model (default: the cluster's CPUs / --threads-per-worker)",
    )
    p.add_argument("--threads-per-worker", dest="threads_per_worker", type=positive_int, default=1)
    p.add_argument(
        "--video-every",
        dest="video_every",
        type=positive_int,
        default=1,
        help="process every N-th video frame (default 1)",
    )
    p.add_argument("--chunk-size", dest="chunk_size", type=positive_int, default=16, help="photos per task")
    p.add_argument(
        "--flush-every",
        dest="flush_every",
        type=positive_int,
        default=256,
        help="commit finished work to OUT.parts/ every N sources (and at least once a minute)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_recognizer_args(p)  # --device cuda on Ray: one GPU per worker
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.batch import BatchOptions, run_batch

    opts = BatchOptions(config_from_args(args), video_every=args.video_every)
    summary = run_batch(
        args.source,
        args.out,
        options=opts,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        chunk_size=args.chunk_size,
        flush_every=args.flush_every,
        progress=args.progress,
    )
    print(json.dumps(summary.to_dict(), indent=2))
    if summary.errors:
        print(f"fervid batch: {summary.errors} source(s) failed: see {summary.outputs['errors']}", file=sys.stderr)
        return 1
    return 0
