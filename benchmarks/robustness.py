"""How the bundled classifiers hold up under what cameras do to faces: blur, JPEG artefacts,
low light, noise, occlusion (sunglasses, masks, hands) and head pose, on FER2013 test faces.
Extends benchmarks/adabn_shift.py (blur, dark, noise, JPEG) with camera and occlusion shifts.

Usage (from the repository root; CPU-heavy)::

    flock /tmp/fervid-cpu.lock nice -n 10 .venv/bin/python benchmarks/robustness.py \\
        --split PrivateTest [--models default,fast] [--out runs/robustness-PrivateTest.json]

Each shift is applied to the 48x48 grey faces (seed 0 per face index, so every model sees
the same faces); the classifiers run through onnxruntime fp32 (the ``auto`` backend):

``clean``       unchanged
``blur``        Gaussian blur, sigma 1.5 px (an out-of-focus webcam)
``motion``      horizontal motion blur over 7 px
``jpeg``        JPEG re-encoding at quality 10
``dark``        intensities x 0.35 (under-exposed)
``lowlight``    intensities x 0.25 plus Gaussian noise sigma 8 (a dim room: dark and grainy)
``noise``       Gaussian noise sigma 25
``sunglasses``  a dark band (grey 20) over the eyes, rows 13-24 of 48
``mask``        a light surgical-mask shape (grey 200) over nose and mouth, rows 27-47
``hand``        a skin-grey ellipse (grey 150, ~15% of the face) at a random place in the lower
                two thirds (a hand at the chin or cheek)
``roll20``      in-plane rotation by +-20 degrees (random sign): what the aligned crop removes
``yaw``         a perspective squeeze of one side to 70% of its height and width (a turned head,
                roughly: no 3D model)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SHIFTS = ("clean", "blur", "motion", "jpeg", "dark", "lowlight", "noise", "sunglasses", "mask", "hand", "roll20", "yaw")


def shift(faces: np.ndarray, kind: str, index: np.ndarray) -> np.ndarray:
    import cv2

    f = faces.astype(np.float32)
    rng = np.random.default_rng(0)
    if kind == "clean":
        return faces
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in faces])
    if kind == "motion":
        k = np.full((1, 7), 1 / 7, np.float32)
        return np.stack([cv2.filter2D(im, -1, k, borderType=cv2.BORDER_REPLICATE) for im in faces])
    if kind == "jpeg":
        return np.stack(
            [
                cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 10])[1], cv2.IMREAD_GRAYSCALE)
                for im in faces
            ]
        )
    if kind == "dark":
        return np.clip(np.rint(f * 0.35), 0, 255).astype(np.uint8)
    if kind == "lowlight":
        return np.clip(np.rint(f * 0.25 + rng.normal(0, 8, f.shape)), 0, 255).astype(np.uint8)
    if kind == "noise":
        return np.clip(f + rng.normal(0, 25, f.shape), 0, 255).astype(np.uint8)
    out = faces.copy()
    if kind == "sunglasses":
        out[:, 13:25, 6:42] = 20
        return out
    if kind == "mask":
        for im in out:
            pts = np.array([[8, 30], [16, 26], [32, 26], [40, 30], [38, 44], [24, 48], [10, 44]], np.int32)
            cv2.fillPoly(im, [pts], 200)
        return out
    if kind == "hand":
        for i, im in zip(index, out):
            r = np.random.default_rng(int(i))
            cx, cy = int(r.integers(10, 38)), int(r.integers(22, 44))
            cv2.ellipse(
                im,
                (cx, cy),
                (int(r.integers(8, 12)), int(r.integers(6, 10))),
                float(r.uniform(0, 180)),
                0,
                360,
                150,
                -1,
            )
        return out
    if kind == "roll20":
        return np.stack(
            [
                cv2.warpAffine(
                    im,
                    cv2.getRotationMatrix2D(
                        (23.5, 23.5), 20.0 * (1 if np.random.default_rng(int(i)).random() < 0.5 else -1), 1.0
                    ),
                    (48, 48),
                    borderMode=cv2.BORDER_REPLICATE,
                )
                for i, im in zip(index, faces)
            ]
        )
    if kind == "yaw":
        res = []
        for i, im in zip(index, faces):
            src = np.float32([[0, 0], [47, 0], [47, 47], [0, 47]])
            d = 0.3 * 47
            if np.random.default_rng(int(i)).random() < 0.5:  # right side recedes
                dst = np.float32([[0, 0], [47 - d / 2, d / 2], [47 - d / 2, 47 - d / 2], [0, 47]])
            else:
                dst = np.float32([[d / 2, d / 2], [47, 0], [47, 47], [d / 2, 47 - d / 2]])
            res.append(
                cv2.warpPerspective(
                    im, cv2.getPerspectiveTransform(src, dst), (48, 48), borderMode=cv2.BORDER_REPLICATE
                )
            )
        return np.stack(res)
    raise ValueError(kind)


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import accuracy_score, f1_score

    from fervid.data.datasets import load_fer2013
    from fervid.inference.backends import load_classifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--models", default="default,fast")
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--save-examples", default=None, help="PNG with the first faces under every shift")
    ap.add_argument("--n", type=int, default=0, help="a stratified subset of this many faces (seed 0); 0: all")
    args = ap.parse_args(argv)
    d = load_fer2013(Path(args.data) / "fer2013" / "fer2013.csv.gz")
    idx = np.flatnonzero(d.splits == args.split)
    if args.n:
        from fervid.data.datasets import stratified_subset

        idx = np.sort(idx[stratified_subset(d.labels[idx], args.n, 0)])
    faces, y = d.images[idx], d.labels[idx]
    shifted = {k: shift(faces, k, idx) for k in args.shifts.split(",")}
    if args.save_examples:
        import cv2

        grid = np.vstack([np.hstack(list(v[:10])) for v in shifted.values()])
        cv2.imwrite(args.save_examples, cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    rows = []
    for model in args.models.split(","):
        clf = load_classifier(model, backend="auto", device="cpu")
        for k, x in shifted.items():
            pred = np.asarray(clf.logits(x)).argmax(1)
            r = {
                "split": args.split,
                "model": model,
                "shift": k,
                "accuracy": float(accuracy_score(y, pred)),
                "macro_f1": float(f1_score(y, pred, average="macro")),
            }
            rows.append(r)
            print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    models = args.models.split(",")
    print(f"\n| shift ({args.split}) | " + " | ".join(f"{m} accuracy | {m} macro-F1" for m in models) + " |")
    print("|---|" + "---|---|" * len(models))
    for k in shifted:
        cells = []
        for m in models:
            r = next(r for r in rows if r["model"] == m and r["shift"] == k)
            c = next(r for r in rows if r["model"] == m and r["shift"] == "clean") if "clean" in shifted else r
            cells.append(
                f"{100 * r['accuracy']:.2f} ({100 * (r['accuracy'] - c['accuracy']):+.1f}) | {100 * r['macro_f1']:.2f}"
            )
        print(f"| {k} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
