"""A whole video job: stream -> timeline CSV, per-face summary, plot and annotated video.

>>> from fervid import EmotionRecognizer
>>> from fervid.inference.video_analysis import analyze_video
>>> report = analyze_video(EmotionRecognizer("fast"), "clip.mp4", csv="t.csv", summary="s.json")
>>> report.summary["faces"]["1"]["dominant_emotion"]

``fervid video`` is a thin layer over :func:`analyze_video` (it only adds the progress bar's
text and, where a display exists, a window fed through ``on_frame``: the library never opens
windows). Whatever stops the stream -- its end, ``max_seconds``, a truncated file, a lost
camera, ``on_frame`` returning ``False`` or Ctrl-C -- everything processed so far is written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.errors import OutputError, UserValueError
from fervid.inference.options import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTH
from fervid.inference.video import (
    FrameResult,
    SourceInfo,
    Timeline,
    VideoSource,
    person_name,
    plot_timeline,
    write_summary,
)
from fervid.safety import PendingFile, check_not_input, output_error, preflight_output, same_file, space_hint

if TYPE_CHECKING:
    import cv2

    from fervid.inference.recognizer import EmotionRecognizer
    from fervid.inference.tracking import Tracker

VIDEO_SUFFIXES = (".mp4", ".avi")

FrameCallback = Callable[[FrameResult, "np.ndarray | None"], "bool | None"]
"""``on_frame(result, annotated_bgr)``: called after every processed frame (``annotated_bgr`` is
``None`` unless ``annotate=True`` or ``out`` is set); return ``False`` to stop the job."""


@dataclass
class VideoReport:
    """What :func:`analyze_video` did."""

    info: SourceInfo
    frames: int
    summary: dict[str, Any]
    stop_reason: str
    interrupted: bool = False
    stopped_early: bool = False
    written: list[str] = field(default_factory=list)

    def describe(self, people: int = 8) -> str:
        """One line: frames processed, the main person and the dominant emotion of the
        ``people`` longest on screen (the main person first; ``N more`` for the others)."""
        faces = self.summary["faces"]
        main = self.summary.get("main_person")
        shown = sorted(faces.values(), key=lambda v: (v["face_id"] != main, -v["seconds_on_screen"], v["face_id"]))
        more = len(shown) - people
        return (
            f"{self.info.name}: {self.frames} frames processed, {len(faces)} {'people' if len(faces) != 1 else 'person'}"
            + (f" (main: {person_name(main)})" if main is not None else "")
            + "".join(
                f"; {person_name(v['face_id'])}: {v['dominant_emotion']} "
                f"({100 * v['emotion_share'][v['dominant_emotion']]:.0f}% of {v['seconds_on_screen']:.1f} s)"
                for v in shown[:people]
            )
            + (f"; {more} more {'people' if more > 1 else 'person'} (less time on screen)" if more > 0 else "")
        )


class _Writer:
    """cv2.VideoWriter opened on the first frame (its size is the stream's). It writes a
    temporary file next to ``path`` and renames it on :meth:`close`, once the container is
    finalised and read back (every frame written is there and decodes: OpenCV reports a full
    disk only as a warning): ``path`` is never a half-written, unplayable video (and an
    earlier file of that name stays intact until then)."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        self.vw: cv2.VideoWriter | None = None
        self._pending: PendingFile | None = None
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        import cv2

        if self.vw is None:
            self._pending = PendingFile(self.path)
            fourcc = cv2.VideoWriter.fourcc(*("MJPG" if self.path.lower().endswith(".avi") else "mp4v"))
            self.vw = cv2.VideoWriter(str(self._pending.tmp), fourcc, self.fps, (bgr.shape[1], bgr.shape[0]))
            if not self.vw.isOpened():
                hint = space_hint(Path(self.path))  # before the temporary file goes
                self._pending.discard()
                raise OutputError(f"cannot write {self.path}: OpenCV could not start a video there{hint}")
        self.vw.write(bgr)
        self.frames += 1

    def close(self) -> None:
        from fervid.inference.draw import verify_video

        if self.vw is not None:
            self.vw.release()  # writes the container's index: only now is the file playable
            self.vw = None
            if self._pending is not None:
                self._pending.commit(lambda tmp: verify_video(tmp, self.frames))


def _finish(steps: list[tuple[str | os.PathLike | None, Callable[[], Any] | None]]) -> list[OutputError]:
    """Run each output's closing step; an ``OSError`` becomes an :class:`OutputError` naming
    the output's path and is returned, so that one failed output does not stop the others."""
    failed: list[OutputError] = []
    for path, step in steps:
        if step is None:
            continue
        try:
            step()
        except OSError as e:
            if path is None:  # not an output problem: keep the traceback
                raise
            failed.append(output_error(e, path))
    return failed


def expected_frames(info: SourceInfo, every: int, max_seconds: float | None) -> int | None:
    """How many frames a job will process (``None`` for cameras and unknown lengths)."""
    if not info.frame_count or info.is_camera:
        return None
    n = info.frame_count
    if max_seconds and info.fps > 0:
        n = min(n, int(max_seconds * info.fps))
    return -(-n // every)


def _check_outputs(source: VideoSource, outputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse, before any frame, outputs that would fail or clash: a video that is not
    ``.mp4``/``.avi``, an output that is the input, a folder in the way, two outputs on one file."""
    out = outputs["--out"]
    if out is not None and not str(out).lower().endswith(VIDEO_SUFFIXES):
        raise UserValueError(f"{out}: the annotated video must end in .mp4 or .avi")
    named = [(flag, p) for flag, p in outputs.items() if p is not None]
    for i, (flag, p) in enumerate(named):
        check_not_input(p, [source] if isinstance(source, (str, os.PathLike)) else [], flag)
        preflight_output(p)  # a folder or file in the way fails now, not at the first frame or the end
        for flag2, p2 in named[i + 1 :]:
            if same_file(p, p2):
                raise OutputError(f"{flag} and {flag2} are the same file ({p}); give each output its own path")


def analyze_video(
    recognizer: EmotionRecognizer,
    source: VideoSource,
    *,
    out: str | os.PathLike | None = None,
    csv: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    summary: str | os.PathLike | None = None,
    every: int = 1,
    smooth: float = DEFAULT_SMOOTH,
    max_seconds: float | None = None,
    detect_every: int = DEFAULT_DETECT_EVERY,
    annotate: bool = False,
    tracker: str | Tracker | None = None,
    on_frame: FrameCallback | None = None,
    on_start: Callable[[SourceInfo], None] | None = None,
) -> VideoReport:
    """Run ``recognizer`` over a video file, camera index or frame iterable and write the outputs.

    Args:
        out: annotated video (``.mp4`` or ``.avi``).
        csv: timeline CSV, one row per face per processed frame.
        plot: PNG of each person's smoothed probabilities over time.
        summary: JSON summary per person (time on screen, appearances, share of that time per
            emotion, ...) and the main person.
        every, smooth, max_seconds, detect_every: as :meth:`EmotionRecognizer.stream`.
        annotate: pass annotated BGR frames to ``on_frame`` (implied by ``out``).
        tracker: who is who: ``"person"`` (default; :mod:`fervid.inference.tracking`), ``"iou"``
            or a tracker object.
        on_frame: called after each processed frame; returning ``False`` stops the job.
        on_start: called once with the source's :class:`SourceInfo` before the first frame.

    Ctrl-C (``KeyboardInterrupt``) stops the job like ``on_frame`` returning ``False``, with
    ``report.interrupted`` set: the outputs hold everything processed so far.
    """
    from fervid.inference.draw import annotate as draw

    _check_outputs(source, {"--out": out, "--csv": csv, "--plot": plot, "--summary": summary})
    stream = recognizer.stream(
        source, every=every, smooth=smooth, max_seconds=max_seconds, detect_every=detect_every, tracker=tracker
    )
    info = stream.info
    if on_start is not None:
        on_start(info)
    out_fps = (info.fps / every) if info.fps > 0 else 15.0
    writer = _Writer(str(out), out_fps) if out is not None else None
    try:
        timeline = Timeline(recognizer.labels, csv_path=csv, source=info.name)
    except OSError as e:
        stream.close()
        if csv is None:  # not an output problem: keep the traceback
            raise
        raise output_error(e, csv) from e
    interrupted = False
    t0 = time.perf_counter()
    try:
        for fr in stream:
            try:
                timeline.add(fr)  # writes the CSV rows
            except OSError as e:
                if csv is None:
                    raise
                raise output_error(e, csv) from e
            img = draw(fr.frame, fr.faces, bgr=True) if (writer is not None or annotate) else None
            if writer is not None and img is not None:
                writer.write(img)
            if on_frame is not None and on_frame(fr, img) is False:
                stream.close()
                break
    except KeyboardInterrupt:
        interrupted = True
        stream.close()
    finally:
        failures: list[OutputError] = []
        try:
            for fr in stream.drain():  # stopped early: the frames the tracker still held back
                timeline.add(fr)
                if writer is not None:
                    writer.write(draw(fr.frame, fr.faces, bgr=True))
        except OSError as e:  # a full disk: the outputs below still close, and this is raised after them
            failed_path = csv if csv is not None else out
            if failed_path is None:
                raise
            failures.append(output_error(e, failed_path))
        # whatever happened, write out what was processed; an output that fails (a full
        # disk) does not stop the others, and the first failure is raised after them
        failures += _finish(
            [
                (csv, timeline.close),
                (out, writer.close if writer is not None else None),
            ]
        )
        result = timeline.summary()
        result.update(
            source=info.name,
            stop_reason="interrupted" if interrupted else stream.stop_reason,
            fps_processed=round(timeline.frames / max(time.perf_counter() - t0, 1e-9), 2),
        )
        failures += _finish(
            [
                (summary, (lambda: write_summary(summary, result)) if summary is not None else None),
                (plot, (lambda: plot_timeline(timeline, plot)) if plot is not None else None),
            ]
        )
    if failures:
        raise failures[0]
    written = [str(p) for p in (csv, summary, plot, out) if p is not None and Path(p).exists()]
    return VideoReport(
        info=info,
        frames=timeline.frames,
        summary=result,
        stop_reason=str(result["stop_reason"]),
        interrupted=interrupted,
        stopped_early=stream.stopped_early and not interrupted,
        written=written,
    )
