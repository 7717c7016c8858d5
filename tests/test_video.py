"""Video and camera streams: the stream generator, the tracker, ``fervid video`` on the real
clip, and every bad-stream case (truncated, empty, undecodable, missing camera, frame size
change). Speed is measured by ``fervid bench``, never asserted here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fervid.cli import main
from fervid.detectors import FaceBox, iou
from fervid.inference.video import IoUTracker, Timeline, VideoOpenError
from tolerances import U64, gamma

# ------------------------------------------------------------------ no data needed


def test_tracker_keeps_ids_through_motion_and_gaps():
    tr = IoUTracker(max_age=2)
    a = tr.update([FaceBox(10, 10, 50, 50), FaceBox(200, 10, 50, 50)], 7)
    assert [t.face_id for t in a] == [1, 2]
    # both move a little; the order of the boxes is swapped
    b = tr.update([FaceBox(206, 12, 50, 50), FaceBox(14, 11, 52, 52)], 7)
    assert [t.face_id for t in b] == [2, 1]
    # a fast move (no overlap left) still matches by centre distance
    c = tr.update([FaceBox(40, 12, 50, 50)], 7)
    assert [t.face_id for t in c] == [1]
    # face 2 was missed once; it comes back within max_age and keeps its id
    d = tr.update([FaceBox(42, 12, 50, 50), FaceBox(207, 12, 50, 50)], 7)
    assert [t.face_id for t in d] == [1, 2]
    # a face far away is new; a track unseen for more than max_age frames ends
    for _ in range(3):
        tr.update([FaceBox(42, 12, 50, 50)], 7)
    e = tr.update([FaceBox(42, 12, 50, 50), FaceBox(207, 12, 50, 50)], 7)
    assert [t.face_id for t in e] == [1, 3]


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    import cv2

    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    vw = cv2.VideoWriter(str(path), fourcc, fps, (frames[0].shape[1], frames[0].shape[0]))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def _grey_frames(n: int, w: int = 160, h: int = 120) -> list[np.ndarray]:
    return [np.full((h, w, 3), 40 + 5 * i, np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def rec():
    from fervid.inference.recognizer import EmotionRecognizer

    return EmotionRecognizer("fast", device="cpu").load()


def test_stream_frame_size_change_stops_cleanly(rec):
    frames = _grey_frames(4) + _grey_frames(3, 320, 240)
    s = rec.stream(frames)
    got = list(s)
    assert len(got) == 4 and [f.index for f in got] == [0, 1, 2, 3]
    assert s.stopped_early and "frame size changed from 160x120 to 320x240 at frame 4" in s.stop_reason


def test_stream_every_and_bad_arguments(rec, tmp_path):
    path = _write_video(tmp_path / "grey.avi", _grey_frames(10))
    s = rec.stream(path, every=3)
    got = list(s)
    assert [f.index for f in got] == [0, 3, 6, 9] and s.stop_reason == "end"
    assert got[1].time == pytest.approx(0.3) and got[1].duration == pytest.approx(0.3)
    for kw in ({"every": 0}, {"smooth": 0.0}, {"smooth": 1.5}, {"max_seconds": 0}, {"detect_every": 0}):
        with pytest.raises(ValueError):
            rec.stream(path, **kw)


def test_stream_open_errors(rec, tmp_path):
    with pytest.raises(FileNotFoundError):
        rec.stream(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoOpenError, match="empty file"):
        rec.stream(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoOpenError, match="cannot open"):
        rec.stream(junk)
    with pytest.raises(VideoOpenError, match="camera 99 could not be opened"):
        rec.stream(99)


# ------------------------------------------------------------------ CLI, bad streams (no data needed)


def test_cli_truncated_video_writes_what_was_processed(tmp_path, capsys):
    full = _write_video(tmp_path / "full.avi", _grey_frames(30))
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    csv_p, sum_p, plot_p = tmp_path / "t.csv", tmp_path / "s.json", tmp_path / "p.png"
    rc = main(
        [
            "video",
            str(cut),
            "--model",
            "fast",
            "--csv",
            str(csv_p),
            "--summary",
            str(sum_p),
            "--plot",
            str(plot_p),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "stopped early" in err and "truncated" in err and "Traceback" not in err
    summary = json.loads(sum_p.read_text())
    assert 0 < summary["frames_processed"] < 30 and "truncated" in summary["stop_reason"]
    # the result schema's table header (the same columns as the DataFrame and fervid batch)
    assert csv_p.read_text().startswith("source,kind,frame,time,width,height,face,face_id,x,y,w,h,score")
    assert plot_p.stat().st_size > 0


@pytest.mark.parametrize("case", ["empty", "junk", "camera", "missing"])
def test_cli_unopenable_sources_fail_in_one_line(tmp_path, capsys, case):
    src = {"empty": tmp_path / "e.mp4", "junk": tmp_path / "j.mp4", "camera": "99", "missing": tmp_path / "no.mp4"}[
        case
    ]
    if case == "empty":
        src.write_bytes(b"")
    if case == "junk":
        src.write_bytes(b"\x00not a video" * 300)
    rc = main(["video", str(src), "--model", "fast", "--csv", str(tmp_path / "t.csv"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    msg = [line for line in err if line.startswith("fervid video: error:")]
    assert len(msg) == 1 and "Traceback" not in "\n".join(err)
    assert {"empty": "empty file", "junk": "cannot open", "camera": "camera 99", "missing": "no such video"}[
        case
    ] in msg[0]


# ------------------------------------------------------------------ the real clip


def test_stream_on_real_clip_has_stable_ids_and_valid_probabilities(rec, clip):
    s = rec.stream(clip, max_seconds=1.0)
    frames = list(s)
    assert s.stop_reason == "max_seconds" and len(frames) == 30  # 29.97 fps: frames 0..29
    assert [f.index for f in frames] == list(range(30)) and frames[0].width == 640 and frames[0].height == 360
    n_faces = [len(f.faces) for f in frames]
    assert sum(n_faces) >= 25  # the opening shot: the singer and the pianist
    for f in frames:
        for face in f.faces:
            # both renormalised in float64 (K additions, K divisions) and summed here: gamma(3K)
            k = len(face.probabilities)
            assert abs(sum(face.probabilities.values()) - 1) <= gamma(3 * k, U64)
            assert abs(sum(face.smoothed.values()) - 1) <= gamma(3 * k, U64)
            assert face.label == max(face.smoothed, key=face.smoothed.get)
            x, y, w, h = face.box
            assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 360
        assert set(f.timings) == {"decode", "detect", "crop", "classify"}
    # stable ids: the singer (the face at the top right until the cut at frame 20) keeps one id
    singer = [face.face_id for f in frames[:20] for face in f.faces if face.box[0] > 500]
    assert len(singer) >= 18 and len(set(singer)) == 1
    # one id per face per frame
    for f in frames:
        assert len({face.face_id for face in f.faces}) == len(f.faces)
    # the default: YuNet with its video settings on every frame, landmarks on every face
    from fervid.detectors import YUNET_VIDEO

    assert (
        s.detector.max_side == YUNET_VIDEO["max_side"] and s.detector.score_threshold == YUNET_VIDEO["score_threshold"]
    )
    assert all(face.key_frame for f in frames for face in f.faces)
    for f in frames:
        for face in f.faces:
            assert face.landmarks is not None and len(face.landmarks) == 5
            x, y, w, h = face.box
            assert all(
                x - 0.1 * w <= px <= x + 1.1 * w and y - 0.1 * h <= py <= y + 1.1 * h for px, py in face.landmarks
            )
            assert face.to_dict()["landmarks"]["nose"] == [round(v, 2) for v in face.landmarks[2]]


def test_stream_tracking_between_key_frames_keeps_landmarks(rec, clip):
    """With detect_every > 1 the faces re-detected near their last box keep landmarks in
    frame coordinates (mapped back from the search window)."""
    every = list(rec.stream(clip, max_seconds=0.5))
    sparse = list(rec.stream(clip, max_seconds=0.5, detect_every=5))
    assert [f.index for f in sparse] == [f.index for f in every]
    n = 0
    for a, b in zip(every, sparse):
        for fb in b.faces:
            if fb.key_frame:
                continue
            fa = max(a.faces, key=lambda f: iou(FaceBox(*f.box), FaceBox(*fb.box)), default=None)
            if fa is None or iou(FaceBox(*fa.box), FaceBox(*fb.box)) < 0.5 or fb.box[2] < 30:
                continue  # (the 29 px pianist: YuNet's landmarks on a 58 px window are too rough)
            # the same face found in a window: landmarks within a few pixels of the full-frame ones
            assert np.abs(np.array(fa.landmarks) - np.array(fb.landmarks)).max() < 0.15 * fb.box[2]
            n += 1
    assert n >= 5


def test_timeline_summary_shares_sum_to_one(rec, clip):
    tl = Timeline(rec.labels)
    for fr in rec.stream(clip, max_seconds=1.0, every=2):
        tl.add(fr)
    summ = tl.summary()
    assert summ["frames_processed"] == 15 and summ["faces"]
    for face in summ["faces"].values():
        # shares written with 4 decimals: each within 0.5e-4, K of them (and a float64 rounding each)
        assert abs(sum(face["emotion_share"].values()) - 1) <= len(face["emotion_share"]) * (0.5e-4 + U64)
        assert face["dominant_emotion"] == max(face["emotion_share"], key=face["emotion_share"].get)
        assert face["seconds_on_screen"] == pytest.approx(face["frames"] * 2 / 29.97, abs=1e-2)


def test_cli_video_on_real_clip(clip, tmp_path, capsys):
    import cv2

    out = {k: tmp_path / v for k, v in {"csv": "t.csv", "summary": "s.json", "plot": "p.png", "out": "a.mp4"}.items()}
    rc = main(
        [
            "video",
            str(clip),
            "--max-seconds",
            "2",
            "--no-progress",
            *[x for k, p in out.items() for x in (f"--{k}", str(p))],
        ]
    )
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out["csv"].open()))
    summary = json.loads(out["summary"].read_text())
    assert summary["frames_processed"] == 60 and summary["stop_reason"] == "max_seconds"
    # one row per face per processed frame, each (frame, face id) once
    assert len(rows) == sum(f["frames"] for f in summary["faces"].values()) >= 30  # faces: the first ~0.7 s
    assert len({(r["frame"], r["face_id"]) for r in rows}) == len(rows)
    labels = summary["labels"]
    for r in rows[:20]:
        assert float(r["right_eye_x"]) < float(r["left_eye_x"])  # landmarks of the default detector
        assert int(r["key_frame"]) == 1  # detection on every frame
        # the CSV writes probabilities with 4 decimals: each within 0.5e-4, K of them
        assert abs(sum(float(r[f"p_{lab}"]) for lab in labels) - 1) <= len(labels) * (0.5e-4 + U64)
        assert abs(sum(float(r[f"smoothed_{lab}"]) for lab in labels) - 1) <= len(labels) * (0.5e-4 + U64)
        assert r["label"] in labels
    for face in summary["faces"].values():
        assert abs(sum(face["emotion_share"].values()) - 1) <= len(labels) * (0.5e-4 + U64)  # 4 decimals
    # ids are stable: each face keeps its id while on screen (after the cut at frame 20 the
    # performer and blurred audience faces fill the rest of the 60 frames), so nearly every row
    # belongs to a long track rather than to fragments
    tracks = sorted((f["frames"] for f in summary["faces"].values()), reverse=True)
    assert tracks[0] >= 35 and len(tracks) <= 10
    assert sum(n for n in tracks if n >= 10) >= 0.85 * len(rows)
    from PIL import Image

    assert Image.open(out["plot"]).size[0] >= 600
    cap = cv2.VideoCapture(str(out["out"]))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    cap.release()


def test_cli_interrupt_and_headless_show(tmp_path, capsys, monkeypatch):
    """Ctrl-C mid-stream: exit 130 with the CSV and summary holding every processed frame;
    --show without a display falls back to headless."""
    import fervid.inference.video as video

    path = _write_video(tmp_path / "grey.avi", _grey_frames(20))
    real_add = video.Timeline.add
    calls = {"n": 0}

    def add(self, result):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        real_add(self, result)

    monkeypatch.setattr(video.Timeline, "add", add)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    sum_p = tmp_path / "s.json"
    rc = main(
        [
            "video",
            str(path),
            "--model",
            "fast",
            "--summary",
            str(sum_p),
            "--csv",
            str(tmp_path / "t.csv"),
            "--show",
            "--every",
            "2",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 130 and "interrupted" in err and "headless" in err
    summary = json.loads(sum_p.read_text())
    # the 5 frames added before Ctrl-C, and the 3 processed ones the tracker still held back
    # (PersonTracker.delay: drained into the outputs, not lost)
    assert summary["frames_processed"] == 5 + 3 and summary["stop_reason"] == "interrupted"
