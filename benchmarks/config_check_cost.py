"""What the config checks of issue 25 cost: building and checking a training config (the one
declared schema, model_args against the family's signature) and trying each family's model on a
blank batch before a run starts.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python benchmarks/config_check_cost.py [--repeats 5]

Prints medians (one torch thread, CPU): ``TrainConfig.from_dict`` + ``validate`` on a small
dict, ``load_config`` of ``configs/cpu-fast.yaml`` + ``validate``, and per family
``create_model`` alone next to the trainer's ``build_model`` (create + blank-batch check).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def median_seconds(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    from fervid.emotions import FER2013
    from fervid.models import create_model
    from fervid.training.config import TrainConfig, load_config
    from fervid.training.loop import build_model

    torch.set_num_threads(1)
    d = {"epochs": 3, "lr": 0.1, "augment": {"mixup": 0.2, "scale": [0.9, 1.1]}, "model_args": {"drop": 0.2}}
    TrainConfig.from_dict(d).validate()  # warm: imports, annotation caches
    t = median_seconds(lambda: TrainConfig.from_dict(d).validate(), 40 * args.repeats)
    print(f"from_dict + validate: {t * 1e6:.0f} us")
    recipe = REPO / "configs" / "cpu-fast.yaml"
    t = median_seconds(lambda: load_config(recipe).validate(), 10 * args.repeats)
    print(f"load_config(configs/cpu-fast.yaml) + validate: {t * 1e3:.2f} ms")
    for m in ("fast_cnn", "vgg_fer", "resnet18_fer", "convnext_fer"):
        cfg = TrainConfig.from_dict({"model": m})
        a = median_seconds(lambda: create_model(m, labels=FER2013), args.repeats)  # noqa: B023
        b = median_seconds(lambda: build_model(cfg, FER2013), args.repeats)  # noqa: B023
        print(
            f"{m}: create_model {a * 1e3:.1f} ms, with the blank-batch check {b * 1e3:.1f} ms (+{(b - a) * 1e3:.1f} ms)"
        )


if __name__ == "__main__":
    main()
