"""Emotions over time in videos and camera streams: a frame generator, a face tracker, a
timeline (CSV) and a per-face summary.

>>> from fervid import EmotionRecognizer
>>> rec = EmotionRecognizer(model="fast")
>>> for frame in rec.stream("clip.mp4", every=1, smooth=0.4, max_seconds=10):
...     for face in frame.faces:
...         print(frame.time, face.face_id, face.label, face.box)

:func:`stream` (behind :meth:`fervid.inference.recognizer.EmotionRecognizer.stream`) yields one
:class:`FrameResult` per processed frame and never draws or opens a window: drawing,
video writing and live display belong to the caller (``fervid video`` does them).

Speed. The default detector, YuNet, costs a few ms on a whole 640x480 frame (it runs on
the frame shrunk to 320 px, :data:`fervid.detectors.YUNET_VIDEO`; see
:attr:`~fervid.inference.recognizer.EmotionRecognizer.video_detector`), so by default
(``detect_every=1``) every frame gets a full detection with landmarks, and every crop is
aligned on them. For slow detectors (Haar: 50-200 ms per 640x480 frame on a 2-core CPU,
more than the 33 ms a 30 fps stream allows) pass ``detect_every=K``: the full-frame
detector then runs only on every K-th processed frame (*key frames*; K = 5 shows a new
face within 1/6 s at 30 fps) and, in between, re-detects each tracked face inside a small
window around its last box; a face not re-detected keeps its last box until the next key
frame. Measurements: ``benchmarks/realtime.md``, ``benchmarks/video_yunet.md``.

Tracking. Faces get person ids (1, 2, ...) from
:class:`~fervid.inference.tracking.PersonTracker`: tracks end at shot cuts (colour
histograms), a track becomes a person after ``min_hits`` (4) consecutive detections and
survives ``max_age`` missed frames, and a new person is matched by appearance (a colour
histogram and a HOG of the aligned face) against the people seen before, so the same person
keeps one id across cuts and absences. The stream therefore yields each frame
``min_hits - 1`` frames late (every id in its output has at least ``min_hits`` frames).
``tracker="iou"`` gives the old greedy IoU tracker (an id per box at once, no cuts, no
appearance). Probabilities are smoothed per track with an exponential moving average
(``smooth`` = weight of the newest frame; 1 = no smoothing); ``label`` is the smoothed
top emotion, ``raw_label`` the frame's own. Each face is a
:class:`~fervid.inference.schema.TrackedFace`: the frame's photo face (``face``: the same
pipeline, crop and fields as a photo, :mod:`fervid.inference.pipeline`) plus ``face_id``,
``smoothed`` and ``key_frame``; its ``ambiguity``, ``top2_margin``, ``ambiguous`` and
``labels_above`` describe the frame's own probabilities.

Bad streams. A missing, empty or undecodable file, or a camera that does not open,
raises :class:`VideoOpenError` (a :class:`ValueError`) before any frame. A stream that
ends early (truncated file, decoding error, frame size change, camera lost) stops
cleanly: iteration ends and :attr:`VideoStream.stop_reason` says why, so the caller can
still write out everything processed so far.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fervid.data.imagefile import image_extensions, verify_image
from fervid.data.plots import subplots
from fervid.detectors import FaceBox, capabilities, iou, non_max_suppression, roi_scale, sort_reading_order
from fervid.errors import FervidError, UserFileNotFoundError, UserValueError
from fervid.inference.draw import color_for
from fervid.inference.options import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTH
from fervid.inference.pipeline import FacePipeline
from fervid.inference.schema import SCHEMA_VERSION
from fervid.inference.schema import FrameResult as FrameResult  # re-exported: they lived here
from fervid.inference.schema import TrackedFace as TrackedFace
from fervid.inference.schema import csv_header as csv_header
from fervid.inference.schema import csv_rows as csv_rows
from fervid.inference.tracking import IoUTracker as IoUTracker  # re-exported: it lived here
from fervid.inference.tracking import Tracker, make_tracker
from fervid.safety import atomic_path, check_input_file, check_input_path, write_json_atomic

VideoSource = str | os.PathLike | int | Iterable[np.ndarray]
"""A video file path, a camera index (``0`` or ``"0"``), or an iterable of BGR frames."""

STAGES = ("decode", "detect", "crop", "classify")
"""Stages timed by :func:`stream` (seconds per frame in :attr:`FrameResult.timings`)."""


class VideoOpenError(FervidError, ValueError):
    """A video source could not be opened or yields no frame (the message says which and why)."""


class FrameRecognizer(Protocol):
    """What a stream needs of a recognizer
    (:class:`~fervid.inference.recognizer.EmotionRecognizer` fits): this keeps video free of
    the recognizer class, which depends on video for :meth:`stream`, not the other way round."""

    def load(self) -> object:
        """Load the model and detector (a bad one fails before the source is opened)."""
        ...

    @property
    def video_pipeline(self) -> FacePipeline:
        """The face pipeline with the detector's video settings."""
        ...


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source before reading it (0 / ``None`` where unknown)."""

    name: str
    is_camera: bool
    fps: float
    frame_count: int
    width: int
    height: int


# --------------------------------------------------------------------------- sources


def _parse_camera(source: Any) -> int | None:
    if isinstance(source, bool):
        return None
    if isinstance(source, int):
        return source
    if isinstance(source, str) and source.strip().isdigit():
        return int(source.strip())
    return None


class _CaptureReader:
    """cv2.VideoCapture over a file or camera; ``read()`` -> frame or None."""

    def __init__(self, source: str | os.PathLike | int):
        import cv2

        cam = _parse_camera(source)
        if cam is not None and cam < 0:  # OpenCV can crash on a negative index: refuse it first
            raise UserValueError(f"camera index must be 0 or more, got {cam}")
        if cam is None:
            check_input_path(source, "video file")  # type: ignore[arg-type]  # a URL, a link loop... said as such
            path = Path(source)  # type: ignore[arg-type]
            if not path.exists():
                raise UserFileNotFoundError(f"no such video file: {path}")
            # a FIFO would block in OpenCV forever; V4L2 cameras are character devices (/dev/video0)
            check_input_file(path, "video", allow_char_device=True)
            if path.is_dir():
                raise VideoOpenError(f"{path} is a folder, not a video file")
            device = not path.is_file()  # a character device: a camera (/dev/video0) or not (/dev/zero)
            if not device and path.stat().st_size == 0:
                raise VideoOpenError(f"{path}: empty file (0 bytes), not a video")
            self.cap = cv2.VideoCapture(str(path))
            name = str(path)
            if not self.cap.isOpened():
                if device:
                    raise VideoOpenError(f"{path}: is a character device that OpenCV cannot open as a camera")
                raise VideoOpenError(f"{path}: cannot open as a video (unreadable, truncated or unsupported format)")
        else:
            self.cap = cv2.VideoCapture(cam)
            name = f"camera {cam}"
            if not self.cap.isOpened():
                self.cap.release()
                raise VideoOpenError(f"camera {cam} could not be opened (no such device, busy, or no permission)")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cam is None else 0
        # A file's frame rate is its own (high-speed footage runs at 1000 fps and more): its
        # timestamps come from it, never from the wall clock. Cameras report odd values.
        top = 1000.0 if cam is not None else 1e6
        self.info = SourceInfo(
            name,
            cam is not None,
            fps if math.isfinite(fps) and 0 < fps < top else 0.0,
            max(count, 0),
            int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )

    def grab(self) -> bool:
        return bool(self.cap.grab())

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        return frame if ok and frame is not None and frame.size else None

    def timestamp(self) -> float | None:
        """The container's time of the frame just read, in seconds (files only; ``None``
        where it has none)."""
        import cv2

        if self.info.is_camera:
            return None
        ms = float(self.cap.get(cv2.CAP_PROP_POS_MSEC))
        return ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None

    def release(self) -> None:
        self.cap.release()


class _ArrayReader:
    """An iterable of frames (``H x W x 3`` BGR or ``H x W`` grey uint8 arrays)."""

    def __init__(self, frames: Iterable[np.ndarray], fps: float = 0.0):
        self._it = iter(frames)
        n = len(frames) if hasattr(frames, "__len__") else 0  # type: ignore[arg-type]
        self.info = SourceInfo("<frames>", False, fps, n, 0, 0)

    def grab(self) -> bool:
        return self.read() is not None

    def read(self) -> np.ndarray | None:
        f = next(self._it, None)
        if f is None:
            return None
        f = np.asarray(f)
        if f.ndim == 2:
            f = np.repeat(f[:, :, None], 3, axis=2)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise VideoOpenError(f"frames must be H x W x 3 (BGR) or H x W uint8 arrays, got {f.dtype} {f.shape}")
        return f

    def timestamp(self) -> float | None:
        return None

    def release(self) -> None:
        pass


def open_source(source: VideoSource, fps: float = 0.0) -> _CaptureReader | _ArrayReader:
    """A frame reader for a file path, camera index or iterable of frames (raises
    :class:`VideoOpenError` / ``FileNotFoundError`` when it cannot be opened)."""
    if isinstance(source, (str, os.PathLike, int)) and not isinstance(source, bool):
        return _CaptureReader(source)
    if isinstance(source, np.ndarray) and source.ndim in (3, 4) and source.dtype == np.uint8:
        return _ArrayReader(list(source) if source.ndim == 4 else [source], fps)
    if isinstance(source, Iterable):
        return _ArrayReader(source, fps)
    raise TypeError(f"unsupported video source {type(source).__name__}: give a path, a camera index or frames")


# --------------------------------------------------------------------------- the stream


def _expand(box: FaceBox, W: int, H: int, grow: float) -> tuple[int, int, int, int]:
    side = max(box.w, box.h)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    half = side * (0.5 + grow)
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(W, int(math.ceil(cx + half))), min(H, int(math.ceil(cy + half)))
    return x0, y0, x1, y1


class VideoStream(Iterator[FrameResult]):
    """The iterator :func:`stream` returns: yields :class:`FrameResult` objects, then
    sets :attr:`stop_reason`. Use it in a ``with`` block (or call :meth:`close`) to release
    a camera early.

    Attributes:
        info: :class:`SourceInfo` of the source.
        frames_read: frames decoded or skipped so far.
        frames_processed: frames processed so far (the frames yielded trail them by the
            tracker's :attr:`~fervid.inference.tracking.PersonTracker.delay`).
        stop_reason: ``None`` while running, then ``"end"`` (the source ended normally),
            ``"max_seconds"``, ``"closed"`` or a sentence describing an early stop (truncated
            file, decoding error, frame size change, camera lost).
    """

    def __init__(
        self,
        recognizer: FrameRecognizer,
        source: VideoSource,
        *,
        every: int = 1,
        smooth: float = DEFAULT_SMOOTH,
        max_seconds: float | None = None,
        detect_every: int = DEFAULT_DETECT_EVERY,
        search_margin: float = 0.5,
        fps: float = 0.0,
        tracker: str | Tracker | None = None,
    ):
        if every < 1:
            raise UserValueError(f"every must be >= 1, got {every}")
        if detect_every < 1:
            raise UserValueError(f"detect_every must be >= 1, got {detect_every}")
        if not 0.0 < smooth <= 1.0:
            raise UserValueError(f"smooth must be in (0, 1] (1: no smoothing), got {smooth}")
        if max_seconds is not None and max_seconds <= 0:
            raise UserValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.recognizer = recognizer
        self.every, self.smooth, self.max_seconds = every, smooth, max_seconds
        self.detect_every, self.search_margin = detect_every, search_margin
        make_tracker(tracker)  # a bad tracker name fails before the model loads
        recognizer.load()  # a bad model or detector fails here, before the source is opened
        self.pipeline = recognizer.video_pipeline
        self.detector = self.pipeline.detector
        caps = capabilities(self.detector)
        self.tracker: Tracker = make_tracker(tracker, caps.confirm_score)
        # a whole-image detector ("skip") has no face to follow between key frames
        self._whole_image = caps.whole_image
        self._reader = open_source(source, fps)
        self.info: SourceInfo = self._reader.info
        self.frames_read = 0
        self.frames_processed = 0
        self.stop_reason: str | None = None
        self._held: deque[tuple[list[Any], FrameResult]] = deque()
        self._gen = self._hold(self._run())

    def __iter__(self) -> VideoStream:
        return self

    def __next__(self) -> FrameResult:
        return next(self._gen)

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the source."""
        if self.stop_reason is None:
            self.stop_reason = "closed"
        self._gen.close()
        self._reader.release()

    @property
    def stopped_early(self) -> bool:
        """Whether the stream ended for another reason than its end, ``max_seconds`` or :meth:`close`."""
        return self.stop_reason not in (None, "end", "max_seconds", "closed")

    # ---- internals
    def _detect(self, rgb: np.ndarray, key: bool) -> tuple[list[FaceBox], bool]:
        import cv2

        det = self.detector
        if key or self._whole_image:
            return det.detect(rgb), True
        H, W = rgb.shape[:2]
        found: list[FaceBox] = []
        for t in self.tracker.tracks:
            if t.missed:
                continue
            x0, y0, x1, y1 = _expand(t.box, W, H, self.search_margin)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            roi = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            # the detector's own choice (Haar: faces near its smallest scale scan fastest)
            f = roi_scale(det, max(t.box.w, t.box.h))
            if f < 1.0:
                roi = cv2.resize(
                    roi,
                    (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                    interpolation=cv2.INTER_AREA,
                )
            boxes = [b.moved(x0, y0, 1 / f) for b in det.detect(np.ascontiguousarray(roi))]
            # not re-detected (a Haar miss on a turned or blurred face): keep the last box
            # until the next key frame, where the full-frame detection decides
            found.append(max(boxes, key=lambda b: (iou(b, t.box), b.score)) if boxes else t.box)
        return sort_reading_order(non_max_suppression(found)), False

    def _hold(self, frames: Iterator[tuple[list[Any], FrameResult]]) -> Generator[FrameResult, None, None]:
        """Hold back :attr:`tracker.delay <fervid.inference.tracking.PersonTracker.delay>`
        frames, then give each face its person's id, or drop it if its track never became a
        person (the held frames are released when the source ends, or by :meth:`drain`)."""
        held, delay = self._held, self.tracker.delay
        for item in frames:
            held.append(item)
            if len(held) > delay:
                yield self._release(*held.popleft())
        while held:
            yield self._release(*held.popleft())

    @staticmethod
    def _release(tracks: list[Any], fr: FrameResult) -> FrameResult:
        faces = [replace(f, face_id=t.face_id) for f, t in zip(fr.faces, tracks) if t.face_id is not None]
        return replace(fr, faces=sorted(faces, key=lambda f: f.face_id))

    def drain(self) -> list[FrameResult]:
        """After :meth:`close`: the frames processed but still held back (at most the tracker's
        ``delay``), their faces named as far as the tracker knows (a face not yet confirmed as a
        person is left out), so a stream stopped early loses no processed frame."""
        out = [self._release(*item) for item in self._held]
        self._held.clear()
        return out

    def _read(self) -> np.ndarray | None:
        """The next frame to process (skipping ``every - 1`` frames cheaply: grabbed, not
        converted), or ``None`` with :attr:`stop_reason` set when the stream ends."""
        reader = self._reader
        for _ in range(self.every - 1 if self.frames_processed else 0):
            if not reader.grab():
                self._finish_read_failure()
                return None
            self.frames_read += 1
        try:
            frame = reader.read()
        except VideoOpenError:
            raise
        except Exception as e:  # noqa: BLE001 - a decoder error ends the stream cleanly
            self.stop_reason = f"decoding error at frame {self.frames_read}: {e}"
            return None
        if frame is None:
            if self.frames_read == 0:
                raise VideoOpenError(f"{self.info.name}: no frame could be decoded (corrupt or empty video)")
            self._finish_read_failure()
            return None
        self.frames_read += 1
        return frame

    def _clock(self, index: int, t_start: float, prev_t: float) -> tuple[float, float]:
        """``(time, duration)`` of the frame just read: from the frame rate (files, or frames
        given with their rate), else the container's timestamps, else the wall clock."""
        fps, info = self.info.fps, self.info
        if fps > 0 and not info.is_camera:
            return index / fps, self.every / fps
        stamp = self._reader.timestamp()
        now = stamp if stamp is not None else time.perf_counter() - t_start
        return now, (now - prev_t if self.frames_processed else 0.0)

    def _faces(self, frame: np.ndarray, key: bool, t0: float) -> tuple[list[Any], list[TrackedFace], dict[str, float]]:
        """The tracks and faces of one BGR frame, and the seconds each of :data:`STAGES` took
        since ``t0`` (the face pipeline's grey, crop and classification, the same as a photo's;
        detection on key frames or near the tracks' boxes, :meth:`_detect`)."""
        pipe = self.pipeline
        gray = pipe.gray(frame, "bgr")
        t1 = time.perf_counter()
        # detectors take RGB (a view: YuNet flips it back to the frame's BGR for free)
        boxes, key = self._detect(frame[:, :, ::-1], key)
        t2 = time.perf_counter()
        crops = pipe.crop(gray, boxes)
        t3 = time.perf_counter()
        results = pipe.classify(pipe.stack(crops), boxes)
        tracks = self.tracker.update(boxes, len(pipe.labels), frame=frame, crops=crops)
        faces = []
        for r, t in zip(results, tracks):
            p = np.array(list(r.probabilities.values()))  # the float64 row: exact
            t.smoothed = p.copy() if np.isnan(t.smoothed).any() else self.smooth * p + (1 - self.smooth) * t.smoothed
            s = t.smoothed / t.smoothed.sum()
            smoothed = {lab: float(v) for lab, v in zip(pipe.labels, s)}
            # a tentative track has no id yet (0): _hold names it or drops it
            faces.append(TrackedFace(r, t.face_id or 0, smoothed, key))
        t4 = time.perf_counter()
        return tracks, faces, {"decode": t1 - t0, "detect": t2 - t1, "crop": t3 - t2, "classify": t4 - t3}

    def _run(self) -> Generator[tuple[list[Any], FrameResult], None, None]:
        t_start = time.perf_counter()
        shape: tuple[int, ...] | None = None
        prev_t = 0.0
        try:
            while True:
                t0 = time.perf_counter()
                frame = self._read()
                if frame is None:
                    return
                index = self.frames_read - 1
                now, duration = self._clock(index, t_start, prev_t)
                if self.max_seconds is not None and now >= self.max_seconds:
                    self.stop_reason = "max_seconds"
                    return
                if shape is None:
                    shape = frame.shape
                elif frame.shape != shape:
                    self.stop_reason = (
                        f"frame size changed from {shape[1]}x{shape[0]} to "
                        f"{frame.shape[1]}x{frame.shape[0]} at frame {index}"
                    )
                    return
                key = self.frames_processed % self.detect_every == 0
                tracks, faces, timings = self._faces(frame, key, t0)
                self.frames_processed += 1
                prev_t = now
                h, w = frame.shape[:2]
                yield tracks, FrameResult(index, float(now), float(duration), w, h, faces, frame, timings)
        finally:
            self._reader.release()

    def _finish_read_failure(self) -> None:
        n, info = self.frames_read, self.info
        if info.is_camera:
            self.stop_reason = f"camera stopped delivering frames after {n} frames"
        elif info.frame_count and n < info.frame_count - 1:
            self.stop_reason = (
                f"{info.name}: stream ended at frame {n} of {info.frame_count} (truncated or corrupt file)"
            )
        else:
            self.stop_reason = "end"


def stream(
    recognizer: FrameRecognizer,
    source: VideoSource,
    *,
    every: int = 1,
    smooth: float = DEFAULT_SMOOTH,
    max_seconds: float | None = None,
    detect_every: int = DEFAULT_DETECT_EVERY,
    search_margin: float = 0.5,
    fps: float = 0.0,
    tracker: str | Tracker | None = None,
) -> VideoStream:
    """Faces, ids and emotions frame by frame (see the module docstring).

    Args:
        recognizer: supplies the model, backend and detector.
        source: a video file, a camera index (``0``, ``"0"``) or an iterable of BGR frames.
        every: process every N-th frame (the others are skipped without classification).
        smooth: weight of the newest frame in the exponential moving average of each
            face's probabilities (1: no smoothing).
        max_seconds: stop after this much video time (files) or wall time (cameras).
        detect_every: run the full-frame detector on every N-th processed frame; re-detect
            known faces near their last box in between (1: full detection on every frame).
        search_margin: the re-detection window extends this share of the face's side
            beyond its box on every side.
        fps: frame rate of an iterable of frames (for their times; 0: wall-clock time).
        tracker: ``"person"`` (default: :class:`~fervid.inference.tracking.PersonTracker`),
            ``"iou"`` or a tracker object (one per stream).

    Raises:
        FileNotFoundError: no such file.
        VideoOpenError: empty or undecodable file, camera that does not open.
    """
    return VideoStream(
        recognizer,
        source,
        every=every,
        smooth=smooth,
        max_seconds=max_seconds,
        detect_every=detect_every,
        search_margin=search_margin,
        fps=fps,
        tracker=tracker,
    )


# --------------------------------------------------------------------------- timeline


AWAY_SECONDS = 1.0
"""A person off screen for longer than this starts a new appearance in the summary, and a
break in their line in the plot."""


def person_name(face_id: int) -> str:
    """How outputs name a person: ``"person 3"``."""
    return f"person {face_id}"


def main_person(faces: dict[str, dict[str, Any]]) -> int | None:
    """The main person of a video: the id with the most time on screen (ties: more frames,
    then the one seen first); ``None`` when nobody was seen. ``faces`` is a summary's
    ``faces`` (:meth:`Timeline.summary`): what a per-person view of a video should follow."""
    if not faces:
        return None
    best = max(faces.values(), key=lambda f: (f["seconds_on_screen"], f["frames"], -f["first_seen"], -f["face_id"]))
    return int(best["face_id"])


class Timeline:
    """Accumulates per-person statistics over a stream and, optionally, writes the CSV
    timeline as it goes (flushed every frame, so an interrupted run loses nothing). The CSV's
    columns are the result schema's table (:func:`fervid.inference.schema.columns`; ``source``
    holds ``source``), the same as the DataFrame's and ``fervid batch``'s.

    >>> with Timeline(labels, csv_path="t.csv") as tl:
    ...     for fr in rec.stream("clip.mp4"):
    ...         tl.add(fr)
    >>> tl.summary()
    """

    def __init__(
        self,
        labels: Sequence[str],
        csv_path: str | os.PathLike | None = None,
        keep_series: bool = True,
        source: str = "",
    ):
        self.labels = tuple(labels)
        self.source = source  # the CSV's ``source`` column
        self.frames = 0
        self.seconds = 0.0
        self._faces: dict[int, dict[str, Any]] = {}
        self.series: dict[int, list[tuple[float, np.ndarray]]] = {} if keep_series else {}
        self._keep_series = keep_series
        self._file = None
        self._writer = None
        if csv_path is not None:
            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(csv_path, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(csv_header(self.labels))
            self._file.flush()

    def __enter__(self) -> Timeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        dur = result.duration if result.duration > 0 else 0.0
        self.seconds = max(self.seconds, result.time + dur)
        for f in result.faces:
            st = self._faces.setdefault(
                f.face_id,
                {
                    "first": result.time,
                    "last": result.time,
                    "frames": 0,
                    "seconds": 0.0,
                    "label_seconds": dict.fromkeys(self.labels, 0.0),
                    "label_frames": dict.fromkeys(self.labels, 0),
                    "prob_sum": np.zeros(len(self.labels)),
                    "appearances": [],
                },
            )
            apps = st["appearances"]
            if apps and result.time - apps[-1][1] <= AWAY_SECONDS:
                apps[-1][1] = result.time
            else:
                apps.append([result.time, result.time])
            st["last"] = result.time
            st["frames"] += 1
            st["seconds"] += dur
            st["label_seconds"][f.label] += dur
            st["label_frames"][f.label] += 1
            st["prob_sum"] += np.array([f.smoothed[lab] for lab in self.labels])
            if self._keep_series:
                self.series.setdefault(f.face_id, []).append(
                    (result.time, np.array([f.smoothed[lab] for lab in self.labels]))
                )
        if self._writer is not None:
            self._writer.writerows(csv_rows(result, self.labels, self.source))
            assert self._file is not None
            self._file.flush()

    def summary(self) -> dict[str, Any]:
        """Per person (``faces``, keyed by the person's id): first/last time, frames, time on
        screen, the appearances (``[start, end]`` times, a new one after more than
        :data:`AWAY_SECONDS` off screen), the share of the time on screen per (smoothed)
        emotion (sums to 1), mean probabilities and the dominant emotion; and the
        ``main_person`` (:func:`main_person`)."""
        faces = {}
        for fid, st in sorted(self._faces.items()):
            total = st["seconds"]
            if total > 0:
                share = {lab: st["label_seconds"][lab] / total for lab in self.labels}
            else:  # durations unknown (single frame, frame iterables without fps): count frames
                share = {lab: st["label_frames"][lab] / st["frames"] for lab in self.labels}
            mean = st["prob_sum"] / st["frames"]
            faces[str(fid)] = {
                "face_id": fid,
                "name": person_name(fid),
                "first_seen": round(st["first"], 3),
                "last_seen": round(st["last"], 3),
                "frames": st["frames"],
                "seconds_on_screen": round(total, 3),
                "appearances": [[round(a, 3), round(b, 3)] for a, b in st["appearances"]],
                "emotion_share": {k: round(v, 4) for k, v in share.items()},
                "mean_probabilities": {lab: round(float(v), 4) for lab, v in zip(self.labels, mean)},
                "dominant_emotion": max(share, key=lambda k: share[k]),
            }
        return {
            "schema_version": SCHEMA_VERSION,
            "frames_processed": self.frames,
            "seconds": round(self.seconds, 3),
            "labels": list(self.labels),
            "main_person": main_person(faces),
            "faces": faces,
        }


def write_summary(path: str | os.PathLike, summary: dict[str, Any]) -> None:
    """Write ``summary`` as strict JSON, atomically (:func:`fervid.safety.write_json_atomic`:
    a crash or a full disk never leaves half a file or a temporary one)."""
    write_json_atomic(path, summary)


PLOT_METADATA_SUFFIXES = (".png", ".pdf", ".svg", ".ps", ".eps")
"""Plot formats whose files carry a title in their metadata (matplotlib's ``metadata``)."""


def plotted_people(timeline: Timeline, max_faces: int = 6) -> list[int]:
    """The people :func:`plot_timeline` draws, in panel order (by id): the ``max_faces`` longest
    on screen, ranked as :func:`main_person` ranks them (so the main person is always drawn)."""
    stats = timeline._faces
    ranked = sorted(
        (i for i in timeline.series if i in stats),
        key=lambda i: (-stats[i]["seconds"], -stats[i]["frames"], stats[i]["first"], i),
    )
    return sorted(ranked[:max_faces])


def plot_timeline(timeline: Timeline, path: str | os.PathLike, max_faces: int = 6) -> Path:
    """One panel per person (the ``max_faces`` longest on screen, :func:`plotted_people`): its
    smoothed emotion probabilities over time (a matplotlib Figure drawn off screen; no display
    needed). A PNG, PDF, SVG or PostScript file names the people drawn in its metadata title
    (``"fervid timeline: person 2, person 9"``), as the CSV and the summary name them."""

    ids = plotted_people(timeline, max_faces)
    n = max(1, len(ids))
    fig, axes = subplots(n, 1, figsize=(10, 1.0 + 2.0 * n), sharex=True, squeeze=False)
    for ax, fid in zip(axes[:, 0], ids):
        pts = timeline.series[fid]
        t = np.array([p[0] for p in pts])
        P = np.stack([p[1] for p in pts])
        gaps = np.flatnonzero(np.diff(t) > AWAY_SECONDS) + 1  # break lines where the person was away
        for k, lab in enumerate(timeline.labels):
            rgb = tuple(c / 255 for c in color_for(lab))
            for seg_i, (a, b) in enumerate(zip(np.r_[0, gaps], np.r_[gaps, len(t)])):
                ax.plot(t[a:b], P[a:b, k], color=rgb, lw=1.4, label=lab if seg_i == 0 else None)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{person_name(fid)}\np")
        ax.grid(alpha=0.3)
    if not ids:
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0, 0].transAxes)
    else:
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle("Emotion probabilities over time (smoothed)")
    fig.tight_layout()
    path = Path(path)
    title = "fervid timeline: " + (", ".join(person_name(i) for i in ids) or "no face found")
    meta = {"Title": title} if path.suffix.lower() in PLOT_METADATA_SUFFIXES else None
    # a raster plot (PNG, JPEG...) is read back before it is reported written; SVG/PDF are not images Pillow decodes
    verify = verify_image if path.suffix.lower() in image_extensions() else None
    with atomic_path(path, verify=verify) as tmp:
        fig.savefig(tmp, dpi=100, metadata=meta)
    return path
