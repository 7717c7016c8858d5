"""The measurements behind YuNet's coarse-to-fine photo detection (``YuNetDetector(coarse_side=...)``,
the constants ``YUNET_COARSE_RATIO``, ``YUNET_REFINE_SCORE`` and ``YUNET_SMALL_FACE`` in
``fervid/detectors/yunet.py``; results in ``benchmarks/yunet.md``, "coarse to fine").

Usage (from the repository root)::

    .venv/bin/python benchmarks/yunet_coarse.py [--data ../shared/data] [--threads 1]

1. YuNet's score on every annotated media face (``benchmarks/detectors.py``) with the image
   shrunk so the face is s px at YuNet's input (0: not found at score >= 0.3).
2. Small real faces pasted into the two no-face photos (640x427): four media faces at 24-46
   px, three places each. For those the one 640 px pass finds, how many leave *no* candidate
   at the coarse input (longer side 640 / ratio) at or above a refine threshold: such a face
   beside a large face would be lost by the coarse pass. Plus how many of the ``<= 640`` px
   media photos and ``pipeline_speed.py`` portraits would be sent to the fine pass.
3. Per image: the passes the default photo detector runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import detectors as D  # noqa: E402
import pipeline_speed as PS  # noqa: E402

from fervid.data.io import load_image  # noqa: E402
from fervid.detectors.base import FaceBox, fit_size, shrink  # noqa: E402
from fervid.detectors.yunet import YuNetDetector  # noqa: E402

SIZES = (8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40)
# (media photo, face centre x, y, square side): the face with some margin, as pasted
PASTE = [
    ("obama-480p.jpg", 444, 107, 200),
    ("two_people.jpg", 322, 116, 260),
    ("lin-manuel-miranda.png", 417, 305, 500),
    ("32bit.png", 311, 410, 500),
]


def square(rgb: np.ndarray, cx: int, cy: int, side: int, out: int) -> np.ndarray:
    import cv2

    crop = rgb[max(0, cy - side // 2) : cy + side // 2, max(0, cx - side // 2) : cx + side // 2]
    return np.ascontiguousarray(cv2.resize(crop, (out, out), interpolation=cv2.INTER_AREA))


def score_vs_size(items: list, det: YuNetDetector) -> None:
    import cv2

    print("## 1. score vs face size at YuNet's input (px)\n")
    print("| face | side | " + " | ".join(str(s) for s in SIZES) + " |")
    print("|---|---|" + "---|" * len(SIZES))
    for it, img in items:
        H, W = img.shape[:2]
        for g in it.faces:
            gs = (g[2] * g[3]) ** 0.5
            cells = []
            for s in SIZES:
                f = s / gs
                if f > 1:
                    cells.append("-")
                    continue
                small = cv2.resize(img, (max(1, round(W * f)), max(1, round(H * f))), interpolation=cv2.INTER_AREA)
                best = 0.0
                for r in det._raw(small, True, 0.3):
                    b = FaceBox(*(int(v / f) for v in r[:4]), float(r[14]))
                    if D.score_item(D.Item("x", [g]), [b])[0]:
                        best = max(best, b.score)
                cells.append(f"{best:.2f}")
            print(f"| {it.name} | {gs:.0f} | " + " | ".join(cells) + " |")


def pasted(data: Path, items: list, det: YuNetDetector) -> None:
    import cv2

    no_face = dict(D.load_no_face())
    faces = [square(load_image(data / "media" / n), cx, cy, side, 200) for n, cx, cy, side in PASTE]
    canvases = []
    for base in no_face.values():
        for face in faces:
            for s in range(24, 48, 2):
                for x, y in ((500, 300), (100, 60), (300, 200)):
                    c = base.copy()
                    c[y : y + s, x : x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
                    if any(x - 5 < r[0] < x + s for r in det._raw(c, True, 0.7)):  # found at 640
                        canvases.append(c)
    photos = PS.photos(data) + [img for it, img in items if max(img.shape[:2]) <= 640]
    print(f"\n## 2. {len(canvases)} pasted small faces found at 640 px; {len(photos)} photos <= 640 px\n")
    print("| ratio | refine score | pasted faces with no coarse candidate | photos sent to the fine pass |")
    print("|---|---|---|---|")
    for ratio in (1.5, 1.33, 1.25):
        for thr in (0.3, 0.2, 0.15, 0.1):
            miss = sum(
                not len(det._raw(shrink(c, fit_size(640, 427, int(np.ceil(640 / ratio))))[0], True, thr))
                for c in canvases
            )
            refined = 0
            for im in photos:
                H, W = im.shape[:2]
                rows = det._raw(shrink(im, fit_size(W, H, max(320, int(np.ceil(max(H, W) / ratio)))))[0], True, thr)
                refined += not len(rows) or bool((rows[:, 14] < 0.7).any())
            print(f"| {ratio} | {thr} | {miss} | {refined} |")


def passes(data: Path, items: list, threads: int | None) -> None:
    print("\n## 3. passes of the default photo detector\n")
    named = [(f"pipeline_speed portrait {i}", im) for i, im in enumerate(PS.photos(data))]
    named += [(it.name, im) for it, im in items] + D.load_no_face()
    for name, im in named:
        det = YuNetDetector(threads=threads)
        n = len(det.detect(im))
        sizes = ", ".join(f"{w}x{h}" for w, h in det.input_sizes)
        print(f"- {name} ({im.shape[1]}x{im.shape[0]}): {n} faces; passes {sizes}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(args.threads)
    data = Path(args.data)
    items = D.load_items(data)
    det = YuNetDetector(max_side=None, coarse_side=None, threads=args.threads)
    score_vs_size(items, det)
    pasted(data, items, det)
    passes(data, items, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
