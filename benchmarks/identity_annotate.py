"""How ``tests/data/hamilton_identities.csv`` was made (see ``tests/data/README.md``).

1. ``--candidates DIR``: YuNet on every frame of ``short_hamilton_clip.mp4`` twice (640 px,
   score 0.5: small faces; and the video settings, 320 px, score 0.6), the boxes linked into
   *candidate tracklets* inside each shot (cuts at 20, 82, 211, checked by eye; IoU > 0.2 with
   the tracklet's last box at most 6 frames back). The 640 px boxes make tracklets 0, 1, ...;
   320 px boxes overlapping no 640 px box (IoU < 0.3) make tracklets 100, 101, ... Writes
   ``candidates.json``, frames with the numbered boxes (``frame_NNN.png``) and contact sheets
   (first / middle / last face of each tracklet, brightened: ``sheet_*.png``).
2. A person looked at the PNGs and wrote :data:`PERSONS` below: which tracklets are one
   person; tracklets left out are not faces (hands, fists, a forehead box, hair).
3. ``--write CSV``: one row per box of those tracklets at least 24 px high.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/identity_annotate.py --candidates /tmp/cand
    PYTHONPATH=src .venv/bin/python benchmarks/identity_annotate.py --candidates /tmp/cand \\
        --write tests/data/hamilton_identities.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CUTS = (0, 20, 82, 211)

# person -> candidate tracklets, chosen by eye on the contact sheets. Left out (not faces):
# 2 (a fist), 9, 15, 17, 18, 105, 106, 107 (hands, fists, a hand at a microphone), 16, 19 (a
# second box on the singer's forehead), 21, 23, 28 (hair, the back of a head), 12 (a dark
# blur, 2 frames, nothing of a face visible).
PERSONS: dict[str, list[int]] = {
    "curly_man": [0, 5, 11, 103],  # audience, left (shot 0), then the profile close-up (shot 1)
    "singer": [1, 14],
    "audience_a": [3],
    "audience_b": [4, 100, 6, 101],  # a blurred face the pan carries right; YuNet loses it 26-45
    "audience_c": [102],
    "grey_hair": [7, 10, 13, 104],  # hidden at times behind the close-up
    "audience_woman": [8],
    "laughing_man": [20],
    "woman_left": [22],
    "obama": [24],
    "michelle": [25],
    "edge_face": [26],  # at the right border, under the WH.GOV logo
    "blurred_behind": [27],  # behind laughing_man, out of focus
}
MIN_HEIGHT = 24


def read_frames(clip: Path) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def link(dets: list[dict[str, Any]], first_id: int) -> list[dict[str, Any]]:
    """Greedy IoU linking of per-frame boxes into tracklets inside each shot."""
    from fervid.detectors import FaceBox, iou

    def fb(d: dict[str, Any]) -> FaceBox:
        return FaceBox(d["x"], d["y"], d["w"], d["h"])

    by_frame: dict[int, list[dict[str, Any]]] = {}
    for d in dets:
        by_frame.setdefault(d["frame"], []).append(d)
    tracks: list[dict[str, Any]] = []
    active: list[dict[str, Any]] = []
    for f in range(max(by_frame, default=-1) + 1):
        if f in CUTS:
            active = []
        cur = by_frame.get(f, [])
        pairs = sorted(
            ((iou(fb(d), fb(t["dets"][-1])), di, ti) for di, d in enumerate(cur) for ti, t in enumerate(active)),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        for o, di, ti in pairs:
            if o <= 0.2 or di in assigned or ti in assigned.values() or f - active[ti]["dets"][-1]["frame"] > 6:
                continue
            assigned[di] = ti
        for di, d in enumerate(cur):
            if di in assigned:
                t = active[assigned[di]]
            else:
                t = {"id": first_id + len(tracks), "dets": []}
                tracks.append(t)
                active.append(t)
            t["dets"].append(d)
    return tracks


def candidates(clip: Path, out: Path) -> list[dict[str, Any]]:
    from fervid.detectors import YuNetDetector, iou

    frames = read_frames(clip)
    full_det = YuNetDetector(max_side=640, score_threshold=0.5, coarse_side=None)
    video_det = YuNetDetector(max_side=320, score_threshold=0.6, coarse_side=None)
    full, video = [], []
    for i, f in enumerate(frames):
        rgb = np.ascontiguousarray(f[:, :, ::-1])
        fb = full_det.detect(rgb)
        full += [{"frame": i, "x": b.x, "y": b.y, "w": b.w, "h": b.h} for b in fb]
        video += [
            {"frame": i, "x": b.x, "y": b.y, "w": b.w, "h": b.h}
            for b in video_det.detect(rgb)
            if all(iou(b, g) < 0.3 for g in fb)
        ]
    tracks = link(full, 0) + link(video, 100)
    out.mkdir(parents=True, exist_ok=True)
    (out / "candidates.json").write_text(json.dumps(tracks))
    draw(frames, tracks, out)
    return tracks


def draw(frames: list[np.ndarray], tracks: list[dict[str, Any]], out: Path) -> None:
    import cv2

    boxes: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for t in tracks:
        for d in t["dets"]:
            boxes.setdefault(d["frame"], []).append((t["id"], d))
    for i in range(0, len(frames), 5):
        im = frames[i].copy()
        for tid, d in boxes.get(i, []):
            colour = (0, 255, 0) if d["h"] >= MIN_HEIGHT else (0, 0, 255)
            cv2.rectangle(im, (d["x"], d["y"]), (d["x"] + d["w"], d["y"] + d["h"]), colour, 2)
            cv2.putText(im, str(tid), (d["x"], max(12, d["y"] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
        cv2.imwrite(str(out / f"frame_{i:03d}.png"), im)
    rows = []
    for t in tracks:
        ds = t["dets"]
        cells = []
        for d in (ds[0], ds[len(ds) // 2], ds[-1]):
            m = int(0.4 * max(d["w"], d["h"]))
            f = frames[d["frame"]]
            crop = f[max(0, d["y"] - m) : d["y"] + d["h"] + m, max(0, d["x"] - m) : d["x"] + d["w"] + m]
            c = cv2.convertScaleAbs(cv2.resize(crop, (128, 128)), alpha=2.0, beta=20)
            cv2.putText(c, f"{t['id']}@{d['frame']}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
            cells.append(c)
        rows.append(np.hstack(cells))
    for k in range(0, len(rows), 8):
        cv2.imwrite(str(out / f"sheet_{k // 8}.png"), np.vstack(rows[k : k + 8]))


def write(tracks: list[dict[str, Any]], path: Path) -> int:
    by_id = {t["id"]: t for t in tracks}
    rows = sorted(
        (d["frame"], person, d["x"], d["y"], d["w"], d["h"])
        for person, ids in PERSONS.items()
        for tid in ids
        for d in by_id[tid]["dets"]
        if d["h"] >= MIN_HEIGHT
    )
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["frame", "person", "x", "y", "w", "h"])
        w.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--candidates", required=True, help="folder for the candidate tracklets and PNGs")
    ap.add_argument("--write", help="write the ground-truth CSV from PERSONS")
    args = ap.parse_args(argv)
    out = Path(args.candidates)
    if (out / "candidates.json").is_file():
        tracks = json.loads((out / "candidates.json").read_text())
    else:
        tracks = candidates(Path(args.data) / "media" / "short_hamilton_clip.mp4", out)
    print(f"{len(tracks)} candidate tracklets in {out}")
    if args.write:
        print(f"{write(tracks, Path(args.write))} rows written to {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
