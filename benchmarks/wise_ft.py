"""Weight-space ensembles of a bundled model and its robust fine-tune (WiSE-FT, Wortsman et
al. 2022): ``theta(a) = (1 - a) * theta_base + a * theta_tuned``.

A fine-tune from the shipped weights stays in the same basin, so the straight line between
the two is a family of models trading clean accuracy (a -> 0) against robustness to the
camera shifts (a -> 1); ``a`` is chosen on PublicTest (clean and shifted), never PrivateTest.
BatchNorm running statistics are interpolated like the weights.

Usage (from the repository root)::

    .venv/bin/python benchmarks/wise_ft.py fast runs/ft/fast-cam30/best.pt --alphas 0.5 0.7 --out runs/wise/fast
    .venv/bin/python benchmarks/robustness.py --split PublicTest --models fast,runs/wise/fast/wise-0.5.pt,...

Writes ``OUT/wise-<a>.pt``: fervid checkpoints (``fervid evaluate`` / ``fervid calibrate`` read them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def interpolate(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], a: float) -> dict[str, torch.Tensor]:
    if base.keys() != tuned.keys():
        raise SystemExit(f"the two models differ in their parameters: {sorted(set(base) ^ set(tuned))[:5]}")
    out = {}
    for k, v in base.items():
        if v.is_floating_point():
            out[k] = (1 - a) * v + a * tuned[k].to(v.dtype)
        else:
            out[k] = v.clone()  # BatchNorm's step counter
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="bundled model name or checkpoint (a = 0)")
    ap.add_argument("tuned", help="its fine-tune (a = 1)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from fervid.models.checkpoint import load_model, make_checkpoint, save_atomic

    base, tuned = load_model(args.base), load_model(args.tuned)
    b_sd, t_sd = base.state_dict(), tuned.state_dict()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for a in args.alphas:
        base.load_state_dict(interpolate(b_sd, t_sd, a))
        path = Path(args.out) / f"wise-{a:g}.pt"
        save_atomic(make_checkpoint(base, wise_ft={"base": args.base, "tuned": args.tuned, "alpha": a}), path)
        print(path)


if __name__ == "__main__":
    main()
