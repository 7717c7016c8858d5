"""A per-person emotion timeline of a video: the session-report use.

Runs the bundled model over a video, follows every person with a stable id, and ends in a
table (one row per person: time on screen, dominant emotion, share of each emotion) and a
picture (one panel per person: the smoothed probability of each emotion over time).

    python examples/video_timeline.py [VIDEO] [--out DIR]

Without VIDEO it uses ``media/short_hamilton_clip.mp4`` of the data folder ($FERVID_DATA, or
``../shared/data`` beside the checkout); it exits with a message when neither is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def session_report(video: Path, out: Path, model: str = "fast", min_seconds: float = 1.0) -> tuple[Path, str]:
    """Writes ``timeline.csv``, ``summary.json`` and ``timeline.png`` into ``out``; returns the
    picture's path and the Markdown table of the people on screen at least ``min_seconds``."""
    from fervid import EmotionRecognizer
    from fervid.inference.video import Timeline, plot_timeline, write_summary

    rec = EmotionRecognizer(model=model)
    out.mkdir(parents=True, exist_ok=True)
    with Timeline(rec.labels, csv_path=out / "timeline.csv") as timeline:
        for frame in rec.stream(video):  # one FrameResult per frame; frame.faces carry a stable face_id
            timeline.add(frame)
    summary = timeline.summary()
    write_summary(out / "summary.json", summary)
    picture = plot_timeline(timeline, out / "timeline.png", max_faces=4)

    rows = ["| person | on screen (s) | dominant | " + " | ".join(summary["labels"]) + " |"]
    rows.append("|---|---:|---|" + "---:|" * len(summary["labels"]))
    people = sorted(summary["faces"].values(), key=lambda f: -f["seconds_on_screen"])
    brief = [f for f in people if f["seconds_on_screen"] < min_seconds]
    people = [f for f in people if f["seconds_on_screen"] >= min_seconds]
    for face in people:
        shares = " | ".join(f"{face['emotion_share'][lab]:.0%}" for lab in summary["labels"])
        rows.append(f"| {face['face_id']} | {face['seconds_on_screen']:.1f} | {face['dominant_emotion']} | {shares} |")
    if brief:
        rows.append(f"\n({len(brief)} more tracks shorter than {min_seconds:g} s: passers-by or lost tracks)")
    return picture, "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", help="a video file (default: the data folder's Hamilton clip)")
    parser.add_argument("--out", default="out/video_timeline", help="output folder (default out/video_timeline)")
    parser.add_argument("--model", default="fast", help="bundled model or checkpoint (default fast)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="table rows: people on screen this long")
    args = parser.parse_args(argv)
    if args.video:
        video = Path(args.video)
    else:
        from fervid.runtime import data_root

        root = data_root()
        if root is None or not (root / "media" / "short_hamilton_clip.mp4").is_file():
            print("no video given and no data folder found (set FERVID_DATA); nothing to do", file=sys.stderr)
            return 0
        video = root / "media" / "short_hamilton_clip.mp4"
    picture, table = session_report(video, Path(args.out), args.model, args.min_seconds)
    print(table)
    print(f"picture: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
