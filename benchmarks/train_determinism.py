"""Fingerprint a few short fixed-seed training runs, to check that a refactoring of the training
loop changes nothing: run it on the code before and after, then compare the two JSON files.

    PYTHONPATH=OLD/src python benchmarks/train_determinism.py /tmp/before.json
    PYTHONPATH=src     python benchmarks/train_determinism.py /tmp/after.json
    cmp /tmp/before.json /tmp/after.json

Each run is fast_cnn on a stratified FER2013 subset on the CPU (one thread: the same float
sums each time), and the fingerprint is ``final.json`` and ``metrics.jsonl`` without their
timings, ``config.json``, and a sha256 over the state_dict of ``best.pt`` and ``last.pt``.
The runs cover the plain path; mixup with dynamic class weights, the plateau schedule and
early stopping; oversampling under bf16 autocast without the PrivateTest pass; and a run
stopped after one epoch and resumed to two (minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from fervid.training.augment import AugmentConfig
from fervid.training.config import TrainConfig
from fervid.training.loop import train

BASE: dict[str, Any] = dict(
    model="fast_cnn", max_train_samples=1000, seed=3, device="cpu", progress=False, workers_threads=1, amp=False
)
RUNS: dict[str, dict[str, Any]] = {
    "plain": dict(epochs=1),
    "mix": dict(
        epochs=2,
        max_train_samples=600,
        imbalance="dynamic",
        schedule="plateau",
        plateau_patience=1,
        early_stopping=3,
        augment=AugmentConfig(mixup=0.4, hflip=0.5, rotate=10, erase=0.25),
        warmup_epochs=0.0,
    ),
    "oversample": dict(epochs=2, max_train_samples=500, imbalance="oversample", amp=True, eval_private=False),
}
TIMINGS = ("wall_seconds", "images_per_s", "epoch_seconds")


def state_digest(path: Path) -> dict[str, Any]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for k, v in sorted(ck["state_dict"].items()):
        h.update(k.encode())
        h.update(v.cpu().contiguous().numpy().tobytes())
    return {"sha256": h.hexdigest(), "epoch": ck.get("epoch"), "metrics": ck.get("metrics")}


def fingerprint(run: Path) -> dict[str, Any]:
    final = {k: v for k, v in json.loads((run / "final.json").read_text()).items() if k not in TIMINGS}
    log = [
        {k: v for k, v in json.loads(ln).items() if k not in TIMINGS}
        for ln in (run / "metrics.jsonl").read_text().splitlines()
    ]
    config = {k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "out"}
    return {
        "final": final,
        "log": log,
        "config": config,
        "best": state_digest(run / "best.pt"),
        "last": state_digest(run / "last.pt"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the JSON fingerprint to write")
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data/fer2013/fer2013.csv.gz")
    )
    args = ap.parse_args()
    result = {}
    with tempfile.TemporaryDirectory(prefix="fervid-determinism-") as tmp:
        for name, over in RUNS.items():
            train(TrainConfig(data=args.data, out=f"{tmp}/{name}", **{**BASE, **over}))
            result[name] = fingerprint(Path(tmp, name))
        short = {**BASE, "max_train_samples": 500}
        train(TrainConfig(data=args.data, out=f"{tmp}/resume", epochs=1, **short))
        train(TrainConfig(data=args.data, out=f"{tmp}/resume", epochs=2, **short), resume=True)
        result["resume"] = fingerprint(Path(tmp, "resume"))
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    digests = ", ".join(f"{k} best {v['best']['sha256'][:12]}" for k, v in result.items())
    print(f"wrote {args.out}: {digests}", file=sys.stderr)


if __name__ == "__main__":
    main()
