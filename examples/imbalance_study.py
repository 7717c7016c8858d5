"""The class-imbalance study on a small budget.

FER2013 has 436 training faces of disgust and 7,215 of happy. ``fervid study`` trains the same
model with several imbalance strategies (plain, re-weighted, oversampled, ...) under one budget
and reports PrivateTest accuracy, macro-F1 and per-class recall, mean +- std over seeds. This
script runs a tiny version (two strategies, one seed, one epoch on a stratified subset) so that
it finishes in under a minute on a laptop; the full study is ``fervid study`` (its figures:
BENCHMARKS.md, "Class imbalance").

    python examples/imbalance_study.py [--out DIR] [--samples N] [--strategies none oversample]

Reads FER2013 from the data folder ($FERVID_DATA, or ``../shared/data``); exits with a message
when it is not there. Ends in the study's table (``study.md``) and picture (``study.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def small_fer(csv: Path, test_per_split: int, seed: int = 0):
    """FER2013 with stratified ``test_per_split`` faces of PublicTest and PrivateTest (the
    training subset is the study's own ``max_train_samples``)."""
    import numpy as np

    from fervid.data.datasets import load_dataset, stratified_subset

    data = load_dataset(csv)
    keep = [np.flatnonzero(data.splits == "Training")]
    for split in ("PublicTest", "PrivateTest"):
        idx = np.flatnonzero(data.splits == split)
        keep.append(idx[stratified_subset(data.labels[idx], test_per_split, seed)])
    return data.select(np.sort(np.concatenate(keep)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/imbalance_study", help="output folder (default out/imbalance_study)")
    parser.add_argument("--samples", type=int, default=2000, help="training faces (default 2000)")
    parser.add_argument("--test-samples", type=int, default=1000, help="faces of each test split (default 1000)")
    parser.add_argument("--strategies", nargs="+", default=["none", "oversample"], help="imbalance strategies")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    from fervid.runtime import fer2013_csv

    csv = fer2013_csv()
    if csv is None:
        print("no FER2013 CSV found (set FERVID_DATA); nothing to do", file=sys.stderr)
        return 0
    from fervid.training.study import StudyConfig, run_study

    cfg = StudyConfig(
        data=str(csv),
        models=["fast_cnn"],
        strategies=args.strategies,
        seeds=[0],
        epochs=args.epochs,
        max_train_samples=args.samples,
        batch_size=64,
        out=args.out,
        device="cpu",
        workers_threads=1,  # one torch thread: small batches gain nothing from more, and shared CPUs lose
    )
    run_study(cfg, data=small_fer(csv, args.test_samples), overwrite=True)
    print((Path(args.out) / "study.md").read_text())
    print(f"picture: {Path(args.out) / 'study.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
