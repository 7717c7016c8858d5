"""``fervid study``: models x imbalance strategies x seeds under one fixed budget."""

from __future__ import annotations

import argparse

from fervid.cli import add_set_option, parse_set
from fervid.cli.argtypes import count_or_all, output_path, positive_int, seed


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "study",
        help="train and evaluate a grid (models x imbalance strategies x seeds) under one budget",
        description="Every run selects on PublicTest; the table reports PrivateTest, mean +- std over seeds. "
        "Resumable with --resume: finished runs (OUT/runs/*/final.json) are not retrained.",
    )
    p.add_argument("--data", required=True, help="fer2013.csv(.gz), an image folder or a fervid pack")
    p.add_argument("--models", nargs="+", default=["fast_cnn"], help="architectures (default: fast_cnn)")
    p.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        help="imbalance strategies (default: all of fervid.training.imbalance.STRATEGIES)",
    )
    p.add_argument("--seeds", nargs="+", type=seed, default=[0, 1])
    p.add_argument("--epochs", type=positive_int, default=4)
    p.add_argument(
        "--max-train-samples",
        dest="max_train_samples",
        type=count_or_all,
        default=8000,
        help="stratified training subset per run, or 'all' (default 8000)",
    )
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads", dest="workers_threads", type=positive_int, default=None, help="torch CPU threads per run"
    )
    add_set_option(p)
    p.add_argument("--out", type=output_path, default="runs/study")
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="OUT holds this study: keep its finished runs, continue an interrupted one",
    )
    again.add_argument("--overwrite", action="store_true", help="OUT holds a study: train every run again")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.training.imbalance import STRATEGIES
    from fervid.training.study import StudyConfig, run_study

    overrides = parse_set(args.set)
    cfg = StudyConfig(
        data=args.data,
        models=list(args.models),
        strategies=list(args.strategies or STRATEGIES),
        seeds=list(args.seeds),
        epochs=args.epochs,
        max_train_samples=args.max_train_samples,
        batch_size=args.batch_size,
        out=args.out,
        device=args.device,
        workers_threads=args.workers_threads,
        train_overrides=overrides,
        progress=args.progress,
    )
    from fervid.safety import sigterm_as_interrupt

    with sigterm_as_interrupt():
        run_study(cfg, resume=args.resume, overwrite=args.overwrite)
    print(f"wrote {args.out}/study.md, study.png, study.json, results.jsonl")
    return 0
