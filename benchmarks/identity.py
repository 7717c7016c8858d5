"""Who is who through a video: the trackers of :mod:`fervid.inference.tracking` scored with
``motmetrics`` against the hand-annotated identities of ``short_hamilton_clip.mp4``
(``tests/data/hamilton_identities.csv``, how it was made: ``tests/data/README.md``).

Usage (from the repository root)::

    PYTHONPATH=src .venv/bin/python benchmarks/identity.py [--sweep] [--cuts]

The default video pipeline (YuNet 320 px, aligned crops, the default model) runs once per
clip; its boxes, frames and crops are recorded and every tracker configuration replays them
(what :class:`fervid.inference.video.VideoStream` does with them: the tracker's ``update`` and
the held-back frames of ``delay``). The final default is also run through the real stream,
to check the replay. Two clips:

- ``media``: the clip as it is (four shots; cuts at frames 20, 82, 211).
- ``reordered``: a harder clip built here, in a temporary folder, from the same shots in
  another order (second half of shot 2, shot 3, shot 0, shot 1, first half of shot 2),
  re-encoded as mp4: people come back after other shots and the singer's two halves meet
  across a cut.

Columns: IDF1, ID switches, fragmentations and MOTA (motmetrics, IoU >= 0.5), hypothesis ids,
*mixed ids* (ids matched to more than one annotated person: an identity that jumps), *short
ids* (ids on fewer than 3 frames), and the re-identifications the tracker made (right / all;
right = the id went back to the same annotated person; not known for the run through
VideoStream, which shows 0/0), and the tracker's own CPU time per frame in the replay
(``time.process_time``: cut detection and descriptors included, detection and classification
not). ``--cuts`` prints the colour histogram distance at the cuts and the largest elsewhere,
with its cost, for the clip as it is and letterboxed to 640x480 and 1280x720; ``--sweep`` the
re-id threshold and ratio, min_hits, the confirmation score (each alone: the other rows
without one) and the descriptor kinds. ``--speed`` only times the whole
pipeline (CPU ms per frame, one thread) with the fervid on ``PYTHONPATH``, to compare two trees
(``--tracker`` picks the stream's tracker).
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GT_CSV = REPO / "tests" / "data" / "hamilton_identities.csv"
SHOTS = [(0, 20), (20, 82), (82, 211), (211, 275)]
REORDER = [(146, 211), (211, 275), (0, 20), (20, 82), (82, 146)]


@dataclass
class Recorded:
    boxes: list[Any]
    frame: np.ndarray
    crops: list[np.ndarray]


def load_gt(path: Path = GT_CSV) -> dict[int, list[tuple[str, tuple[int, int, int, int]]]]:
    gt: dict[int, list[tuple[str, tuple[int, int, int, int]]]] = collections.defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            gt[int(row["frame"])].append((row["person"], (int(row["x"]), int(row["y"]), int(row["w"]), int(row["h"]))))
    return gt


def record(rec: Any, clip: Path) -> list[Recorded]:
    """The default pipeline's per-frame tracker inputs (boxes, BGR frame, aligned crops)."""
    from fervid.inference.tracking import IoUTracker

    out: list[Recorded] = []

    class Recorder(IoUTracker):
        def update(self, boxes, n_labels, frame=None, crops=None):  # type: ignore[no-untyped-def,override]
            out.append(Recorded(list(boxes), np.array(frame), list(crops or [])))
            return super().update(boxes, n_labels)

    for _ in rec.stream(clip, tracker=Recorder()):
        pass
    return out


def record_cached(rec: Any, clip: Path, cache: Path | None) -> list[Recorded]:
    """:func:`record`, kept in ``cache`` (a pickle) when given: tuning replays without the pipeline."""
    import pickle

    if cache is not None and cache.is_file():
        with open(cache, "rb") as f:
            return pickle.load(f)  # noqa: S301 - our own file, written just below
    frames = record(rec, clip)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "wb") as f:
            pickle.dump(frames, f)
    return frames


def replay(tracker: Any, frames: list[Recorded]) -> dict[int, list[tuple[int, tuple[int, int, int, int], int]]]:
    """frame -> [(person id, box, track serial)] as the stream would output them."""
    rows: list[list[tuple[Any, Any]]] = []
    for r in frames:
        tracks = tracker.update(r.boxes, 8, frame=r.frame, crops=r.crops)
        rows.append(list(zip(tracks, r.boxes)))
    serial: dict[int, int] = {}
    hyp: dict[int, list[tuple[int, tuple[int, int, int, int], int]]] = {}
    for i, row in enumerate(rows):
        hyp[i] = [(t.face_id, b.box, serial.setdefault(id(t), len(serial))) for t, b in row if t.face_id is not None]
    return hyp


def iou_distances(gt: list[tuple[int, int, int, int]], hyp: list[tuple[int, int, int, int]]) -> np.ndarray:
    """1 - IoU, NaN (no match) under IoU 0.5: ``motmetrics.distances.iou_matrix``, which calls
    ``np.asfarray`` (gone in NumPy 2) in motmetrics 1.4.0."""
    from fervid.detectors import FaceBox, iou

    d = np.full((len(gt), len(hyp)), np.nan)
    for i, a in enumerate(gt):
        for j, b in enumerate(hyp):
            o = iou(FaceBox(*a), FaceBox(*b))
            if o >= 0.5:
                d[i, j] = 1.0 - o
    return d


def score(gt: dict[int, list[Any]], hyp: dict[int, list[Any]], n_frames: int) -> dict[str, Any]:
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    person_no: dict[str, int] = {}  # motmetrics wants numeric ids
    matched: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    seg_person: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i in range(n_frames):
        g, h = gt.get(i, []), hyp.get(i, [])
        dist = iou_distances([b for _, b in g], [b for _, b, _ in h])
        acc.update([person_no.setdefault(p, len(person_no)) for p, _ in g], [k for k, _, _ in h], dist)
        for gi, hi in zip(*np.nonzero(~np.isnan(dist))):
            matched[h[hi][0]][g[gi][0]] += 1
            seg_person[h[hi][2]][g[gi][0]] += 1
    m = mm.metrics.create().compute(
        acc, metrics=["idf1", "num_switches", "num_fragmentations", "mota", "num_unique_objects"], name="x"
    )
    lengths = collections.Counter(k for rows in hyp.values() for k, _, _ in rows)
    # re-identifications: a person id whose later track segment continues an earlier one
    segs: dict[int, list[int]] = collections.defaultdict(list)
    for i in sorted(hyp):
        for k, _, s in hyp[i]:
            if s not in segs[k]:
                segs[k].append(s)
    reid = right = 0
    for _k, ss in segs.items():
        people = [seg_person[s].most_common(1)[0][0] if seg_person[s] else None for s in ss]
        for p in people[1:]:
            reid += 1
            right += int(p is not None and p == people[0])
    return {
        "idf1": float(m["idf1"].iloc[0]),
        "switches": int(m["num_switches"].iloc[0]),
        "frag": int(m["num_fragmentations"].iloc[0]),
        "mota": float(m["mota"].iloc[0]),
        "ids": len(lengths),
        "mixed": sum(1 for c in matched.values() if len(c) > 1),
        "short": sum(1 for n in lengths.values() if n < 3),
        "reid": f"{right}/{reid}",
    }


def timed(gt: dict[int, list[Any]], tracker: Any, frames: list[Recorded]) -> dict[str, Any]:
    """:func:`score` of a replay, with the tracker's CPU time per frame (process time: what the
    tracking itself costs, less sensitive than wall time to other jobs on a shared machine)."""
    t0 = time.process_time()
    hyp = replay(tracker, frames)
    ms = 1e3 * (time.process_time() - t0) / max(len(frames), 1)
    return {**score(gt, hyp, len(frames)), "ms": f"{ms:.2f}"}


def configs() -> dict[str, Any]:
    from fervid.detectors import YuNetDetector
    from fervid.inference.tracking import IoUTracker, PersonTracker

    score = YuNetDetector.confirm_score  # what the stream's tracker gets from the default detector
    return {
        "today: IoU tracker (before this work)": IoUTracker,
        "1. + shot cuts": lambda: PersonTracker(min_hits=1, max_age=15, reid_threshold=None),
        "2. + confirmation (min_hits 4) and hysteresis": lambda: PersonTracker(reid_threshold=None),
        "3. + re-identification": PersonTracker,
        f"4. + confirmation score {score} (default)": lambda: PersonTracker(confirm_score=score),
    }


def make_reordered(clip: Path, tmp: Path) -> tuple[Path, dict[int, list[Any]]]:
    """The media clip's shots in :data:`REORDER` order, re-encoded, and its ground truth."""
    import cv2
    from identity_annotate import read_frames  # benchmarks/, next to this file

    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.release()
    frames = read_frames(clip)
    gt0 = load_gt()
    out = tmp / "reordered.mp4"
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    gt: dict[int, list[Any]] = {}
    j = 0
    for a, b in REORDER:
        for i in range(a, b):
            vw.write(frames[i])
            gt[j] = gt0.get(i, [])
            j += 1
    vw.release()
    return out, gt


def cut_report(clip: Path, sizes: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))) -> None:
    """The cut detector's distances on the clip as it is and letterboxed to each of ``sizes``."""
    from fervid.bench import resize_video

    cut_distances(clip, "as it is")
    with tempfile.TemporaryDirectory(prefix="fervid-identity-") as tmp:
        for w, h in sizes:
            cut_distances(resize_video(clip, Path(tmp) / f"{w}x{h}.mp4", (w, h)), f"letterboxed to {w}x{h}")


def cut_distances(clip: Path, what: str) -> None:
    import cv2

    from fervid.inference.tracking import CutDetector

    cd, d, ts = CutDetector(), [], []
    cap = cv2.VideoCapture(str(clip))
    while True:
        ok, f = cap.read()
        if not ok:
            break
        t0 = time.perf_counter()
        d.append(cd.distance(f))
        ts.append(time.perf_counter() - t0)
    cuts = [a for a, _ in SHOTS[1:]]
    others = max(v for i, v in enumerate(d) if i not in cuts)
    print(
        f"{what}: cut distances {[round(d[c], 3) for c in cuts]} at frames {cuts}; largest elsewhere {others:.3f}; "
        f"{1e3 * float(np.median(ts)):.2f} ms per frame"
    )


def descriptor_cost(frames: list[Recorded]) -> float:
    from fervid.inference.tracking import FaceDescriptor

    fd, n, t0 = FaceDescriptor(), 0, time.perf_counter()
    for r in frames:
        for b, c in zip(r.boxes, r.crops):
            fd.compute(r.frame, b, c)
            n += 1
    return 1e3 * (time.perf_counter() - t0) / max(n, 1)


def pipeline_cpu(clip: Path, passes: int = 3, tracker: str | None = None) -> None:
    """CPU time per frame of the whole default pipeline (stream + drawing, everything on one
    thread, the clip letterboxed to 640x480) for the fervid on ``PYTHONPATH``: run it with each
    tree in turn to compare a change (CPU time is steadier than wall time on a shared machine).
    ``tracker`` (``"person"``, ``"iou"``): the stream's tracker; ``None`` passes none, so that a
    tree from before trackers had names runs the same code."""
    import fervid
    from fervid.bench import resize_video, set_threads
    from fervid.inference.backends import OnnxClassifier
    from fervid.inference.draw import annotate
    from fervid.inference.recognizer import EmotionRecognizer

    set_threads(1)
    rec = EmotionRecognizer("default", device="cpu", backend="onnx", detector_options={"threads": 1}).load()
    rec._classifier = OnnxClassifier(rec.classifier.path, 1)  # type: ignore[attr-defined]
    cpu, fps = [], []
    with tempfile.TemporaryDirectory(prefix="fervid-identity-") as tmp:
        path = resize_video(clip, Path(tmp) / "sized.mp4", (640, 480))
        for _ in range(passes):
            t0, w0, n = time.process_time(), time.perf_counter(), 0
            for fr in rec.stream(path, **({"tracker": tracker} if tracker else {})):
                annotate(fr.frame, fr.faces, bgr=True)
                n += 1
            cpu.append(1e3 * (time.process_time() - t0) / n)
            fps.append(n / (time.perf_counter() - w0))
    print(
        f"{fervid.__file__} (tracker {tracker or 'default'}): CPU ms/frame {[round(c, 2) for c in cpu]}, wall fps {[round(f, 1) for f in fps]}"
    )


def table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n## {title}\n")
    print(
        "| tracker | IDF1 | ID switches | fragmentations | MOTA | ids | mixed ids | ids < 3 frames | re-ids right "
        "| tracker CPU ms/frame |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['idf1']:.3f} | {r['switches']} | {r['frag']} | {r['mota']:.3f} | {r['ids']} | "
            f"{r['mixed']} | {r['short']} | {r['reid']} | {r.get('ms', '-')} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--model", default="default")
    ap.add_argument("--sweep", action="store_true", help="also sweep the re-id threshold and min_hits")
    ap.add_argument("--cache", help="folder to keep the recorded pipeline outputs in between runs (tuning)")
    ap.add_argument("--speed", action="store_true", help="only the pipeline's CPU time per frame (see pipeline_cpu)")
    ap.add_argument("--tracker", choices=("person", "iou"), help="--speed: the stream's tracker (default: none given)")
    ap.add_argument("--passes", type=int, default=3, help="--speed: passes over the clip (default 3)")
    ap.add_argument("--cuts", action="store_true", help="print the cut detector's distances")
    args = ap.parse_args(argv)
    from fervid.bench import set_threads
    from fervid.inference.recognizer import EmotionRecognizer

    set_threads(2)
    clip = Path(args.data) / "media" / "short_hamilton_clip.mp4"
    if not clip.is_file():
        print(f"no clip at {clip}", file=sys.stderr)
        return 2
    if args.speed:
        pipeline_cpu(clip, args.passes, args.tracker)
        return 0
    if args.cuts:
        cut_report(clip)
    from fervid.inference.tracking import FaceDescriptor, PersonTracker

    rec = EmotionRecognizer(args.model, device="cpu").load()
    with tempfile.TemporaryDirectory(prefix="fervid-identity-") as tmp:
        hard, hard_gt = make_reordered(clip, Path(tmp))
        for name, path, gt in (("media clip", clip, load_gt()), ("reordered clip", hard, hard_gt)):
            frames = record_cached(rec, path, args.cache and Path(args.cache) / f"{name.split()[0]}.pkl")
            rows = {k: timed(gt, make(), frames) for k, make in configs().items()}
            real: dict[int, list[Any]] = collections.defaultdict(list)
            for fr in rec.stream(path):
                real[fr.index] = [(f.face_id, f.box, f.face_id) for f in fr.faces]
            rows["default, through VideoStream"] = score(gt, real, len(frames))
            table(f"{name} ({len(frames)} frames, {sum(len(v) for v in gt.values())} annotated faces)", rows)
            if name == "media clip":
                print(f"\ndescriptor: {descriptor_cost(frames):.2f} ms per face")
            if args.sweep:
                sweep = {}
                for thr in (0.08, 0.1, 0.12, 0.15, 0.2):
                    for ratio in (0.5, 0.7, 1.0):
                        tr = PersonTracker(reid_threshold=thr, reid_ratio=ratio)
                        sweep[f"reid_threshold {thr}, reid_ratio {ratio}"] = score(gt, replay(tr, frames), len(frames))
                for mh in (2, 3, 5, 6):
                    sweep[f"min_hits {mh}"] = score(gt, replay(PersonTracker(min_hits=mh), frames), len(frames))
                for cs in (0.62, 0.64, 0.65, 0.66, 0.68, 0.7, 0.75):
                    tr = PersonTracker(confirm_score=cs)
                    sweep[f"confirm_score {cs}"] = score(gt, replay(tr, frames), len(frames))
                for kind in FaceDescriptor.KINDS[1:]:
                    tr = PersonTracker(descriptor=FaceDescriptor(kind))
                    sweep[f"descriptor {kind}"] = score(gt, replay(tr, frames), len(frames))
                table(f"{name}: sweep", sweep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
