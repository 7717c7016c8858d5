"""``fervid video``: emotions over time in a video file or a camera stream.

    fervid video SOURCE [--out annotated.mp4] [--csv timeline.csv] [--plot timeline.png]
                 [--summary summary.json] [--every N] [--smooth ALPHA] [--max-seconds S]
                 [--detect-every K] [--tracker person|iou] [--show | --no-show] [--no-progress]
                 [--model NAME] [--detector NAME] [--video-max-side PX] [--backend auto|torch|onnx]
                 [--device D] [... the other recognizer arguments]

SOURCE: a video file or a camera index (0, 1, ...). Writes one CSV row per face per
processed frame (time, person id, box, detector score, raw and smoothed probability of
each emotion, label), a JSON summary per person (time on screen, appearances, share of that
time per emotion, dominant emotion) naming the main person (most time on screen), a plot of
each person's probabilities over time and an annotated video. Tracks end at shot cuts; a
person keeps one id through short absences and gets it back after a cut or a longer absence
when the face's appearance clearly matches (else a new id: an id never passes to another
person). A face seen on fewer than 4 consecutive frames is not a person and is left out
(--tracker iou: the old box tracker).
A live window opens only with --show, or by default for cameras when a display and a
GUI-capable OpenCV are present (q or Esc stops). Ctrl-C, a truncated file or a lost camera
stop cleanly: everything processed so far is written out.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from typing import Any

from fervid.cli.argtypes import output_path, positive_float, positive_int, unit_interval
from fervid.cli.recognizer_args import add_recognizer_args, config_from_args
from fervid.inference.options import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTH, TRACKERS
from fervid.safety import sigterm_as_interrupt


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "video",
        help="emotions over time in a video file or camera stream",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="video file, or a camera index (0, 1, ...)")
    p.add_argument("--out", type=output_path, help="annotated video to write (.mp4 or .avi)")
    p.add_argument("--csv", type=output_path, help="timeline CSV: one row per face per processed frame")
    p.add_argument("--plot", help="PNG plot of each person's emotion probabilities over time")
    p.add_argument("--summary", help="JSON summary per person")
    p.add_argument("--every", type=positive_int, default=1, help="process every N-th frame (default 1)")
    p.add_argument(
        "--smooth",
        type=unit_interval,
        default=None,
        help="weight of the newest frame in each face's moving average, (0, 1]; 1 = none (default 0.4)",
    )
    p.add_argument("--max-seconds", dest="max_seconds", type=positive_float, help="stop after S seconds of video")
    p.add_argument(
        "--detect-every",
        dest="detect_every",
        type=positive_int,
        default=None,
        help="full-frame face detection every K processed frames, tracking in between (default 1: "
        "every frame; 5 suits the slow haar detector)",
    )
    p.add_argument(
        "--tracker",
        default="person",
        choices=TRACKERS,
        help="who is who: person (default: shot cuts, confirmation, re-identification) or iou (boxes only)",
    )
    show = p.add_mutually_exclusive_group()
    show.add_argument("--show", dest="show", action="store_true", default=None, help="live window (needs a display)")
    show.add_argument("--no-show", dest="show", action="store_false", help="never open a window")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_recognizer_args(p)
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


def run(args: argparse.Namespace) -> int:
    from fervid.inference.recognizer import EmotionRecognizer
    from fervid.inference.video_analysis import analyze_video, expected_frames

    if args.plot and importlib.util.find_spec("matplotlib") is None:  # say so before the video, not after
        raise ModuleNotFoundError("--plot draws with matplotlib", name="matplotlib")
    rec = EmotionRecognizer.from_config(config_from_args(args))
    state: dict[str, Any] = {}

    def on_start(info: Any) -> None:
        show = (info.is_camera and gui_available()) if args.show is None else args.show
        if show and not gui_available():
            print(
                "fervid video: no display or no GUI-capable OpenCV (opencv-python-headless): running headless",
                file=sys.stderr,
            )
            show = False
        state["show"] = show
        from fervid.runtime import progress_bar

        state["bar"] = progress_bar(
            total=expected_frames(info, args.every, args.max_seconds),
            desc=os.path.basename(info.name),
            unit="frame",
            enabled=args.progress,
        )
        state["t0"] = time.perf_counter()

    def on_frame(fr: Any, img: Any) -> bool:
        bar = state["bar"]
        if state["show"] and img is not None:
            import cv2

            cv2.imshow("fervid", img)  # the window lives here, in the CLI, never in the library
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                return False
        bar.update(1)
        el = time.perf_counter() - state["t0"]
        bar.set_postfix(fps=f"{bar.n / el:.1f}" if el > 0 else "-", faces=len(fr.faces), refresh=False)
        return True

    # `kill` (SIGTERM) stops like Ctrl-C: the video container is finalised and the summary,
    # plot and CSV hold everything processed so far.
    try:
        with sigterm_as_interrupt():
            report = analyze_video(
                rec,
                args.source,
                out=args.out,
                csv=args.csv,
                plot=args.plot,
                summary=args.summary,
                every=args.every,
                smooth=DEFAULT_SMOOTH if args.smooth is None else args.smooth,
                max_seconds=args.max_seconds,
                detect_every=DEFAULT_DETECT_EVERY if args.detect_every is None else args.detect_every,
                annotate=args.show is not False,
                tracker=args.tracker,
                on_frame=on_frame,
                on_start=on_start,
            )
    finally:
        if "bar" in state:
            state["bar"].close()
        if state.get("show"):
            import cv2

            cv2.destroyAllWindows()
    print(report.describe())
    if report.written:
        print("wrote " + ", ".join(report.written))
    if report.interrupted:
        print("fervid video: interrupted; the outputs hold everything processed so far", file=sys.stderr)
        return 130
    if report.stopped_early:
        print(
            f"fervid video: stopped early: {report.stop_reason}; the outputs hold the {report.frames} frames "
            "processed so far",
            file=sys.stderr,
        )
        return 1
    return 0
