"""Box crop vs aligned crop: does laying every face out like FER2013's own (five landmarks
onto the canonical positions, ``fervid.inference.crop``) help the bundled classifiers?

Usage (from the repository root; CPU-heavy, so niced and serialised with the others)::

    flock /tmp/fervid-cpu.lock nice -n 10 .venv/bin/python benchmarks/alignment.py \\
        --split PublicTest [--n 0] [--models default,fast] [--out runs/alignment-PublicTest.json]
    .venv/bin/python benchmarks/alignment.py --media        # the annotated media faces (no labels)

FER2013 faces re-cropped from "photos": each 48x48 test face is upscaled 4x (bicubic, 192 px)
and set in a 320x320 canvas (border pixels repeated), in two scenes:

``photo``   the face upright and centred, as FER2013 framed it;
``framed``  the face as photos frame it: a random similarity (roll -20..20 degrees, scale
            0.8-1.25, shift up to 8% of the canvas; seed 0 per face index) applied to it.

On each scene the default detector (YuNet, photo settings) runs on the whole canvas; the
detection nearest the canvas centre is the face. Crops compared, all classified by the same
model (onnxruntime fp32, the ``auto`` backend):

``fer48``          the original 48x48 face (the reference: what the model was tested on);
``yunet-aligned``  the aligned crop from YuNet's landmarks (the new default);
``yunet-box``      the box crop (model's ``face_margin`` 0.2 per side) around YuNet's box;
``haar-box``       the box crop around the Haar cascade's box (the old default pipeline).

Accuracy, macro-F1 and the mean top probability over the faces YuNet found (``found``), and
Haar over the faces both found; selection happens on PublicTest, PrivateTest is the report.
``--media``: the mean top probability and the top label of box vs aligned crops of the
faces YuNet finds on the media photos and the annotated video frames (no labels there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

CANVAS, FACE = 320, 192


def make_scene(face48: np.ndarray, scene: str, seed: int) -> np.ndarray:
    import cv2

    big = cv2.resize(face48, (FACE, FACE), interpolation=cv2.INTER_CUBIC)
    c = (CANVAS - FACE) / 2
    if scene == "photo":
        M = np.array([[1.0, 0, c], [0, 1.0, c]])
    elif scene == "framed":
        rng = np.random.default_rng(seed)
        ang, s = rng.uniform(-20, 20), rng.uniform(0.8, 1.25)
        dx, dy = rng.uniform(-0.08, 0.08, 2) * CANVAS
        M = cv2.getRotationMatrix2D((FACE / 2 - 0.5, FACE / 2 - 0.5), ang, s)
        M[:, 2] += c + np.array([dx, dy])
    else:
        raise ValueError(scene)
    return cv2.warpAffine(big, M, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def nearest_centre(boxes: list) -> object | None:
    if not boxes:
        return None
    c = CANVAS / 2
    return min(boxes, key=lambda b: (b.x + b.w / 2 - c) ** 2 + (b.y + b.h / 2 - c) ** 2)


def fer_crops(faces: np.ndarray, scene: str, size: int, margin: float, index: np.ndarray) -> dict[str, object]:
    """Every crop of every face in ``scene``; a crop is None where its detector found nothing."""
    from fervid.detectors import create_detector
    from fervid.inference.crop import box_crop, crop_face

    yunet, haar = create_detector("yunet"), create_detector("haar")
    out: dict[str, list] = {"fer48": [], "yunet-aligned": [], "yunet-box": [], "haar-box": []}
    for i, f48 in zip(index, faces):
        img = make_scene(f48, scene, int(i))
        rgb = np.repeat(img[:, :, None], 3, axis=2)
        y, h = nearest_centre(yunet.detect(rgb)), nearest_centre(haar.detect(img))
        out["fer48"].append(f48 if size == 48 else None)
        out["yunet-aligned"].append(None if y is None else crop_face(img, y.box, margin, size, y.landmarks))
        out["yunet-box"].append(None if y is None else box_crop(img, y.box, margin, size))
        out["haar-box"].append(None if h is None else box_crop(img, h.box, margin, size))
    return out


def scores(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = probs.argmax(1)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=list(range(probs.shape[1])), average="macro", zero_division=0)),
        "mean_confidence": float(probs.max(1).mean()),
    }


def run_fer(args: argparse.Namespace) -> int:
    from fervid.data.datasets import load_fer2013, stratified_subset
    from fervid.inference.backends import load_classifier
    from fervid.runtime import softmax

    d = load_fer2013(Path(args.data) / "fer2013" / "fer2013.csv.gz")
    pool = np.flatnonzero(d.splits == args.split)
    idx = pool if not args.n else pool[stratified_subset(d.labels[pool], args.n, 0)]
    faces, y = d.images[idx], d.labels[idx]
    rows = []
    for scene in args.scenes.split(","):
        t = time.perf_counter()
        crops = fer_crops(faces, scene, 48, 0.2, idx)
        found_y = np.array([c is not None for c in crops["yunet-aligned"]])
        found_h = np.array([c is not None for c in crops["haar-box"]])
        print(
            f"# {args.split} {scene}: {len(idx)} faces, YuNet found {found_y.sum()} ({100 * found_y.mean():.1f}%), "
            f"Haar {found_h.sum()} ({100 * found_h.mean():.1f}%) [{time.perf_counter() - t:.0f} s]",
            flush=True,
        )
        for model in args.models.split(","):
            clf = load_classifier(model, backend="auto", device="cpu")
            if int(clf.preprocess.input_size) != 48 or abs(float(clf.preprocess.face_margin) - 0.2) > 1e-9:
                raise SystemExit(f"{model}: this benchmark assumes 48 px inputs and face_margin 0.2")

            def probs(stack: list, clf=clf) -> np.ndarray:  # this model's classifier, bound now
                return softmax(np.asarray(clf.logits(np.stack(stack)), np.float32), float(clf.temperature))

            for crop, subset in (
                ("fer48", found_y),
                ("yunet-aligned", found_y),
                ("yunet-box", found_y),
                ("fer48", found_y & found_h),
                ("yunet-aligned", found_y & found_h),
                ("haar-box", found_y & found_h),
            ):
                sel = np.flatnonzero(subset)
                r = {
                    "split": args.split,
                    "scene": scene,
                    "model": model,
                    "crop": crop,
                    "subset": "yunet" if subset is found_y else "yunet&haar",
                    **scores(y[sel], probs([crops[crop][i] for i in sel])),
                    "found_yunet": float(found_y.mean()),
                    "found_haar": float(found_h.mean()),
                }
                rows.append(r)
                print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "\n| split | scene | model | faces | crop | accuracy | macro-F1 | mean top p |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['split']} | {r['scene']} | {r['model']} | {r['subset']} ({r['n']}) | {r['crop']} | "
            f"{100 * r['accuracy']:.2f} | {100 * r['macro_f1']:.2f} | {r['mean_confidence']:.3f} |"
        )
    return 0


def run_media(args: argparse.Namespace) -> int:
    import detectors  # benchmarks/detectors.py: the annotated media

    from fervid.data.io import rgb_to_gray
    from fervid.detectors import YUNET_VIDEO, create_detector
    from fervid.inference.backends import load_classifier
    from fervid.inference.crop import box_crop, crop_face
    from fervid.runtime import softmax

    items = detectors.load_items(Path(args.data))
    photo, video = create_detector("yunet"), create_detector("yunet", **YUNET_VIDEO)
    for model in args.models.split(","):
        clf = load_classifier(model, backend="auto", device="cpu")
        size, margin = int(clf.preprocess.input_size), float(clf.preprocess.face_margin)
        for kind in ("photo", "video"):
            box, ali = [], []
            for it, rgb in items:
                if (it.frame is None) != (kind == "photo"):
                    continue
                g = rgb_to_gray(rgb)
                for f in (photo if kind == "photo" else video).detect(rgb):
                    box.append(box_crop(g, f.box, margin, size))
                    ali.append(crop_face(g, f.box, margin, size, f.landmarks))
            pb = softmax(np.asarray(clf.logits(np.stack(box)), np.float32), float(clf.temperature))
            pa = softmax(np.asarray(clf.logits(np.stack(ali)), np.float32), float(clf.temperature))
            labels = clf.labels
            print(
                f"{model} {kind}: {len(box)} faces; mean top p box {pb.max(1).mean():.3f}, aligned "
                f"{pa.max(1).mean():.3f}; aligned more confident on {(pa.max(1) > pb.max(1)).sum()}; same top label "
                f"{(pa.argmax(1) == pb.argmax(1)).sum()}; labels box {[labels[k] for k in pb.argmax(1)]}, aligned "
                f"{[labels[k] for k in pa.argmax(1)]}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--split", default="PublicTest")
    ap.add_argument("--n", type=int, default=0, help="stratified subset size (0: the whole split)")
    ap.add_argument("--scenes", default="photo,framed")
    ap.add_argument("--models", default="default,fast")
    ap.add_argument("--out", default=None)
    ap.add_argument("--media", action="store_true", help="the media faces instead (confidence only)")
    args = ap.parse_args(argv)
    return run_media(args) if args.media else run_fer(args)


if __name__ == "__main__":
    raise SystemExit(main())
