"""Face recall of the video pipeline (``EmotionRecognizer.stream``) on the hand-annotated
frames of short_hamilton_clip.mp4 (ground truth and scoring from ``benchmarks/detectors.py``),
for several ``detect_every`` settings: does detecting every K frames and re-detecting known
faces in between lose faces?

Usage (from the repository root)::

    .venv/bin/python benchmarks/stream_recall.py [--data ../shared/data] [--detect-every 1,2,5,10]
                                                 [--detector yunet|haar] [--size 640x480]

The annotated frames (0, 100, 125, ..., 250) are all multiples of 5, so with a fixed start
they would all be key frames (full detection). Each setting is therefore run with every
phase 0..K-1 (the first ``phase`` frames dropped), and recall is summed over phases: every
annotated frame is scored once at each position in the K-frame cycle. ``--size 640x480``
letterboxes the frames to 640x480 first (the boxes shift down by 60 px).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO.parent / "src"))

from detectors import FRAMES, Item, score_item  # noqa: E402

from fervid.detectors import FaceBox  # noqa: E402
from fervid.inference.recognizer import EmotionRecognizer  # noqa: E402
from fervid.inference.video import stream  # noqa: E402


def read_frames(path: Path, size: tuple[int, int] | None) -> tuple[list[np.ndarray], int]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    dy = 0
    if size:
        h, w = frames[0].shape[:2]
        assert w == size[0], "letterboxing keeps the width"
        dy = (size[1] - h) // 2
        frames = [cv2.copyMakeBorder(f, dy, size[1] - h - dy, 0, 0, cv2.BORDER_CONSTANT) for f in frames]
    return frames, dy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent.parent / "shared" / "data")))
    ap.add_argument("--detect-every", default="1,2,5,10")
    ap.add_argument("--size", default=None, help="WxH letterbox, e.g. 640x480")
    ap.add_argument("--model", default="fast")
    ap.add_argument("--detector", default=None, help="detector name (default: the library's default, yunet)")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x")) if args.size else None
    frames, dy = read_frames(Path(args.data) / "media" / "short_hamilton_clip.mp4", size)  # type: ignore[arg-type]
    items = [
        Item(
            it.name,
            [(x, y + dy, w, h) for x, y, w, h in it.faces],
            [(x, y + dy, w, h) for x, y, w, h in it.ignore],
            it.frame,
        )
        for it in FRAMES
    ]
    n_faces = sum(len(it.faces) for it in items)
    from fervid.detectors import DEFAULT_DETECTOR

    rec = EmotionRecognizer(args.model, detector=args.detector or DEFAULT_DETECTOR, device="cpu").load()
    det = rec.video_detector
    print(
        f"# short_hamilton_clip.mp4 {frames[0].shape[1]}x{frames[0].shape[0]}, {len(items)} annotated frames, "
        f"{n_faces} faces; detector {det!r}; recall summed over all K phases"
    )
    print("| detect every K | recall | false positives | faces reported over the clip (phase 0) |")
    print("|---|---|---|---|")
    for k in (int(v) for v in args.detect_every.split(",")):
        hits = fps = total = 0
        reported = 0
        for phase in range(k):
            by_index: dict[int, list[FaceBox]] = {}
            for fr in stream(rec, frames[phase:], detect_every=k, fps=29.97):
                by_index[fr.index + phase] = [FaceBox(*f.box, f.score) for f in fr.faces]
                if phase == 0:
                    reported += len(fr.faces)
            for it in items:
                if it.frame is not None and it.frame >= phase:
                    h, f = score_item(it, by_index.get(it.frame, []))
                    hits, fps, total = hits + h, fps + f, total + len(it.faces)
        print(f"| {k} | {hits}/{total} ({100 * hits / total:.0f}%) | {fps} | {reported} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
