"""People, not boxes: shot cuts, confirmation, re-identification (fervid.inference.tracking),
the held-back frames of the stream, the per-person summary, and the identities on the real clip
against the hand-annotated ones (tests/data/hamilton_identities.csv)."""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fervid.cli import main
from fervid.detectors import FaceBox, iou
from fervid.errors import UserValueError
from fervid.inference.tracking import CutDetector, FaceDescriptor, IoUTracker, PersonTracker, make_tracker
from fervid.inference.video import Timeline, main_person, stream

GT_CSV = Path(__file__).parent / "data" / "hamilton_identities.csv"

# ------------------------------------------------------------------ no data needed


def _frame(value: int) -> np.ndarray:
    return np.full((120, 160, 3), value, np.uint8)


def test_confirmation_drops_blips_and_hysteresis_keeps_ids():
    tr = PersonTracker(min_hits=3, max_age=2, cut_threshold=None, reid_threshold=None)
    assert tr.delay == 2
    face, blip = FaceBox(10, 10, 50, 50), FaceBox(100, 60, 40, 40)
    a = tr.update([face, blip], 7)
    assert [t.face_id for t in a] == [None, None]  # both tentative
    b = tr.update([face], 7)  # the blip is gone: dropped at its first miss
    assert [t.face_id for t in b] == [None] and len(tr.tracks) == 1
    c = tr.update([face], 7)  # third consecutive detection: a person
    assert [t.face_id for t in c] == [1]
    for _ in range(2):  # missed twice (max_age): still the same person
        assert tr.update([], 7) == []
    assert [t.face_id for t in tr.update([FaceBox(14, 12, 50, 50)], 7)] == [1]
    for _ in range(3):  # missed three times: the track ends
        tr.update([], 7)
    assert tr.tracks == []
    # the blip seen again once more never becomes a person; ids only count people
    for _ in range(3):
        d = tr.update([blip], 7)
    assert [t.face_id for t in d] == [2]


def test_cut_ends_every_track():
    tr = PersonTracker(min_hits=1, reid_threshold=None)
    box = FaceBox(40, 30, 50, 50)
    ids = [tr.update([box], 7, frame=_frame(v))[0].face_id for v in (60, 62, 61, 200, 201)]
    # the same box after the colour change is a new person: position says nothing across a cut
    assert ids == [1, 1, 1, 2, 2] and tr.stats.cuts == [3]
    # without cut detection the box keeps the id through the change
    tr2 = PersonTracker(min_hits=1, reid_threshold=None, cut_threshold=None)
    assert [tr2.update([box], 7, frame=_frame(v))[0].face_id for v in (60, 200)] == [1, 1]


def test_cut_detector_distance_is_bhattacharyya_of_colour_histograms():
    cd = CutDetector()
    assert cd.distance(_frame(50)) == 0.0  # the first frame has nothing to compare with
    assert cd.distance(_frame(50)) == pytest.approx(0.0, abs=1e-6)  # same colours
    assert cd.distance(_frame(250)) == pytest.approx(1.0, abs=1e-6)  # disjoint histograms
    with pytest.raises(UserValueError, match="cut_threshold"):
        CutDetector(1.5)


def test_make_tracker_and_bad_settings():
    assert isinstance(make_tracker(None), PersonTracker) and isinstance(make_tracker("iou"), IoUTracker)
    tr = PersonTracker()
    assert make_tracker(tr) is tr
    with pytest.raises(UserValueError, match="unknown tracker 'kalman'; available: person, iou"):
        make_tracker("kalman")
    with pytest.raises(UserValueError, match="min_hits"):
        PersonTracker(min_hits=0)
    with pytest.raises(UserValueError, match="unknown descriptor"):
        FaceDescriptor("sift")


def test_main_person_rule():
    def face(fid: int, seconds: float, frames: int, first: float) -> dict:
        return {"face_id": fid, "seconds_on_screen": seconds, "frames": frames, "first_seen": first}

    assert main_person({}) is None
    faces = {"1": face(1, 2.0, 60, 0.0), "2": face(2, 5.0, 150, 1.0), "3": face(3, 5.0, 150, 0.5)}
    assert main_person(faces) == 3  # most time on screen; the tie goes to the one seen first


# ------------------------------------------------------------------ real data


def _photo_face(media: Path, name: str) -> np.ndarray:
    """A 320x240 BGR frame holding the photo's face (resized)."""
    import cv2

    img = cv2.imread(str(media / name))
    if img is None:
        pytest.skip(f"{name} not found")
    return cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def rec():
    from fervid.inference.recognizer import EmotionRecognizer

    return EmotionRecognizer("fast", device="cpu").load()


def test_reidentifies_a_person_after_a_cut_on_real_faces(rec, data_root):
    """Shot A (Obama), shot B (Lin-Manuel Miranda), shot A again: A's person gets the same id
    back after the cut, B's person another one."""
    media = data_root / "media"
    a, b = _photo_face(media, "obama-480p.jpg"), _photo_face(media, "lin-manuel-miranda.png")
    frames = [a] * 8 + [b] * 8 + [a] * 8
    got = [[f.face_id for f in fr.faces] for fr in stream(rec, frames, fps=10)]
    assert len(got) == 24  # the held-back frames come out at the end
    ids = [x[0] if x else None for x in got]
    assert None not in ids and len({ids[0], ids[8]}) == 2 and ids[16] == ids[0]


def _ground_truth() -> dict[int, list[tuple[str, FaceBox]]]:
    gt: dict[int, list[tuple[str, FaceBox]]] = collections.defaultdict(list)
    with GT_CSV.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            gt[int(r["frame"])].append((r["person"], FaceBox(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]))))
    return gt


def test_ground_truth_file_is_well_formed():
    rows = list(csv.DictReader(GT_CSV.open(newline="", encoding="utf-8")))
    assert rows and set(rows[0]) == {"frame", "person", "x", "y", "w", "h"}
    frames = {int(r["frame"]) for r in rows}
    assert min(frames) >= 0 and max(frames) <= 274
    assert all(int(r["h"]) >= 24 for r in rows)  # every face of at least 24 px
    keys = [(r["frame"], r["person"]) for r in rows]
    assert len(keys) == len(set(keys))  # a person once per frame
    # the audience shot's people appear nowhere before its cut
    after = {r["person"] for r in rows if int(r["frame"]) >= 211}
    before = {r["person"] for r in rows if int(r["frame"]) < 211}
    assert after and not after & before


def test_cli_video_ids_are_people_on_the_real_clip(clip, tmp_path, capsys):
    """The issue's check: no id both before and after the cut at frame 211, none under 3 frames,
    and no id on two annotated people (each id's faces match one person of the ground truth)."""
    csv_p, summ_p = tmp_path / "t.csv", tmp_path / "s.json"
    assert main(["video", str(clip), "--csv", str(csv_p), "--summary", str(summ_p), "--no-progress"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(csv_p.open()))
    frames_of: dict[int, list[int]] = collections.defaultdict(list)
    for r in rows:
        frames_of[int(r["face_id"])].append(int(r["frame"]))
    assert all(len(v) >= 3 for v in frames_of.values())
    spans_211 = [k for k, v in frames_of.items() if min(v) < 211 <= max(v)]
    assert spans_211 == []
    gt = _ground_truth()
    people: dict[int, set[str]] = collections.defaultdict(set)
    for r in rows:
        box = FaceBox(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]))
        for person, g in gt.get(int(r["frame"]), []):
            if iou(box, g) >= 0.5:
                people[int(r["face_id"])].add(person)
    assert all(len(p) == 1 for p in people.values()), people
    # the main person: the singer's id in the long shot 82-210 (the most time on screen)
    summary = json.loads(summ_p.read_text())
    main_id = summary["main_person"]
    assert people[main_id] == {"singer"} and min(frames_of[main_id]) <= 90 and max(frames_of[main_id]) >= 200
    s = summary["faces"][str(main_id)]
    assert s["name"] == f"person {main_id}" and s["frames"] == len(frames_of[main_id])
    assert s["seconds_on_screen"] == pytest.approx(s["frames"] / 29.97, abs=1e-2)
    assert f"main: person {main_id}" in out


def test_reidentifies_the_singer_across_reordered_shots(rec, clip):
    """The clip's shots re-ordered (singer, audience, singer again): the singer gets his id back
    after the audience shot, and nobody in the audience gets it."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < 235:
        ok, f = cap.read()
        assert ok
        frames.append(f)
    cap.release()
    order = frames[150:170] + frames[211:235] + frames[90:110]
    got = list(stream(rec, order, fps=29.97))
    assert len(got) == len(order)
    singer_first = {f.face_id for fr in got[:20] for f in fr.faces}
    audience = {f.face_id for fr in got[20:44] for f in fr.faces}
    singer_again = {f.face_id for fr in got[44:] for f in fr.faces}
    assert len(singer_first) == 1 and singer_again == singer_first and not audience & singer_first


def test_timeline_appearances_split_after_an_absence():
    from fervid.inference.schema import FaceResult
    from fervid.inference.video import FrameResult, TrackedFace

    labels = ("happy", "sad")
    probs = {"happy": 0.8, "sad": 0.2}
    face = TrackedFace(FaceResult((0, 0, 10, 10), 0.9, probs, "happy", 0.8, 0.72, ("happy",)), 1, dict(probs))
    tl = Timeline(labels)
    img = np.zeros((4, 4, 3), np.uint8)
    for t in (0.0, 0.1, 0.2, 2.0, 2.1):  # away 1.8 s (> AWAY_SECONDS) between 0.2 and 2.0
        tl.add(FrameResult(int(t * 10), t, 0.1, 4, 4, [face], img))
    s = tl.summary()
    assert s["faces"]["1"]["appearances"] == [[0.0, 0.2], [2.0, 2.1]]
    assert s["faces"]["1"]["seconds_on_screen"] == pytest.approx(0.5) and s["main_person"] == 1


def test_a_stream_closed_early_drains_the_frames_it_held_back(rec, data_root):
    face = _photo_face(data_root / "media", "obama-480p.jpg")
    s = stream(rec, [face] * 10, fps=10)
    first = [next(s) for _ in range(5)]
    s.close()
    rest = s.drain()
    assert s.tracker.delay == 3 and len(rest) == 3 and s.drain() == []
    # every processed frame comes out once, in order, the face named as the same person
    assert [f.index for f in first + rest] == list(range(8)) == list(range(s.frames_processed))
    assert {f.face_id for fr in first + rest for f in fr.faces} == {1}
