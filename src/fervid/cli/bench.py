"""``fervid bench``: classifier throughput, end-to-end video fps and int8 accuracy.

    fervid bench [--what classifier,video,int8] [--models default,fast]
                 [--backends torch,onnx,onnx-int8] [--data PATH] [--video PATH]
                 [--threads 2] [--repeats 7] [--markdown]

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


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="measure classifier throughput, video fps and int8 accuracy",
                       description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", default="classifier,video", help="comma-separated: classifier, video, int8")
    p.add_argument("--models", default="default,fast", help="comma-separated model names (default: default,fast)")
    p.add_argument("--backends", default="torch,onnx,onnx-int8", help="comma-separated: torch, onnx, onnx-int8")
    p.add_argument("--data", default=None, help="fer2013.csv(.gz) (default: $FERVID_DATA or ../shared/data)")
    p.add_argument("--video", default=None,
                   help="video for the fps test (default: <data>/media/short_hamilton_clip.mp4)")
    p.add_argument("--video-model", dest="video_model", default="fast", help="model for the video test (default fast)")
    p.add_argument("--detect-every", dest="detect_every", type=int, default=None,
                   help="full-frame detection every K frames in the video test (default 5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", help="also write the results to this JSON file")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fervid.bench import bench_classifiers, bench_int8_accuracy, bench_pipeline
    from fervid.runtime import fer2013_csv

    what = {w.strip() for w in args.what.split(",") if w.strip()}
    bad = what - {"classifier", "video", "int8"}
    if bad:
        raise ValueError(f"--what: unknown part(s) {sorted(bad)}; choose from classifier, video, int8")
    data = Path(args.data) if args.data else fer2013_csv()
    if data is None or not data.exists():
        raise FileNotFoundError("FER2013 data not found: pass --data PATH/fer2013.csv.gz or set FERVID_DATA")
    models = [m for m in args.models.split(",") if m]
    import cv2

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, cv2 {cv2.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    results: dict[str, object] = {}
    if "classifier" in what:
        from fervid.data.datasets import load_dataset

        d = load_dataset(data)
        faces = d.images[d.splits == "PrivateTest"][:1024]
        rows = bench_classifiers(models, [b for b in args.backends.split(",") if b], faces, threads=args.threads,
                                 repeats=args.repeats, data=data)
        results["classifier"] = rows
        print("\n| model | backend | faces/s, batch 64 | ms/face, batch 1 |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['backend']} | {r['faces_per_s_b64']:,.0f} | {r['ms_per_face_b1']:.3f} |")
    if "video" in what:
        video = Path(args.video) if args.video else data.parent.parent / "media" / "short_hamilton_clip.mp4"
        if not video.is_file():
            raise FileNotFoundError(f"no such video: {video}")
        rows = []
        for size in (None, (640, 480)):
            rows.append(bench_pipeline(video, model=args.video_model, detect_every=args.detect_every, size=size,
                                       threads=args.threads, repeats=max(1, min(args.repeats, 3))))
            if args.detect_every is None:
                rows.append(bench_pipeline(video, model=args.video_model, detect_every=1, size=size,
                                           threads=args.threads, repeats=1))
        results["video"] = rows
        print("\n| input | detect every | frames | faces | fps | decode | detect | crop | classify | draw (ms/frame) |"
              "\n|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            ms = r["ms"]
            print(f"| {Path(r['source']).name} {r['width']}x{r['height']} ({r['model']}, {r['backend']}) | "
                  f"{r['detect_every']} | {r['frames']} | {r['faces']} | {r['fps']:.1f} | {ms['decode']:.2f} | "
                  f"{ms['detect']:.2f} | {ms['crop']:.2f} | {ms['classify']:.2f} | {ms['draw']:.2f} |")
    if "int8" in what:
        rows = [bench_int8_accuracy(m, data, threads=args.threads) for m in models]
        results["int8"] = rows
        print("\n| model | n | acc torch | acc onnx fp32 | acc onnx int8 | int8 drop (points) | "
              "top-1 agreement fp32 / int8 vs torch | int8 model |\n|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['n']} | {100 * r['acc_torch']:.2f}% | {100 * r['acc_onnx']:.2f}% | "
                  f"{100 * r['acc_onnx-int8']:.2f}% | {r['int8_drop_points']:.2f} | "
                  f"{100 * r['agree_onnx']:.2f}% / {100 * r['agree_onnx-int8']:.2f}% | {r['quantization']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0
