"""People, not boxes: the identities behind :func:`fervid.inference.video.stream`.

:class:`PersonTracker` (the default) turns face boxes into people in three steps, each of
which can be switched off to measure it (``benchmarks/identity.py``):

1. **Shot cuts** (:class:`CutDetector`): the Bhattacharyya distance between the colour
   histograms (HSV, 8x4x4 bins, on a :func:`thumbnail` of about 64x36) of consecutive frames. Above
   ``cut_threshold`` the shot has changed: every track ends there, so no box of the new
   shot can inherit an identity by position.
2. **Confirmation and hysteresis**: a new track is *tentative*; it becomes a person after
   ``min_hits`` detections in consecutive frames and is dropped at its first miss before
   that (a fist, a blurred background face found once). With ``confirm_score``, one of
   those detections must also score at least that (a blurred patch found a few frames in a
   row scores just above the detector's threshold; until one box clears it the track stays
   tentative). A confirmed person survives
   ``max_age`` missed frames and keeps its id when found again. Because a person's first
   frames are only known to be a person ``min_hits - 1`` frames later, the stream holds
   back that many frames (:attr:`PersonTracker.delay`): every id in the outputs has at
   least ``min_hits`` frames.
3. **Re-identification** (:class:`FaceDescriptor`): each face gets an appearance
   descriptor: a colour histogram of its box (skin, hair) and a HOG of the aligned grey
   crop the classifier sees (0.4-0.6 ms per face on a 2-core CPU; computed on a track's
   first ``min_hits`` frames and then every ``descriptor_every``-th). When a track is
   confirmed, its mean descriptor is compared (cosine distance) with every earlier track
   of each person seen before and not on screen now. The nearest person gives the track
   their id (the same person after a cut or an occlusion) only when clearly so: within
   ``reid_threshold`` and at most ``reid_ratio`` times the distance of the next nearest
   person; otherwise the track is a new person. A missed re-identification splits a person
   in two ids; a wrong one would merge two people, so the rule is strict.

Within a shot a track follows its box by position (IoU, then centre distance); a box
never takes over a track from another box in the same frame, and at a cut every track
ends, so an id cannot jump from one person to another by position across a cut.
Measured on the hand-annotated clip and a re-ordered version of it
(``benchmarks/identity.py``, BENCHMARKS.md "Identity through a video").

Ids count people in order of confirmation: 1, 2, ... The *main person* of a video is the
one with the most time on screen (:func:`fervid.inference.video.main_person`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fervid.detectors import FaceBox, iou
from fervid.errors import UserValueError
from fervid.inference.options import TRACKERS


def match_boxes(
    boxes: Sequence[FaceBox], track_boxes: Sequence[FaceBox], iou_threshold: float, max_distance: float
) -> dict[int, int]:
    """Greedy matching of ``boxes`` to ``track_boxes``: box index -> track index.

    Pairs overlapping by at least ``iou_threshold`` come first (highest IoU first), then pairs
    whose centres are within ``max_distance`` track box sides (and whose sizes differ by at
    most 1.7x), nearest first."""
    pairs = []
    for bi, b in enumerate(boxes):
        for ti, t in enumerate(track_boxes):
            o = iou(b, t)
            if o >= iou_threshold:
                pairs.append((o, bi, ti))
            else:
                side = math.sqrt(t.area) or 1.0
                d = math.hypot(b.x + b.w / 2 - t.x - t.w / 2, b.y + b.h / 2 - t.y - t.h / 2)
                size_ratio = math.sqrt(b.area / t.area) if t.area else 0.0
                if d <= max_distance * side and 0.6 <= size_ratio <= 1.7:
                    pairs.append((-d / side, bi, ti))  # below every IoU match
    assigned: dict[int, int] = {}
    used: set[int] = set()
    for _, bi, ti in sorted(pairs, key=lambda p: -p[0]):
        if bi in assigned or ti in used:
            continue
        assigned[bi] = ti
        used.add(ti)
    return assigned


def thumbnail(frame: np.ndarray, width: int = 64, height: int = 36) -> np.ndarray:
    """``frame`` shrunk by a whole factor to about ``width`` x ``height`` (at least that on both
    sides; a 640x360 frame gives 64x36, a 640x480 one 64x48), each pixel the mean of a block.
    A whole factor keeps OpenCV's area resize on its fast path: 0.27 ms for a 640x480 frame
    on one core, against 0.93 ms for the same frame to exactly 64x36."""
    import cv2

    h, w = frame.shape[:2]
    k = max(1, min(w // width, h // height))
    w2, h2 = w - w % k, h - h % k  # a few border pixels dropped so that k divides both sides
    return cv2.resize(frame[:h2, :w2], (w2 // k, h2 // k), interpolation=cv2.INTER_AREA)


class CutDetector:
    """Shot cuts from the frames themselves: the Bhattacharyya distance between the HSV
    colour histograms of consecutive frames (0: same colours, 1: disjoint).

    On ``short_hamilton_clip.mp4`` the three cuts score 0.36-0.48 and every other frame
    0.10 or less (``benchmarks/identity.py --cuts``); the default threshold, 0.25, sits
    between them. Costs ~0.3 ms per 640x360 or 640x480 frame (a :func:`thumbnail`)."""

    def __init__(self, threshold: float = 0.25):
        if not 0.0 < threshold < 1.0:
            raise UserValueError(f"cut_threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self._prev: np.ndarray | None = None
        self.last_distance = 0.0

    def distance(self, frame_bgr: np.ndarray) -> float:
        """The distance of this frame's histogram to the previous frame's (0 for the first)."""
        import cv2

        small = thumbnail(frame_bgr)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
        cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)
        d = 0.0 if self._prev is None else float(cv2.compareHist(self._prev, hist, cv2.HISTCMP_BHATTACHARYYA))
        self._prev = hist
        self.last_distance = d
        return d

    def is_cut(self, frame_bgr: np.ndarray) -> bool:
        """Whether a new shot starts at this frame."""
        return self.distance(frame_bgr) > self.threshold


class FaceDescriptor:
    """An appearance descriptor of one face, L2-normalised (compare with a dot product):
    the square root of the HSV colour histogram (8x4x4 bins) of the face box, and the HOG
    (8 px cells, 9 orientations) of the aligned grey crop, weighted ``colour_weight`` and
    ``1 - colour_weight`` (``kind`` ``"colour"`` or ``"hog"`` keeps one of them)."""

    KINDS = ("colour+hog", "colour", "hog")

    def __init__(self, kind: str = "colour+hog", colour_weight: float = 0.5):
        if kind not in self.KINDS:
            raise UserValueError(f"unknown descriptor {kind!r}; available: {', '.join(self.KINDS)}")
        self.kind = kind
        self.colour_weight = colour_weight
        self._hog: object | None = None
        self._hog_size = 0

    def _colour(self, frame_bgr: np.ndarray, box: FaceBox) -> np.ndarray:
        import cv2

        H, W = frame_bgr.shape[:2]
        x0, y0 = max(0, box.x), max(0, box.y)
        x1, y1 = min(W, box.x + box.w), min(H, box.y + box.h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return np.zeros(128, np.float32)
        patch = cv2.resize(frame_bgr[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        return np.sqrt(hist / max(float(hist.sum()), 1.0)).astype(np.float32)  # Hellinger: unit norm

    def _hog_of(self, crop: np.ndarray) -> np.ndarray:
        import cv2

        side = crop.shape[0] - crop.shape[0] % 8
        if self._hog is None or self._hog_size != side:
            self._hog = cv2.HOGDescriptor((side, side), (16, 16), (8, 8), (8, 8), 9)
            self._hog_size = side
        g = np.ascontiguousarray(crop[:side, :side], np.uint8)
        v = np.asarray(self._hog.compute(g), np.float32).ravel()  # type: ignore[attr-defined]
        return v / max(float(np.linalg.norm(v)), 1e-6)

    def compute(self, frame_bgr: np.ndarray, box: FaceBox, crop: np.ndarray) -> np.ndarray:
        """The descriptor of the face in ``box`` (``crop``: its aligned grey crop)."""
        parts = []
        if self.kind != "hog":
            parts.append(self._colour(frame_bgr, box) * math.sqrt(self.colour_weight if self.kind != "colour" else 1))
        if self.kind != "colour":
            parts.append(self._hog_of(crop) * math.sqrt(1 - self.colour_weight if self.kind != "hog" else 1))
        v = np.concatenate(parts)
        return v / max(float(np.linalg.norm(v)), 1e-6)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity of two descriptors."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - float(a @ b) / (na * nb)


@dataclass
class Track:
    """One track: a face followed from frame to frame within a shot.

    ``face_id`` is the person's id, ``None`` while the track is tentative (not yet a person)."""

    face_id: int | None
    box: FaceBox
    smoothed: np.ndarray
    missed: int = 0
    hits: int = 1
    descriptor: np.ndarray | None = None
    descriptors: int = 0
    best_score: float = -math.inf

    def add_descriptor(self, d: np.ndarray | None) -> None:
        if d is None:
            return
        self.descriptor = d.copy() if self.descriptor is None else self.descriptor + d
        self.descriptors += 1

    def mean_descriptor(self) -> np.ndarray | None:
        return None if self.descriptor is None else self.descriptor / max(self.descriptors, 1)


@dataclass
class _Person:
    descriptors: list[np.ndarray]  # one per track: how the person looked each time

    def distance(self, d: np.ndarray) -> float:
        return min(cosine_distance(d, x) for x in self.descriptors)


@dataclass
class TrackerStats:
    """What the tracker did (for benchmarks and reports)."""

    cuts: list[int] = field(default_factory=list)
    reidentified: int = 0


class PersonTracker:
    """Faces to people: shot cuts, confirmation, re-identification (see the module docstring).

    Args:
        iou_threshold, max_distance: position matching (:func:`match_boxes`).
        max_age: processed frames a confirmed person's track survives without a detection.
        min_hits: consecutive detections that make a track a person (1: every box at once).
        confirm_score: ... and one of them must score at least this, in the detector's
            score units (``None``: no such test). A tentative track whose boxes all score
            under it stays tentative while it is detected and never becomes a person.
            :class:`~fervid.inference.video.VideoStream` sets it from its detector's
            :attr:`~fervid.detectors.BaseDetector.confirm_score` (YuNet: 0.65) for the
            trackers it makes by name.
        cut_threshold: histogram distance of a shot cut (``None``: no cut detection).
        reid_threshold: cosine distance under which a new track is a person seen before
            (``None``: no re-identification).
        reid_ratio: ... and that person's distance must be at most this share of the next
            nearest person's (a clear winner; 1: no such test).
        descriptor: the appearance descriptor (``None``: the default one when
            re-identification is on).
        descriptor_every: after its first ``min_hits`` boxes, a track's appearance is
            sampled on every this many frames (what its person is remembered by).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_distance: float = 0.6,
        max_age: int = 15,
        min_hits: int = 4,
        confirm_score: float | None = None,
        cut_threshold: float | None = 0.25,
        reid_threshold: float | None = 0.15,
        reid_ratio: float = 0.5,
        descriptor: FaceDescriptor | None = None,
        descriptor_every: int = 5,
    ):
        if min_hits < 1:
            raise UserValueError(f"min_hits must be >= 1, got {min_hits}")
        if max_age < 0:
            raise UserValueError(f"max_age must be >= 0, got {max_age}")
        self.iou_threshold, self.max_distance = iou_threshold, max_distance
        self.max_age, self.min_hits = max_age, min_hits
        self.confirm_score = confirm_score
        self.cuts = None if cut_threshold is None else CutDetector(cut_threshold)
        self.reid_threshold, self.reid_ratio = reid_threshold, reid_ratio
        self.descriptor = descriptor or (FaceDescriptor() if reid_threshold is not None else None)
        self.descriptor_every = max(1, descriptor_every)
        self.tracks: list[Track] = []
        self.people: dict[int, _Person] = {}
        self.stats = TrackerStats()
        self._next_id = 1
        self._frame = 0

    @property
    def delay(self) -> int:
        """Frames a stream holds back before it knows whether a new face is a person."""
        return self.min_hits - 1

    def _end(self, t: Track) -> None:
        """A confirmed track ends: its appearance joins its person's."""
        d = t.mean_descriptor()
        if t.face_id is None or d is None:
            return
        self.people.setdefault(t.face_id, _Person([])).descriptors.append(d)

    def _confirm(self, t: Track) -> None:
        d = t.mean_descriptor()
        active = {u.face_id for u in self.tracks if u.face_id is not None}
        dists = sorted(
            (p.distance(d), pid)
            for pid, p in self.people.items()
            if pid not in active and d is not None and self.reid_threshold is not None
        )
        if dists and self._is_same(dists):
            t.face_id = dists[0][1]
            self.stats.reidentified += 1
        else:
            t.face_id = self._next_id
            self._next_id += 1

    def _clear(self, t: Track) -> bool:
        """Whether one of the track's boxes scored at least ``confirm_score``."""
        return self.confirm_score is None or t.best_score >= self.confirm_score

    def _wants_descriptor(self, t: Track) -> bool:
        """Describe a track's first ``min_hits`` boxes (the re-id decision), then a sample."""
        return self.descriptor is not None and (t.hits <= self.min_hits or t.hits % self.descriptor_every == 0)

    def _is_same(self, dists: list[tuple[float, int]]) -> bool:
        """Whether the nearest of the people at these (sorted) distances is the new track's
        person: near enough, and clearly nearer than the next person."""
        best = dists[0][0]
        second = dists[1][0] if len(dists) > 1 else 1.0
        return best <= (self.reid_threshold or 0.0) and best <= self.reid_ratio * second

    def update(
        self,
        boxes: Sequence[FaceBox],
        n_labels: int,
        frame: np.ndarray | None = None,
        crops: Sequence[np.ndarray] | None = None,
    ) -> list[Track]:
        """One processed frame: its boxes (and the BGR ``frame`` and aligned ``crops`` for cut
        detection and descriptors) -> one track per box, in box order (``face_id`` ``None``
        for tentative tracks)."""
        self._frame += 1
        if self.cuts is not None and frame is not None and self.cuts.is_cut(frame):
            self.stats.cuts.append(self._frame - 1)
            for t in self.tracks:
                self._end(t)
            self.tracks = []
        assigned = match_boxes(boxes, [t.box for t in self.tracks], self.iou_threshold, self.max_distance)
        used = set(assigned.values())
        kept = []
        for ti, t in enumerate(self.tracks):
            if ti in used:
                t.missed = 0
                t.hits += 1
            else:
                t.missed += 1
            if t.missed == 0 or (t.face_id is not None and t.missed <= self.max_age):
                kept.append(t)
            else:
                self._end(t)
        out = []
        for bi, b in enumerate(boxes):
            match = assigned.get(bi)
            t = self.tracks[match] if match is not None else Track(None, b, np.full(n_labels, np.nan))
            if match is None:
                kept.append(t)
            t.box = b
            t.best_score = max(t.best_score, b.score)
            if self._wants_descriptor(t) and frame is not None and crops is not None:
                t.add_descriptor(self.descriptor.compute(frame, b, crops[bi]))  # type: ignore[union-attr]
            out.append(t)
        self.tracks = kept
        for t in out:
            if t.face_id is None and t.hits >= self.min_hits and self._clear(t):
                self._confirm(t)
        return out


class IoUTracker:
    """Greedy IoU matching of boxes to tracks, with a centroid-distance fallback: fervid's
    tracker before :class:`~fervid.inference.tracking.PersonTracker` (kept to compare with it:
    it knows no shot cut, no appearance and gives every box an id at once).

    Args:
        iou_threshold: minimum IoU to match a box to a track.
        max_distance: fallback: a box whose centre is within this many track box sides
            of a track's centre matches it (faces moving fast between frames).
        max_age: processed frames a track survives without a match.
    """

    delay = 0
    """Frames a stream holds back before a face's id is known (none: ids are immediate)."""

    def __init__(self, iou_threshold: float = 0.3, max_distance: float = 0.6, max_age: int = 15):
        self.iou_threshold = iou_threshold
        self.max_distance = max_distance
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(
        self,
        boxes: Sequence[FaceBox],
        n_labels: int,
        frame: np.ndarray | None = None,
        crops: Sequence[np.ndarray] | None = None,
    ) -> list[Track]:
        """Assign each box a track (new ones for unmatched boxes); returns them in box order.
        Tracks not matched this time age by one and are dropped past ``max_age``
        (``frame`` and ``crops`` are not used)."""
        matched = match_boxes(boxes, [t.box for t in self.tracks], self.iou_threshold, self.max_distance)
        assigned = {bi: self.tracks[ti] for bi, ti in matched.items()}
        used = set(matched.values())
        for ti, t in enumerate(self.tracks):
            t.missed = 0 if ti in used else t.missed + 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_age]
        out = []
        for bi, b in enumerate(boxes):
            track = assigned.get(bi)
            if track is None:
                track = Track(self._next_id, b, np.full(n_labels, np.nan))
                self._next_id += 1
                self.tracks.append(track)
            track.box = b
            out.append(track)
        return out


Tracker = PersonTracker | IoUTracker
"""What :func:`fervid.inference.video.stream` tracks faces with."""


def make_tracker(tracker: str | Tracker | None = None, confirm_score: float | None = None) -> Tracker:
    """A fresh tracker from a name in :data:`TRACKERS` (``None``: ``"person"``, with
    ``confirm_score``: the detector's), or ``tracker`` itself (a tracker holds one video's
    state: give each stream its own)."""
    if tracker is None or tracker == "person":
        return PersonTracker(confirm_score=confirm_score)
    if tracker == "iou":
        return IoUTracker()
    if isinstance(tracker, (PersonTracker, IoUTracker)):
        return tracker
    raise UserValueError(f"unknown tracker {tracker!r}; available: {', '.join(TRACKERS)}")
