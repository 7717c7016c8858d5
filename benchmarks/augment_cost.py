"""What the training augmentation costs per batch, with and without the camera shifts, next to
a training step (forward + backward + SGD step) of the models it feeds.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python benchmarks/augment_cost.py [--device cpu|cuda] [--batch 256] [--repeats 20]

Prints milliseconds per batch (median of ``--repeats``, after warm-up) for the default augmentation
(camera off), ``camera=0.5`` and ``camera=1.0`` over all kinds, each kind alone at ``camera=1``,
and one training step of ``fast_cnn`` and ``resnet18_fer`` (fp32 on CPU, bf16 autocast on CUDA).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    import torch

    from fervid.models import create_model
    from fervid.runtime import autocast
    from fervid.training.augment import CAMERA_KINDS, AugmentConfig, augment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    x = torch.rand(args.batch, 1, 48, 48, device=dev)
    s = torch.ones(args.batch, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU'}), batch {args.batch}")
    print(f"torch threads {torch.get_num_threads()}")
    cases = {"default (camera off)": AugmentConfig(), "camera=0.5": AugmentConfig(camera=0.5)}
    cases["camera=1.0"] = AugmentConfig(camera=1.0)
    cases.update({f"  {k} alone": AugmentConfig(camera=1.0, camera_kinds=(k,)) for k in CAMERA_KINDS})
    for name, cfg in cases.items():
        ms = timed(lambda cfg=cfg: augment(x, cfg, g, s), args.repeats, sync)
        print(f"augment {name:<24} {ms:8.2f} ms/batch")
    y = torch.randint(0, 7, (args.batch,), device=dev)
    for model_name in ("fast_cnn", "resnet18_fer"):
        model = create_model(model_name).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            with autocast(dev, dev.type == "cuda"):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        ms = timed(step, max(3, args.repeats // 4), sync)
        print(f"train step {model_name:<20} {ms:8.2f} ms/batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
