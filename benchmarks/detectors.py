"""Face detector benchmark: recall, false positives and speed on real photos and video frames.

Usage (from the repository root)::

    .venv/bin/python benchmarks/detectors.py [--data ../shared/data] [--detectors haar,dlib,...]
                                             [--repeats 5] [--threads 1] [--sweep | --yunet-sweep]
                                             [--markdown]

Ground truth: the photos and video frames in ``<data>/media`` (see its README), annotated
by hand below (boxes ``x, y, w, h`` in the image's own pixels; video frames are 640x360).
``ignore`` boxes mark real but out-of-scope faces (a child looking straight down, people cut
by the image border, blurry background faces): a detection there is neither a hit nor a
false positive. A detection *matches* a face when its centre lies inside the face box and
its side (square root of the area) is within 0.5x..2x the face's; each face matches at most
one detection (highest score first); every other detection is a false positive.

No-face images: scikit-learn's two sample photos (``china.jpg``, a temple; ``flower.jpg``),
640x427, shipped with scikit-learn (a fervid dependency): every detection there is a false
positive (column "no-face FP").

Speed: median milliseconds per ``detect`` call on 640x480 images (all test images resized
to 640x480), over ``--repeats`` passes after one warm-up pass, single process. The
detectors are timed *round-robin* (one pass of each per round), so a load change on a
shared machine hits them all alike; the ratio column is against the first ``haar`` row of
the same run. ``--threads`` sets OpenCV's and onnxruntime's thread count.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fervid.data.io import load_image  # noqa: E402
from fervid.detectors import FaceBox, create_detector  # noqa: E402

Box = tuple[int, int, int, int]


@dataclass
class Item:
    name: str
    faces: list[Box]
    ignore: list[Box] = field(default_factory=list)
    frame: int | None = None  # video frame index, None for photos


PHOTOS = [
    Item("two_people.jpg", [(233, 27, 178, 179), (786, 65, 170, 169)]),
    Item("obama.jpg", [(351, 97, 294, 294)]),
    Item("obama-480p.jpg", [(377, 40, 135, 135)]),
    # A third, real face (a child looking down, bottom right) and a person cut by the right border.
    Item(
        "obama_and_biden.jpg",
        [(742, 418, 194, 193), (1123, 365, 227, 227)],
        ignore=[(1560, 1000, 240, 260), (1860, 500, 140, 600)],
    ),
    Item("obama_partial_face.jpg", [(0, 150, 200, 230)]),
    Item("lin-manuel-miranda.png", [(239, 127, 356, 356)]),
    Item("32bit.png", [(137, 236, 349, 349)], ignore=[(540, 300, 86, 400)]),
]

# short_hamilton_clip.mp4 (640x360). Frames 25-75 are left out: only blurry background
# faces and the performer in extreme profile, cut by the border (nothing clear to score).
FRAMES = [
    Item("frame 0", [(56, 186, 31, 31), (519, 41, 59, 59)], frame=0),
    Item("frame 100", [(189, 90, 100, 100)], frame=100),
    Item("frame 125", [(185, 45, 95, 95)], frame=125),
    Item("frame 150", [(202, 28, 101, 101)], frame=150),
    Item("frame 175", [(199, 64, 105, 105)], frame=175),
    Item("frame 200", [(245, 45, 100, 100)], frame=200),
    # (25, 15, 60, 85): a blurred background face behind the top-left one, a 3/4 view; added
    # to the ignore regions on review when YuNet found it (visible in the brightened frame).
    Item(
        "frame 225",
        [(40, 65, 66, 66), (153, 93, 68, 68), (313, 37, 60, 97), (360, 73, 107, 107)],
        ignore=[(590, 60, 50, 120), (0, 200, 200, 160), (25, 15, 60, 85)],
        frame=225,
    ),
    Item(
        "frame 250",
        [(37, 64, 57, 57), (162, 100, 62, 62), (320, 40, 55, 95), (372, 82, 96, 96)],
        ignore=[(590, 60, 50, 140), (0, 200, 200, 160)],
        frame=250,
    ),
]

# name -> (registered detector, kwargs)
DETECTORS: dict[str, tuple[str, dict]] = {
    "yunet": ("yunet", {}),
    "yunet photo, one 640 px pass (before coarse to fine)": ("yunet", {"coarse_side": None}),
    "yunet video (320 px, score 0.6)": ("yunet", {"max_side": 320, "score_threshold": 0.6}),
    "yunet opencv": ("yunet", {"backend": "opencv"}),
    "yunet opencv video (320 px, score 0.6)": ("yunet", {"backend": "opencv", "max_side": 320, "score_threshold": 0.6}),
    "haar": ("haar", {}),
    "haar-profile": ("haar-profile", {}),
    "haar min_size=0.1": ("haar", {"min_size": 0.1}),
    "haar scale_factor=1.2": ("haar", {"scale_factor": 1.2}),
    "haar frontalface_default n=5": ("haar", {"cascade": "haarcascade_frontalface_default.xml", "min_neighbors": 5}),
    "dlib": ("dlib", {}),
    "dlib upsample=0": ("dlib", {"upsample": 0}),
}

SWEEP: dict[str, tuple[str, dict]] = {
    f"haar {c.split('_', 1)[1].removesuffix('.xml')} n={n} sf={sf}{' eq' if eq else ''}": (
        "haar",
        {"cascade": c, "min_neighbors": n, "scale_factor": sf, "equalize": eq},
    )
    for c in (
        "haarcascade_frontalface_default.xml",
        "haarcascade_frontalface_alt.xml",
        "haarcascade_frontalface_alt2.xml",
    )
    for n in (3, 4, 5, 8)
    for sf in (1.1, 1.2)
    for eq in (False,)
}


YUNET_SWEEP: dict[str, tuple[str, dict]] = {
    f"yunet {side} px, score {thr}": ("yunet", {"max_side": side, "score_threshold": thr})
    for side in (256, 320, 416, 480, 640, 800)
    for thr in (0.5, 0.6, 0.7, 0.8, 0.9)
}

NO_FACE = ("china.jpg", "flower.jpg")  # sklearn.datasets.load_sample_image


def load_no_face() -> list[tuple[str, np.ndarray]]:
    from sklearn.datasets import load_sample_image

    return [(n, np.ascontiguousarray(load_sample_image(n))) for n in NO_FACE]


def load_items(data: Path) -> list[tuple[Item, np.ndarray]]:
    import cv2

    media = data / "media"
    out = [(it, load_image(media / it.name)) for it in PHOTOS]
    cap = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    frames: dict[int, np.ndarray] = {}
    want = {it.frame for it in FRAMES}
    i = 0
    while want - frames.keys():
        ok, f = cap.read()
        if not ok:
            break
        if i in want:
            frames[i] = np.ascontiguousarray(f[:, :, ::-1])
        i += 1
    cap.release()
    out += [(it, frames[it.frame]) for it in FRAMES if it.frame in frames]
    return out


def _inside(cx: float, cy: float, b: Box) -> bool:
    return b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3]


def score_item(item: Item, dets: list[FaceBox]) -> tuple[int, int]:
    """(faces found, false positives) for one image."""
    matched: set[int] = set()
    fp = 0
    for d in sorted(dets, key=lambda d: -d.score):
        cx, cy, side = d.x + d.w / 2, d.y + d.h / 2, (d.w * d.h) ** 0.5
        hit = next(
            (
                j
                for j, g in enumerate(item.faces)
                if j not in matched and _inside(cx, cy, g) and 0.5 <= side / (g[2] * g[3]) ** 0.5 <= 2.0
            ),
            None,
        )
        if hit is not None:
            matched.add(hit)
        elif not any(_inside(cx, cy, g) for g in item.ignore + item.faces):
            fp += 1
        elif not any(_inside(cx, cy, g) for g in item.ignore):
            fp += 1  # a wrong-sized box on a face, or a duplicate
    return len(matched), fp


def time_detectors(dets: dict[str, object], images: list[np.ndarray], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall ms, CPU ms) per detect() on 640x480 versions of ``images``, detectors
    timed round-robin. CPU ms is the calling thread's CPU time (``time.thread_time``): with
    one thread (``--threads 1``) the whole detection runs in it, so it is what the call costs
    on an idle core even while other jobs share the machine."""
    import cv2

    small = [cv2.resize(im, (640, 480), interpolation=cv2.INTER_AREA) for im in images]
    for det in dets.values():
        for im in small:
            det.detect(im)  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {k: [] for k in dets}
    cpu: dict[str, list[float]] = {k: [] for k in dets}
    for _ in range(repeats):
        for k, det in dets.items():
            for im in small:
                t, c = time.perf_counter(), time.thread_time()
                det.detect(im)  # type: ignore[attr-defined]
                cpu[k].append((time.thread_time() - c) * 1e3)
                times[k].append((time.perf_counter() - t) * 1e3)
    return {k: (statistics.median(times[k]), statistics.median(cpu[k])) for k in dets}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERVID_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--detectors", default=";".join(DETECTORS), help="semicolon-separated names from the table")
    ap.add_argument("--repeats", type=int, default=5, help="timing passes (0: no timing)")
    ap.add_argument("--threads", type=int, default=None, help="OpenCV and onnxruntime threads (default: theirs)")
    ap.add_argument(
        "--sweep", action="store_true", help="Haar parameter sweep instead (cascade x min_neighbors x equalize)"
    )
    ap.add_argument("--yunet-sweep", action="store_true", help="YuNet input size x score threshold sweep instead")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--per-image", action="store_true", help="print each image's result")
    args = ap.parse_args(argv)

    import cv2

    if args.threads:
        cv2.setNumThreads(args.threads)
    items = load_items(Path(args.data))
    no_face = load_no_face()
    table = (
        SWEEP
        if args.sweep
        else YUNET_SWEEP
        if args.yunet_sweep
        else {k: DETECTORS[k] for k in args.detectors.split(";")}
    )
    n_photo = sum(len(it.faces) for it, _ in items if it.frame is None)
    n_frame = sum(len(it.faces) for it, _ in items if it.frame is not None)
    rows, dets = [], {}
    for label, (name, kw) in table.items():
        if name == "yunet" and args.threads:
            kw = {"threads": args.threads, **kw}
        try:
            det = create_detector(name, **kw)
            results = [(it, det.detect(im)) for it, im in items]
            nf = sum(len(det.detect(im)) for _, im in no_face)
        except ImportError as e:
            print(f"# {label}: skipped ({e})", file=sys.stderr)
            continue
        hp = fp_p = hf = fp_f = 0
        for it, found in results:
            h, f = score_item(it, found)
            if args.per_image:
                print(f"  {label:28s} {it.name:24s} faces {h}/{len(it.faces)}  fp {f}  {[d.box for d in found]}")
            if it.frame is None:
                hp, fp_p = hp + h, fp_p + f
            else:
                hf, fp_f = hf + h, fp_f + f
        dets[label] = det
        rows.append((label, hp, fp_p, hf, fp_f, nf))
    ms = time_detectors(dets, [im for _, im in items], args.repeats) if args.repeats > 0 else {}
    ref = ms.get("haar")

    print(
        f"# {len([i for i, _ in items if i.frame is None])} photos ({n_photo} faces), "
        f"{len([i for i, _ in items if i.frame is not None])} video frames ({n_frame} faces), "
        f"{len(no_face)} no-face photos; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"cv2 {cv2.__version__} ({cv2.getNumThreads()} threads), load average {os.getloadavg()[0]:.1f}"
    )

    def t(label: str) -> tuple[str, str, str]:
        if label not in ms:
            return "-", "-", "-"
        (w, c) = ms[label]
        return f"{w:.1f}", f"{c:.1f}", (f"{w / ref[0]:.3f}x / {c / ref[1]:.3f}x" if ref else "-")

    if args.markdown:
        print(
            "| detector | photo recall | photo FP | video recall | video FP | no-face FP | ms / 640x480 wall | "
            "CPU ms | vs haar (wall / CPU) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for label, hp, fp_p, hf, fp_f, nf in rows:
            w, c, r = t(label)
            print(f"| {label} | {hp}/{n_photo} | {fp_p} | {hf}/{n_frame} | {fp_f} | {nf} | {w} | {c} | {r} |")
    else:
        print(
            f"{'detector':40s} {'photo recall':>12s} {'FP':>4s} {'video recall':>12s} {'FP':>4s} {'no-face':>7s} "
            f"{'wall ms':>8s} {'CPU ms':>7s} {'vs haar (wall / CPU)':>22s}"
        )
        for label, hp, fp_p, hf, fp_f, nf in rows:
            w, c, r = t(label)
            print(
                f"{label:40s} {hp:>5d}/{n_photo:<6d} {fp_p:>4d} {hf:>5d}/{n_frame:<6d} {fp_f:>4d} {nf:>7d} "
                f"{w:>8s} {c:>7s} {r:>22s}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
