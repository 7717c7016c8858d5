"""``fervid bench``: classifier throughput, end-to-end video fps and int8 accuracy.

    fervid bench [--what classifier,video,int8] [--models default,fast]
                 [--backends torch,onnx,onnx-int8] [--data PATH] [--video PATH]
                 [--threads 2] [--repeats 7] [--markdown] [--no-progress]

classifier: faces/s at batch 64 and ms per face at batch 1 (median over --repeats) on
real FER2013 faces. video: end-to-end fps of ``fervid video``'s pipeline (stream + draw,
default detector, fast model, auto backend) on --video at its own size and at 640x480,
with ms per frame per stage. int8: PrivateTest accuracy of torch / ONNX fp32 / ONNX int8
and the ONNX models' top-label agreement with PyTorch. Results: benchmarks/realtime.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from fervid.cli.argtypes import positive_int


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        help="measure classifier throughput, video fps and int8 accuracy",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--what", default="classifier,video", help="comma-separated: classifier, video, int8")
    p.add_argument("--models", default="default,fast", help="comma-separated model names (default: default,fast)")
    p.add_argument("--backends", default="torch,onnx,onnx-int8", help="comma-separated: torch, onnx, onnx-int8")
    p.add_argument("--data", default=None, help="fer2013.csv(.gz) (default: $FERVID_DATA or ../shared/data)")
    p.add_argument(
        "--video", default=None, help="video for the fps test (default: <data>/media/short_hamilton_clip.mp4)"
    )
    p.add_argument("--video-model", dest="video_model", default="fast", help="model for the video test (default fast)")
    p.add_argument(
        "--detect-every",
        dest="detect_every",
        type=positive_int,
        default=None,
        help="full-frame detection every K frames in the video test (default 5)",
    )
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--repeats", type=positive_int, default=7)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.bench import markdown_tables, run_benchmarks

    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    results = run_benchmarks(
        [w.strip() for w in args.what.split(",") if w.strip()],
        args.data,
        models=[m for m in args.models.split(",") if m],
        backends=[b for b in args.backends.split(",") if b],
        video=args.video,
        video_model=args.video_model,
        detect_every=args.detect_every,
        threads=args.threads,
        repeats=args.repeats,
        progress=args.progress,
    )
    print(markdown_tables(results))
    if args.json:
        from fervid.safety import write_text_atomic

        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0
