"""The canonical face geometry of FER2013: where YuNet puts the five landmarks on the training
faces, in the 48x48 frame. The aligned crop (``fervid.inference.crop``) maps every detected
face onto these positions, so the classifier sees faces laid out like its training data.

Usage (from the repository root)::

    .venv/bin/python benchmarks/fer_geometry.py [--data ../shared/data] [--n 3000] [--upscale 4]
                                                [--split Training] [--markdown]

Method: a stratified sample of ``--n`` faces of ``--split`` (class shares kept, seed 0), each
upscaled ``--upscale`` times (bicubic: YuNet misses most faces at 48 px) and given to YuNet as
it is (no further resizing, score threshold 0.3); the detection nearest the image centre is
kept when it scores >= 0.6. Landmarks are mapped back to the 48x48 frame in OpenCV's
pixel-centre convention (pixel ``i`` covers ``[i - 0.5, i + 0.5]``; the mapping of
``cv2.resize`` is ``x48 = (xbig + 0.5) / upscale - 0.5``). Printed: per landmark the median,
the interquartile range and the median absolute deviation (MAD), the inter-ocular distance
(IOD), the eye line's roll angle, and the template: the medians made mirror-symmetric about
the frame's vertical midline ``x = 23.5`` (training flips faces horizontally, so the left
and right halves are interchangeable), which :data:`fervid.inference.crop.CANONICAL_LANDMARKS_48`
stores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fervid.data.datasets import load_fer2013, stratified_subset  # noqa: E402
from fervid.detectors import LANDMARK_NAMES, YuNetDetector  # noqa: E402


def fer_landmarks(
    faces: np.ndarray, upscale: int = 4, min_score: float = 0.6, threads: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """YuNet's landmarks of 48x48 grey faces, in 48x48 pixel-centre coordinates.

    Returns ``(found, landmarks)``: a bool mask of the faces where YuNet fired (score >=
    ``min_score``, the detection nearest the centre) and an ``N x 5 x 2`` float array (NaN
    where it did not)."""
    import cv2

    det = YuNetDetector(max_side=None, score_threshold=0.3, threads=threads)
    found = np.zeros(len(faces), bool)
    out = np.full((len(faces), 5, 2), np.nan, np.float32)
    for i, g in enumerate(faces):
        big = cv2.resize(g, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        raw = det.raw(np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2)))
        if not len(raw):
            continue
        c = big.shape[0] / 2
        r = raw[np.argmin(np.hypot(raw[:, 0] + raw[:, 2] / 2 - c, raw[:, 1] + raw[:, 3] / 2 - c))]
        if r[14] < min_score:
            continue
        found[i] = True
        out[i] = (r[4:14].reshape(5, 2) + 0.5) / upscale - 0.5
    return found, out


def symmetric_template(median: np.ndarray, centre: float = 23.5) -> np.ndarray:
    """Mirror-average the five points about ``x = centre`` (right eye <-> left eye, mouth
    corners swapped, nose onto the midline)."""
    mirror = median[[1, 0, 2, 4, 3]].copy()
    mirror[:, 0] = 2 * centre - mirror[:, 0]
    return (median + mirror) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--split", default="Training")
    ap.add_argument("--upscale", type=int, default=4)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    d = load_fer2013(Path(args.data) / "fer2013" / "fer2013.csv.gz")
    pool = np.flatnonzero(d.splits == args.split)
    idx = pool[stratified_subset(d.labels[pool], args.n, 0)]
    t = time.perf_counter()
    found, lm = fer_landmarks(d.images[idx], args.upscale)
    secs = time.perf_counter() - t
    L = lm[found]
    names = d.label_names
    print(
        f"# FER2013 {args.split}: {len(idx)} faces (stratified, seed 0), upscaled {args.upscale}x bicubic; "
        f"YuNet fired (score >= 0.6) on {found.sum()} ({100 * found.mean():.1f}%) in {secs:.0f} s"
    )
    for c, name in enumerate(names):
        m = d.labels[idx] == c
        print(f"#   {name}: {found[m].sum()}/{m.sum()} ({100 * found[m].mean():.0f}%)")
    med = np.median(L, 0)
    q1, q3 = np.percentile(L, 25, 0), np.percentile(L, 75, 0)
    mad = np.median(np.abs(L - med), 0)
    iod = np.hypot(*(L[:, 1] - L[:, 0]).T)
    roll = np.degrees(np.arctan2(L[:, 1, 1] - L[:, 0, 1], L[:, 1, 0] - L[:, 0, 0]))
    eye_mid = (L[:, 0] + L[:, 1]) / 2
    mouth_mid = (L[:, 3] + L[:, 4]) / 2
    eye_mouth = np.hypot(*(mouth_mid - eye_mid).T)
    print("| landmark | median x | median y | IQR x | IQR y | MAD x | MAD y |")
    print("|---|---|---|---|---|---|---|")
    for k, n in enumerate(LANDMARK_NAMES):
        print(
            f"| {n} | {med[k, 0]:.2f} | {med[k, 1]:.2f} | {q1[k, 0]:.1f}–{q3[k, 0]:.1f} | {q1[k, 1]:.1f}–{q3[k, 1]:.1f} "
            f"| {mad[k, 0]:.2f} | {mad[k, 1]:.2f} |"
        )
    pct = [5, 25, 50, 75, 95]
    print("| measure | " + " | ".join(f"p{p}" for p in pct) + " |")
    print("|---|" + "---|" * len(pct))
    for label, v in (
        ("inter-ocular distance (px of 48)", iod),
        ("eye line roll (degrees, + clockwise)", roll),
        ("eye centre x", eye_mid[:, 0]),
        ("eye centre y", eye_mid[:, 1]),
        ("mouth centre y", mouth_mid[:, 1]),
        ("eye-to-mouth distance", eye_mouth),
    ):
        print(f"| {label} | " + " | ".join(f"{np.percentile(v, p):.2f}" for p in pct) + " |")
    tpl = symmetric_template(med)
    print("# template (mirror-symmetric medians, 48x48 pixel-centre coordinates), for crop.py:")
    print("CANONICAL_LANDMARKS_48 = (" + ", ".join(f"({x:.2f}, {y:.2f})" for x, y in tpl) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
