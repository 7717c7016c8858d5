"""AdaBN on a shifted domain: FER2013 PrivateTest degraded (blur, dark, noise, JPEG q=10),
scored with and without test-time BatchNorm adaptation (fervid.adapt.adabn on the
degraded, unlabelled PrivateTest images themselves). Results: benchmarks/transfer.md.

    flock /tmp/fervid-cpu.lock .venv/bin/python benchmarks/adabn_shift.py --models default fast

Degradations (on the 48x48 grey faces, fixed seed):
  blur   Gaussian blur, sigma 1.5 px
  dark   intensities x 0.35 (under-exposed camera), then rounded
  noise  additive Gaussian noise, sigma 25 grey levels, clipped
  jpeg   JPEG re-encoding at quality 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def degrade(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    import cv2

    if kind == "clean":
        return images
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in images])
    if kind == "dark":
        return np.clip(np.rint(images.astype(np.float32) * 0.35), 0, 255).astype(np.uint8)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(images + rng.normal(0, 25, images.shape), 0, 255).astype(np.uint8)
    if kind == "jpeg":
        out = []
        for im in images:
            ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 10])
            out.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
        return np.stack(out)
    raise ValueError(kind)


def main() -> None:
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from fervid import load_model
    from fervid.data.datasets import load_fer2013
    from fervid.inference.adapt import adabn
    from fervid.inference.logits import tta_logits

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--models", nargs="+", default=["default", "fast"])
    ap.add_argument("--kinds", nargs="+", default=["clean", "blur", "dark", "noise", "jpeg"])
    ap.add_argument("--out", default="runs/adabn-shift.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    test = load_fer2013(args.data).split("PrivateTest")
    y = test.labels
    rows = []
    for name in args.models:
        model = load_model(name)
        for kind in args.kinds:
            x = degrade(test.images, kind)
            for adapt in (False, True):
                m = adabn(model, x) if adapt else model
                pred = tta_logits(m, x).argmax(1).numpy()
                r = {
                    "model": name,
                    "shift": kind,
                    "adabn": adapt,
                    "accuracy": float(accuracy_score(y, pred)),
                    "macro_f1": float(f1_score(y, pred, average="macro")),
                }
                rows.append(r)
                print(json.dumps(r), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print("\n| model | PrivateTest images | accuracy | +AdaBN | macro-F1 | +AdaBN |\n|---|---|---|---|---|---|")
    for name in args.models:
        for kind in args.kinds:
            a, b = [r for r in rows if r["model"] == name and r["shift"] == kind]
            print(
                f"| {name} | {kind} | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {a['macro_f1']:.4f} | {b['macro_f1']:.4f} |"
            )


if __name__ == "__main__":
    main()
