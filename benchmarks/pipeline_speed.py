"""End-to-end speed of the default pipeline (YuNet + aligned crop + classifier) against the
old one (Haar + box crop): a photo in-process after warm-up, and video with detection on
every frame.

Usage (from the repository root)::

    .venv/bin/python benchmarks/pipeline_speed.py --photo [--repeats 30] [--threads 2]
    .venv/bin/python benchmarks/pipeline_speed.py --video [--repeats 1] [--threads 2]

``--photo``: three ~400x400 one-face photos (square crops around the face of ``obama.jpg``,
``lin-manuel-miranda.png`` and ``32bit.png`` from the media folder, resized to 400x400),
decoded once; the timed call is ``EmotionRecognizer.predict(rgb_array)`` (detection, crop,
classification, result objects), ``--repeats`` times per photo after 5 warm-up calls, the
configurations interleaved round-robin so a load change on the shared machine hits all
alike. Median ms per photo, and the detector alone on the same photos; with ``--threads 1``
also the CPU time of the calling thread (onnxruntime and OpenCV then run in it), which is
what the call costs on an idle core while other jobs share the machine. Classifier variants:
``onnx`` = the ``auto`` backend (onnxruntime fp32) and ``int8`` = ``fervid export --int8``
(static QDQ, fp32 tail kept; calibrated on FER2013 Training; its parity with PyTorch is
checked by ``fervid bench --what int8``), exported once into ``runs/int8/``. ``--models``
takes ensembles too (``default,fast,default+fast``): each member's onnxruntime session gets
``--threads`` threads (an ``int8`` ensemble is the ensemble of the members' int8 exports).

``--video``: ``fervid.bench.bench_pipeline`` (stream + overlay drawing, the work of
``fervid video --out``) on ``short_hamilton_clip.mp4`` letterboxed to 640x480 and
re-encoded, with detection on every frame (YuNet) and, for reference, Haar on every frame
and every 5th frame (the old default). Median fps of ``--repeats`` passes after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# (file, face centre x, y, square side) hand-picked around the one face of each photo
PHOTOS = [("obama.jpg", 498, 250, 560), ("lin-manuel-miranda.png", 417, 305, 560), ("32bit.png", 311, 410, 560)]


def photos(data: Path) -> list[np.ndarray]:
    import cv2

    from fervid.data.io import load_image

    out = []
    for name, cx, cy, side in PHOTOS:
        rgb = load_image(data / "media" / name)
        x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
        crop = rgb[y0 : y0 + side, x0 : x0 + side]
        out.append(np.ascontiguousarray(cv2.resize(crop, (400, 400), interpolation=cv2.INTER_AREA)))
    return out


def int8_path(model: str, data: Path) -> Path:
    from fervid.bench import int8_model

    return int8_model(model, REPO / "runs" / "int8", data / "fer2013" / "fer2013.csv.gz")


def int8_spec(model: str, data: Path) -> str:
    """The int8 export of a model, or of each member of an ensemble ``A+B``."""
    return "+".join(str(int8_path(m, data)) for m in model.split("+"))


def passes(rec: object) -> str:
    """What YuNet's coarse-to-fine choice did over the run: input sizes and pass counts."""
    sizes = getattr(getattr(rec, "detector", None), "input_sizes", None)
    return ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(sizes.items())) if sizes else "-"


def run_photo(args: argparse.Namespace) -> int:
    import cv2

    from fervid.inference.backends import with_threads
    from fervid.inference.recognizer import EmotionRecognizer

    cv2.setNumThreads(args.threads)
    data = Path(args.data)
    imgs = photos(data)
    configs: dict[str, EmotionRecognizer] = {}
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            for det in args.detectors.split(","):
                m = int8_spec(model, data) if variant == "int8" else model
                rec = EmotionRecognizer(
                    m,
                    detector=det,
                    device="cpu",
                    backend="onnx",
                    detector_options={"threads": args.threads} if det == "yunet" else None,
                ).load()
                rec._classifier = with_threads(rec.classifier, args.threads)  # each ensemble member's too
                configs[f"{model} {variant} + {det}"] = rec
    faces = {k: [len(r.predict(im).faces) for im in imgs] for k, r in configs.items()}
    for r in configs.values():
        for _ in range(5):
            for im in imgs:
                r.predict(im)
    times: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    det_times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.repeats):
        for k, r in configs.items():
            for im in imgs:
                t, c = time.perf_counter(), time.thread_time()
                r.predict(im)
                cpu[k].append(1e3 * (time.thread_time() - c))
                times[k].append(1e3 * (time.perf_counter() - t))
                t = time.perf_counter()
                r.detector.detect(im)
                det_times[k].append(1e3 * (time.perf_counter() - t))
    print(
        f"# photo end to end, 3 photos 400x400 (one face each), {args.repeats} rounds; {os.cpu_count()} CPUs, "
        f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| model | classifier | detector | faces found | ms per photo (median, wall) | of which detection | "
        "CPU ms of the calling thread | YuNet input (w x h: passes) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in configs:
        model, rest = k.split(" ", 1)
        variant, det = rest.split(" + ")
        print(
            f"| {model} | {variant} | {det} | {faces[k]} | {statistics.median(times[k]):.2f} | "
            f"{statistics.median(det_times[k]):.2f} | {statistics.median(cpu[k]):.2f} | {passes(configs[k])} |"
        )
    return 0


def run_video(args: argparse.Namespace) -> int:
    from fervid.bench import bench_pipeline

    data = Path(args.data)
    clip = data / "media" / "short_hamilton_clip.mp4"
    rows = []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            m = int8_spec(model, data) if variant == "int8" else model
            for det, every in (("yunet", 1), ("haar", 1), ("haar", 5)):
                if det not in args.detectors.split(","):
                    continue
                r = bench_pipeline(
                    clip,
                    model=m,
                    detector=det,
                    detect_every=every,
                    size=(640, 480),
                    threads=args.threads,
                    repeats=args.repeats,
                )
                r.update(model=model, variant=variant)
                rows.append(r)
                print(json.dumps(r), flush=True)
    print(
        f"\n# video end to end, short_hamilton_clip.mp4 letterboxed to 640x480 ({rows[0]['frames']} frames), "
        f"stream + drawing; threads {args.threads}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| model | classifier | detector | detection every | faces | fps | decode | detect | crop | classify | draw (ms/frame) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r["ms"]
        print(
            f"| {r['model']} | {r['variant']} | {r['detector']} | {r['detect_every']} | {r['faces']} | "
            f"**{r['fps']:.1f}** | {ms['decode']:.2f} | {ms['detect']:.2f} | {ms['crop']:.2f} | {ms['classify']:.2f} | "
            f"{ms['draw']:.2f} |"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--photo", action="store_true")
    what.add_argument("--video", action="store_true")
    ap.add_argument("--models", default="default,fast", help="comma-separated; A+B: the mean ensemble (default+fast)")
    ap.add_argument("--variants", default="onnx,int8", help="classifier variants: onnx (fp32), int8")
    ap.add_argument("--detectors", default="yunet,haar")
    ap.add_argument("--repeats", type=int, default=None, help="photo rounds (default 30) / video passes (default 1)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 30 if args.photo else 1
    return run_photo(args) if args.photo else run_video(args)


if __name__ == "__main__":
    raise SystemExit(main())
