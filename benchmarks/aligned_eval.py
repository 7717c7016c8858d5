"""Accuracy on aligned crops, fast: every PublicTest face warped into the crop the inference
pipeline makes of it, from the alignment stored by ``benchmarks/gpu_pack.py align``.

``benchmarks/alignment.py`` re-runs YuNet (and Haar) on every upscaled face for each model;
this reads the similarity YuNet's landmarks gave once (``runs/gpu/align.npz``: the face
upscaled 4x in a 320 px canvas, the ``photo`` scene there) and warps the 48x48 face with it,
which matches ``crop_face`` on that scene within ~1.5 grey levels on average (checked when
the file was made). Faces YuNet did not find are left out, as there.

    .venv/bin/python benchmarks/aligned_eval.py --models default,fast,runs/x/best.pt [--split PublicTest]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def aligned_faces(faces: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The faces warped by their ``theta`` as the trainer's aligned views are (uint8 again)."""
    import torch

    from fervid.training.loop import aligned_views

    x = torch.from_numpy(faces).float()[:, None]
    out = aligned_views(x, torch.from_numpy(theta).float(), torch.ones(len(x), dtype=torch.bool))
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def main() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    from fervid.data.datasets import load_fer2013
    from fervid.inference.backends import load_classifier
    from fervid.runtime import softmax

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,fast")
    ap.add_argument("--split", default="PublicTest", help="a split the alignment file covers")
    ap.add_argument("--align", default=str(REPO / "runs/gpu/align.npz"))
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/fer2013/fer2013.csv.gz"))
    args = ap.parse_args()
    d = load_fer2013(args.data).split(args.split)
    z = np.load(args.align)
    pos = {int(r): i for i, r in enumerate(z["index"])}
    if any(int(r) not in pos for r in d.index):
        raise SystemExit(f"{args.align} does not cover {args.split}")
    rows = np.array([pos[int(r)] for r in d.index])
    found = z["found"][rows]
    faces, y = d.images[found], d.labels[found]
    crops = {"original": faces, "aligned": aligned_faces(faces, z["theta"][rows][found])}
    print(f"# {args.split}: {found.sum()} of {len(found)} faces aligned")
    print(f"| model ({args.split}, {found.sum()} faces) | original acc / macro-F1 | aligned acc / macro-F1 |")
    print("|---|---|---|")
    for m in args.models.split(","):
        clf = load_classifier(m, backend="auto", device="cpu")
        res = {}
        for name, imgs in crops.items():
            p = softmax(clf.logits(imgs), clf.temperature).argmax(1)
            res[name] = (100 * accuracy_score(y, p), 100 * f1_score(y, p, average="macro"))
        print(f"| {m} | " + " | ".join(f"{a:.2f} / {f:.2f}" for a, f in res.values()) + " |", flush=True)
        print(json.dumps({"model": m, "split": args.split, **{k: list(v) for k, v in res.items()}}), file=sys.stderr)


if __name__ == "__main__":
    main()
