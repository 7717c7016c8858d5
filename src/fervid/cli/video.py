"""``fervid video``: emotions over time in a video file or a camera stream.

    fervid video SOURCE [--out annotated.mp4] [--csv timeline.csv] [--plot timeline.png]
                 [--summary summary.json] [--every N] [--smooth ALPHA] [--max-seconds S]
                 [--model NAME] [--backend auto|torch|onnx] [--detector NAME] [--detect-every K]
                 [--show | --no-show] [--no-progress]

SOURCE: a video file or a camera index (0, 1, ...). Writes one CSV row per face per
processed frame (time, stable face id, box, detector score, raw and smoothed probability of
each emotion, label), a JSON summary per face id (time on screen, share of time per emotion,
dominant emotion), a plot of each face's probabilities over time and an annotated video.
A live window opens only with --show, or by default for cameras when a display and a
GUI-capable OpenCV are present (q or Esc stops). Ctrl-C, a truncated file or a lost camera
stop cleanly: everything processed so far is written out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("video", help="emotions over time in a video file or camera stream",
                       description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="video file, or a camera index (0, 1, ...)")
    p.add_argument("--out", help="annotated video to write (.mp4 or .avi)")
    p.add_argument("--csv", help="timeline CSV: one row per face per processed frame")
    p.add_argument("--plot", help="PNG plot of each face's emotion probabilities over time")
    p.add_argument("--summary", help="JSON summary per face id")
    p.add_argument("--every", type=int, default=1, help="process every N-th frame (default 1)")
    p.add_argument("--smooth", type=float, default=None,
                   help="weight of the newest frame in each face's moving average, (0, 1]; 1 = none (default 0.4)")
    p.add_argument("--max-seconds", dest="max_seconds", type=float, help="stop after S seconds of video")
    p.add_argument("--detect-every", dest="detect_every", type=int, default=None,
                   help="full-frame face detection every K processed frames, tracking in between (default 5)")
    p.add_argument("--model", default="default", help="bundled model name, checkpoint or .onnx file (default: default)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                   help="inference backend (default auto: onnx on the CPU when installed)")
    p.add_argument("--detector", default=None, help="face detector: haar (default), haar-profile, dlib")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    show = p.add_mutually_exclusive_group()
    show.add_argument("--show", dest="show", action="store_true", default=None, help="live window (needs a display)")
    show.add_argument("--no-show", dest="show", action="store_false", help="never open a window")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def gui_available() -> bool:
    """Whether a window can be shown: a display, and an OpenCV built with a GUI backend
    (``opencv-python-headless``, fervid's dependency, has none)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in info else ""
    return bool(gui) and gui.upper() != "NONE"


class _Writer:
    """cv2.VideoWriter opened on the first frame (its size is the stream's)."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.vw = path, fps, None

    def write(self, bgr: Any) -> None:
        import cv2

        if self.vw is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.lower().endswith(".avi") else "mp4v"))
            self.vw = cv2.VideoWriter(self.path, fourcc, self.fps, (bgr.shape[1], bgr.shape[0]))
            if not self.vw.isOpened():
                raise ValueError(f"{self.path}: cannot write a video here (use .mp4 or .avi)")
        self.vw.write(bgr)

    def close(self) -> None:
        if self.vw is not None:
            self.vw.release()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fervid.inference.detect import DEFAULT_DETECTOR
    from fervid.inference.recognizer import EmotionRecognizer
    from fervid.inference.video import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTH, Timeline, plot_timeline, write_summary

    if args.out and not args.out.lower().endswith((".mp4", ".avi")):
        raise ValueError(f"--out {args.out}: the annotated video must end in .mp4 or .avi")
    rec = EmotionRecognizer(args.model, detector=args.detector or DEFAULT_DETECTOR, device=args.device,
                            backend=args.backend)
    stream = rec.stream(args.source, every=args.every, smooth=DEFAULT_SMOOTH if args.smooth is None else args.smooth,
                        max_seconds=args.max_seconds,
                        detect_every=DEFAULT_DETECT_EVERY if args.detect_every is None else args.detect_every)
    info = stream.info
    show = (info.is_camera and gui_available()) if args.show is None else args.show
    if show and not gui_available():
        print("fervid video: no display or no GUI-capable OpenCV (opencv-python-headless): running headless",
              file=sys.stderr)
        show = False
    out_fps = (info.fps / args.every) if info.fps > 0 else 15.0
    writer = _Writer(args.out, out_fps) if args.out else None
    total = None
    if info.frame_count and not info.is_camera:
        n = info.frame_count
        if args.max_seconds and info.fps > 0:
            n = min(n, int(args.max_seconds * info.fps))
        total = -(-n // args.every)
    bar = tqdm(total=total, desc=os.path.basename(info.name), unit="frame", file=sys.stderr, dynamic_ncols=True,
               disable=not args.progress)
    timeline = Timeline(rec.labels, csv_path=args.csv)
    interrupted = False
    t0 = time.perf_counter()
    try:
        import cv2

        from fervid.inference.draw import annotate

        for fr in stream:
            timeline.add(fr)
            if writer is not None or show:
                img = annotate(fr.frame, fr.faces, bgr=True)
                if writer is not None:
                    writer.write(img)
                if show:
                    cv2.imshow("fervid", img)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        stream.close()
                        break
            bar.update(1)
            el = time.perf_counter() - t0
            bar.set_postfix(fps=f"{bar.n / el:.1f}" if el > 0 else "-", faces=len(fr.faces), refresh=False)
    except KeyboardInterrupt:
        interrupted = True
        stream.close()
    finally:
        bar.close()
        timeline.close()
        if writer is not None:
            writer.close()
        if show:
            import cv2

            cv2.destroyAllWindows()
        # whatever happened, write out what was processed
        summary = timeline.summary()
        summary.update(source=info.name, stop_reason="interrupted" if interrupted else stream.stop_reason,
                       fps_processed=round(timeline.frames / max(time.perf_counter() - t0, 1e-9), 2))
        if args.summary:
            write_summary(args.summary, summary)
        if args.plot:
            plot_timeline(timeline, args.plot)
    faces = summary["faces"]
    print(f"{info.name}: {timeline.frames} frames processed, {len(faces)} face id{'s' if len(faces) != 1 else ''}"
          + "".join(f"; face {k}: {v['dominant_emotion']} ({100 * v['emotion_share'][v['dominant_emotion']]:.0f}% of "
                    f"{v['seconds_on_screen']:.1f} s)" for k, v in list(faces.items())[:8]))
    written = [p for p in (args.csv, args.summary, args.plot, args.out) if p]
    if written:
        print("wrote " + ", ".join(written))
    if interrupted:
        print("fervid video: interrupted; the outputs hold everything processed so far", file=sys.stderr)
        return 130
    if stream.stopped_early:
        print(f"fervid video: stopped early: {stream.stop_reason}; the outputs hold the {timeline.frames} frames "
              "processed so far", file=sys.stderr)
        return 1
    return 0
