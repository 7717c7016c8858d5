"""Speed and int8 accuracy measurements behind ``fervid bench`` (figures in
``benchmarks/realtime.md``).

Three parts, each a function returning plain rows:

:func:`bench_classifiers`
    faces/s at batch 64 and ms per face at batch 1 for each model x backend (``torch``,
    ``onnx`` fp32, ``onnx-int8``), median over ``repeats`` timed runs after a warm-up, on
    real FER2013 faces.
:func:`bench_pipeline`
    end-to-end frames/s of the video pipeline (:meth:`EmotionRecognizer.stream` + drawing)
    on a video file, with the mean ms per frame of each stage (decode, detect, crop,
    classify, draw). ``size=(640, 480)`` first re-encodes the video at that size.
:func:`bench_int8_accuracy`
    PrivateTest accuracy of PyTorch, ONNX fp32 and ONNX int8, and each ONNX model's
    top-label agreement with PyTorch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fervid.data.datasets import load_dataset
from fervid.errors import UserFileNotFoundError, UserValueError
from fervid.export.onnx import export_onnx
from fervid.inference.backends import load_classifier, source_sha256, with_threads
from fervid.inference.draw import annotate
from fervid.inference.recognizer import EmotionRecognizer
from fervid.inference.video import DEFAULT_DETECT_EVERY, STAGES
from fervid.models.onnx import read_metadata
from fervid.runtime import fer2013_csv, progress_bar, torch_available

BENCH_BACKENDS = ("torch", "onnx", "onnx-int8")


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in OpenCV and, when installed, torch (onnxruntime sessions take
    it per session)."""
    import cv2

    cv2.setNumThreads(threads)
    if torch_available():
        import torch

        torch.set_num_threads(threads)


def require_torch(what: list[str], backends: list[str]) -> None:
    """Fail before anything runs when a part needs torch and it is not installed: the torch and
    int8 classifier rows (the int8 file is exported from the checkpoint) and the int8 accuracy
    part. The video part and ONNX rows of the bundled models run on the core install."""
    needs = ("classifier" in what and bool({"torch", "onnx-int8"} & set(backends))) or "int8" in what
    if needs and not torch_available():
        raise ModuleNotFoundError(
            "fervid bench: these parts need torch (--what video or --backends onnx do not)", name="torch"
        )


def int8_model(model: str, out_dir: str | os.PathLike, data: str | os.PathLike | None, progress: bool = False) -> Path:
    """Export ``model`` as static int8 ONNX into ``out_dir`` (calibrated on ``data``), once per
    weight file: the name carries the weights' sha256, so new weights behind the same name (a
    re-trained bundled model) get a new export instead of timing the old one."""
    path = Path(out_dir) / f"{Path(str(model)).stem}-{source_sha256(model)[:12]}-int8.onnx"
    if not path.is_file():
        export_onnx(model, path, int8=True, calibration_data=data, check=False, progress=progress)
    return path


def make_classifier(
    model: str,
    backend: str,
    threads: int,
    work_dir: str | os.PathLike,
    data: str | os.PathLike | None,
    progress: bool = False,
) -> Any:
    """A classifier for one benchmark row (``backend`` in :data:`BENCH_BACKENDS`)."""
    if backend == "onnx-int8":
        return load_classifier(str(int8_model(model, work_dir, data, progress)), backend="onnx", threads=threads)
    return load_classifier(model, backend=backend, device="cpu", threads=threads)


def time_classifier(clf: Any, faces: np.ndarray, batch: int, repeats: int = 7, min_faces: int = 256) -> float:
    """Median seconds per face of ``clf.logits`` on batches of ``batch`` faces (each timed run
    classifies at least ``min_faces`` faces; one untimed warm-up run first)."""
    n_batches = max(1, -(-min_faces // batch))
    batches = [faces[(i * batch) % (len(faces) - batch + 1) :][:batch] for i in range(n_batches)]
    for b in batches[:3]:
        clf.logits(b)
    per_face = []
    for _ in range(repeats):
        t = time.perf_counter()
        for b in batches:
            clf.logits(b)
        per_face.append((time.perf_counter() - t) / (n_batches * batch))
    return statistics.median(per_face)


def bench_classifiers(
    models: list[str],
    backends: list[str],
    faces: np.ndarray,
    *,
    threads: int = 2,
    repeats: int = 7,
    data: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    bar: Any = None,
) -> list[dict[str, Any]]:
    """One row per model x backend: ``faces_per_s_b64``, ``ms_per_face_b1``. ``bar``: a
    progress bar (:func:`fervid.runtime.progress_bar`) advanced once per row."""
    set_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fervid-bench-") as tmp:
        for model in models:
            for backend in backends:
                if bar is not None:
                    bar.set_postfix_str(f"classifier {model} {backend}")
                clf = make_classifier(
                    model, backend, threads, work_dir or tmp, data, bar is not None and not bar.disable
                )
                s64 = time_classifier(clf, faces, 64, repeats, min_faces=640)
                s1 = time_classifier(clf, faces, 1, repeats, min_faces=200)
                rows.append(
                    {"model": model, "backend": backend, "faces_per_s_b64": 1.0 / s64, "ms_per_face_b1": 1e3 * s1}
                )
                if bar is not None:
                    bar.update(1)
    return rows


def resize_video(src: str | os.PathLike, dst: str | os.PathLike, size: tuple[int, int]) -> Path:
    """Re-encode ``src`` at ``size`` (w, h) with OpenCV (mp4v), for a fixed-size speed test.
    Frames are scaled to fit and padded (letterbox), so faces keep their shape."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise UserFileNotFoundError(f"cannot open video {src}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    vw = cv2.VideoWriter(str(dst), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    while True:
        ok, f = cap.read()
        if not ok:
            break
        s = min(size[0] / f.shape[1], size[1] / f.shape[0])
        w, h = round(f.shape[1] * s), round(f.shape[0] * s)
        small = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        x0, y0 = (size[0] - w) // 2, (size[1] - h) // 2
        vw.write(cv2.copyMakeBorder(small, y0, size[1] - h - y0, x0, size[0] - w - x0, cv2.BORDER_CONSTANT))
    cap.release()
    vw.release()
    return Path(dst)


def bench_pipeline(
    source: str | os.PathLike,
    *,
    model: str = "fast",
    backend: str = "auto",
    detector: str = "haar",
    detect_every: int | None = None,
    size: tuple[int, int] | None = None,
    threads: int = 2,
    repeats: int = 3,
    draw: bool = True,
) -> dict[str, Any]:
    """End-to-end fps of stream + draw over the whole video (median of ``repeats`` passes
    after a warm-up pass) and mean ms per frame of each stage, for the median pass."""
    set_threads(threads)
    de = DEFAULT_DETECT_EVERY if detect_every is None else detect_every
    rec = EmotionRecognizer(model, detector=detector, device="cpu", backend=backend).load()
    if backend in ("onnx", "auto"):
        rec._classifier = with_threads(rec.classifier, threads)  # each ensemble member's session too
    with tempfile.TemporaryDirectory(prefix="fervid-bench-") as tmp:
        path = resize_video(source, Path(tmp) / "sized.mp4", size) if size else Path(source)
        passes: list[dict[str, Any]] = []
        for _ in range(repeats + 1):
            stages = dict.fromkeys((*STAGES, "draw"), 0.0)
            n = faces = 0
            t0 = time.perf_counter()
            for fr in rec.stream(path, detect_every=de):
                for k, v in fr.timings.items():
                    stages[k] += v
                if draw:
                    t = time.perf_counter()
                    annotate(fr.frame, fr.faces, bgr=True)
                    stages["draw"] += time.perf_counter() - t
                n += 1
                faces += len(fr.faces)
            wall = time.perf_counter() - t0
            passes.append(
                {
                    "fps": n / wall,
                    "frames": n,
                    "faces": faces,
                    "ms": {k: 1e3 * v / max(n, 1) for k, v in stages.items()},
                    "width": fr.width,
                    "height": fr.height,
                }
            )
    timed = sorted(passes[1:], key=lambda p: p["fps"])
    med = timed[len(timed) // 2]
    return {
        "source": str(source),
        "model": model,
        "backend": str(getattr(rec.classifier, "backend", backend)),
        "detector": detector,
        "detect_every": de,
        **med,
    }


def bench_int8_accuracy(
    model: str,
    data: str | os.PathLike,
    *,
    split: str = "PrivateTest",
    threads: int = 2,
    work_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy on ``split`` of torch, ONNX fp32 and ONNX int8 (calibrated on Training
    images of ``data``), and top-label agreement of each ONNX model with torch (``progress``:
    the int8 export's bars)."""
    set_threads(threads)
    d = load_dataset(data)
    sel = d.splits == split
    faces, labels = d.images[sel], np.asarray(d.labels)[sel]
    if len(faces) == 0:
        raise UserValueError(f"{data}: no {split} images")
    with tempfile.TemporaryDirectory(prefix="fervid-bench-") as tmp:
        q = int8_model(model, work_dir or tmp, data, progress)
        clfs = {
            "torch": load_classifier(model, backend="torch", device="cpu"),
            "onnx": load_classifier(model, backend="onnx", threads=threads),
            "onnx-int8": load_classifier(str(q), backend="onnx", threads=threads),
        }
        preds = {k: np.asarray(c.logits(faces)).argmax(1) for k, c in clfs.items()}
        quantization = str(read_metadata(q).get("quantization", ""))
    out: dict[str, Any] = {"model": model, "split": split, "n": int(len(faces)), "quantization": quantization}
    for k, p in preds.items():
        out[f"acc_{k}"] = float((p == labels).mean())
        if k != "torch":
            out[f"agree_{k}"] = float((p == preds["torch"]).mean())
    out["int8_drop_points"] = 100 * (out["acc_onnx"] - out["acc_onnx-int8"])
    return out


BENCH_PARTS = ("classifier", "video", "int8")


def run_benchmarks(
    what: list[str],
    data: str | os.PathLike | None = None,
    *,
    models: list[str],
    backends: list[str],
    video: str | os.PathLike | None = None,
    video_model: str = "fast",
    detect_every: int | None = None,
    threads: int = 2,
    repeats: int = 7,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the parts of ``what`` (:data:`BENCH_PARTS`) and return their rows by part
    (``progress``: a bar over the rows, :func:`fervid.runtime.progress_bar`).

    ``data``: the FER2013 CSV (default :func:`fervid.runtime.fer2013_csv`); ``video``: the clip
    for the pipeline test (default ``<data root>/media/short_hamilton_clip.mp4``). The video
    part runs at the clip's own size and at 640x480, with ``detect_every`` (default the
    library's) and, when that is the default, also with detection on every frame.
    """
    bad = set(what) - set(BENCH_PARTS)
    if bad:
        raise UserValueError(f"unknown benchmark part(s) {sorted(bad)}; choose from {', '.join(BENCH_PARTS)}")
    require_torch(what, backends)
    data = Path(data) if data else fer2013_csv()
    if data is None or not Path(data).exists():
        raise UserFileNotFoundError("FER2013 data not found: pass --data PATH/fer2013.csv.gz or set FERVID_DATA")
    data = Path(data)
    results: dict[str, Any] = {}
    video_rows = 2 * (1 + (detect_every is None))
    steps = (
        ("classifier" in what) * len(models) * len(backends)
        + ("video" in what) * video_rows
        + ("int8" in what) * len(models)
    )
    bar = progress_bar(total=steps, desc="fervid bench", unit="row", enabled=progress)
    try:  # closed before an error propagates: not redrawn after the error line at exit
        if "classifier" in what:
            d = load_dataset(data)
            faces = d.images[d.splits == "PrivateTest"][:1024]
            results["classifier"] = bench_classifiers(
                models, backends, faces, threads=threads, repeats=repeats, data=data, bar=bar
            )
        if "video" in what:
            clip = Path(video) if video else data.parent.parent / "media" / "short_hamilton_clip.mp4"
            if not clip.is_file():
                raise UserFileNotFoundError(f"no such video: {clip}")
            rows = []
            for size in (None, (640, 480)):
                bar.set_postfix_str(f"video {video_model} {'x'.join(map(str, size)) if size else 'own size'}")
                rows.append(
                    bench_pipeline(
                        clip,
                        model=video_model,
                        detect_every=detect_every,
                        size=size,
                        threads=threads,
                        repeats=max(1, min(repeats, 3)),
                    )
                )
                bar.update(1)
                if detect_every is None:
                    rows.append(
                        bench_pipeline(clip, model=video_model, detect_every=1, size=size, threads=threads, repeats=1)
                    )
                    bar.update(1)
            results["video"] = rows
        if "int8" in what:
            results["int8"] = []
            for m in models:
                bar.set_postfix_str(f"int8 accuracy {m}")
                results["int8"].append(bench_int8_accuracy(m, data, threads=threads, progress=progress))
                bar.update(1)
    finally:
        bar.close()
    return results


def markdown_tables(results: dict[str, Any]) -> str:
    """The rows of :func:`run_benchmarks` as Markdown tables (as pasted into BENCHMARKS.md)."""
    out: list[str] = []
    if "classifier" in results:
        out.append("\n| model | backend | faces/s, batch 64 | ms/face, batch 1 |\n|---|---|---|---|")
        out += [
            f"| {r['model']} | {r['backend']} | {r['faces_per_s_b64']:,.0f} | {r['ms_per_face_b1']:.3f} |"
            for r in results["classifier"]
        ]
    if "video" in results:
        out.append(
            "\n| input | detect every | frames | faces | fps | decode | detect | crop | classify | draw (ms/frame) |"
            "\n|---|---|---|---|---|---|---|---|---|---|"
        )
        for r in results["video"]:
            ms = r["ms"]
            out.append(
                f"| {Path(r['source']).name} {r['width']}x{r['height']} ({r['model']}, {r['backend']}) | "
                f"{r['detect_every']} | {r['frames']} | {r['faces']} | {r['fps']:.1f} | {ms['decode']:.2f} | "
                f"{ms['detect']:.2f} | {ms['crop']:.2f} | {ms['classify']:.2f} | {ms['draw']:.2f} |"
            )
    if "int8" in results:
        out.append(
            "\n| model | n | acc torch | acc onnx fp32 | acc onnx int8 | int8 drop (points) | "
            "top-1 agreement fp32 / int8 vs torch | int8 model |\n|---|---|---|---|---|---|---|---|"
        )
        out += [
            f"| {r['model']} | {r['n']} | {100 * r['acc_torch']:.2f}% | {100 * r['acc_onnx']:.2f}% | "
            f"{100 * r['acc_onnx-int8']:.2f}% | {r['int8_drop_points']:.2f} | "
            f"{100 * r['agree_onnx']:.2f}% / {100 * r['agree_onnx-int8']:.2f}% | {r['quantization']} |"
            for r in results["int8"]
        ]
    return "\n".join(out)
