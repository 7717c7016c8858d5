"""Face detection behind one small interface.

A detector is any object with ``detect(image) -> list[FaceBox]``, where ``image`` is an
``H x W x 3`` RGB or ``H x W`` grey ``uint8`` array and every box is in the **original
image's pixel coordinates** (``x, y, w, h``, clipped to the image) with a detector score
(higher is more confident; the scale depends on the detector). Detectors that find facial
landmarks (``yunet``) also fill :attr:`FaceBox.landmarks`: five ``(x, y)`` points in the
original image's pixels, in :data:`LANDMARK_NAMES` order; the crop
(:func:`fervid.inference.crop.crop_face`) aligns the face on them.

Built-in detectors (``create_detector(name)``, ``available_detectors()``):

``yunet`` (default)
    YuNet-s (libfacedetection, 75 k parameters, 232 KB ONNX shipped in the wheel under
    ``fervid/weights/yunet/`` with its MIT and Apache-2.0 notices; sha256 checked at load):
    a small CNN that also returns five landmarks. Runs through onnxruntime when it is
    installed, else OpenCV's ``cv2.FaceDetectorYN`` (every opencv-python 4.8+ wheel); both
    give the same boxes. The image is shrunk (:func:`shrink`) so its longer side is at most
    ``max_side`` (photos 640, video 320: :data:`YUNET_PHOTO`, :data:`YUNET_VIDEO`). Photos
    up to ``max_side`` are detected coarse to fine: first at 320 px (or 1/1.25 of the
    photo's longer side if that is larger), again at full size only when that pass finds
    nothing, a face under 24 px or a doubtful candidate (a ~400 px portrait: one 320 px
    pass; small faces: both). Video runs one pass. Score: the detector's confidence, 0..1.
``haar``
    OpenCV's frontal-face Haar cascade (``alt2``) from ``cv2.data`` (shipped in every
    ``opencv-python(-headless)`` 4.x wheel). Images larger than ``max_side`` are downscaled
    for detection and the boxes mapped back. Score: the number of raw detections merged
    into the box (>= ``min_neighbors``). No landmarks.
``haar-profile``
    ``haar`` plus the profile cascade (run on the image and its mirror) for turned heads;
    higher recall on side views, slower, a few more false positives.
``dlib``
    dlib's HOG + linear SVM frontal detector (``pip install fervid[dlib]``, a CPU wheel);
    more precise boxes and fewer false positives than Haar. Score: the SVM margin.
``skip``
    No detection: the whole image is one face (for images that are already face crops,
    e.g. FER2013 48x48 images). Score 1.0.

Add your own with :func:`register_detector`. Measurements: ``benchmarks/detectors.md``.

Thread safety: every built-in detector may be shared by threads (one
``EmotionRecognizer`` serving many requests) and gives each thread the answer it would
give alone. ``yunet``: the model loads once under a lock, and OpenCV's ``FaceDetectorYN``
(which keeps the input size and threshold as state) runs under it; onnxruntime sessions
are thread-safe. ``haar``/``haar-profile``: ``cv2.CascadeClassifier`` is not (shared, it
returned wrong boxes and raised ``cv2.error``): detections run one at a time under the
detector's lock. ``dlib``: one call at a time under a lock (dlib documents no thread
safety). ``skip``: no state. A detector of your own that is not thread-safe needs its own
lock, or one instance per thread. Detector options are checked when the detector is
made (:func:`create_detector`): an unknown option or a value out of range is a
:class:`~fervid.errors.UserValueError`, the same from the API, the CLI and configs.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fervid.errors import FervidError, UserValueError

DEFAULT_DETECTOR = "yunet"

LANDMARK_NAMES: tuple[str, ...] = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
"""The five landmarks, in order. *Right* and *left* are the person's own: in a frontal photo
the right eye is on the image's left."""

Landmarks = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FaceBox:
    """One detected face: box in original-image pixels, the detector's score and, for
    detectors that find them, five landmarks (``(x, y)`` in original-image pixels, in
    :data:`LANDMARK_NAMES` order; ``None`` otherwise)."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    landmarks: Landmarks | None = None

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``."""
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        return self.w * self.h

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def moved(self, dx: float, dy: float, scale: float = 1.0) -> FaceBox:
        """This face in another frame of reference: every coordinate times ``scale``, plus
        ``(dx, dy)`` (e.g. from a window of a frame back to the frame)."""
        lm = None if self.landmarks is None else tuple((dx + px * scale, dy + py * scale) for px, py in self.landmarks)
        return FaceBox(
            int(round(dx + self.x * scale)),
            int(round(dy + self.y * scale)),
            int(round(self.w * scale)),
            int(round(self.h * scale)),
            self.score,
            lm,
        )


def landmarks_dict(landmarks: Landmarks | None) -> dict[str, list[float]] | None:
    """``{"right_eye": [x, y], "left_eye": ..., "nose": ..., "mouth_right": ..., "mouth_left": ...}``
    (pixels, 2 decimals): the JSON form of landmarks in results; ``None`` stays ``None``."""
    if landmarks is None:
        return None
    return {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(LANDMARK_NAMES, landmarks)}


def landmark_columns() -> list[str]:
    """Table columns of the landmarks: ``right_eye_x, right_eye_y, ..., mouth_left_y``."""
    return [f"{n}_{c}" for n in LANDMARK_NAMES for c in "xy"]


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB (``H x W x 3``) or grey (``H x W``) ``uint8`` image."""

    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]: ...


class DetectorUnavailableError(FervidError, ImportError):
    """An optional detector's dependency is not installed (the message says what to install)."""


# --------------------------------------------------------------------------- helpers


def _detector_input(image: np.ndarray) -> np.ndarray:
    """A detector input checked and viewed as ``H x W`` grey or ``H x W x 3`` (no copy)."""
    if image.dtype != np.uint8:
        raise TypeError(f"detectors take uint8 images, got {image.dtype} (use fervid.data.io.load_image)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    raise UserValueError(f"expected an H x W or H x W x 3 image, got shape {image.shape}")


def _as_gray(image: np.ndarray) -> np.ndarray:
    image = _detector_input(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def _check_number(
    name: str,
    value: Any,
    *,
    low: float,
    integer: bool = False,
    none_ok: bool = False,
    open_low: bool = False,
    high: float | None = None,
) -> None:
    """Refuse (:class:`UserValueError`) a detector option that is not a finite number in
    range (``low`` inclusive unless ``open_low``; ``high`` inclusive), an integer where one
    is needed, or ``None`` where ``None`` means nothing: the options reach the detector
    from the API, the CLI and configs alike, and a wrong one must not mean "no faces"."""
    if value is None and none_ok:
        return
    what = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UserValueError(f"detector option {name} must be {what}{' or None' if none_ok else ''}, got {value!r}")
    if integer and not float(value).is_integer():
        raise UserValueError(f"detector option {name} must be an integer, got {value!r}")
    v = float(value)
    bad_low = v <= low if open_low else v < low
    if not math.isfinite(v) or bad_low or (high is not None and v > high):
        rng = f"{'>' if open_low else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise UserValueError(f"detector option {name} must be {rng}, got {value!r}")


MIN_SIDE = 32
"""Smallest ``max_side`` a detector accepts: below it no face can be found."""


def _downscale(gray: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns (image, scale original/small)."""
    h, w = gray.shape[:2]
    size = _fit(w, h, max_side)
    if size == (w, h):
        return gray, 1.0
    import cv2

    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), max(h, w) / max_side


def _clip_box(x: float, y: float, w: float, h: float, score: float, W: int, H: int) -> FaceBox | None:
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(W, int(round(x + w))), min(H, int(round(y + h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return FaceBox(x0, y0, x1 - x0, y1 - y0, float(score))


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def _overlap_min(a: FaceBox, b: FaceBox) -> float:
    """Intersection over the smaller box: catches a small box nested inside a big one."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    m = min(a.area, b.area)
    return ix * iy / m if m else 0.0


def non_max_suppression(boxes: list[FaceBox], threshold: float = 0.3) -> list[FaceBox]:
    """Keep the highest-scoring box of each overlapping group (IoU or nesting > ``threshold``)."""
    kept: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: (-b.score, -b.area)):
        if all(iou(b, k) <= threshold and _overlap_min(b, k) <= 0.6 for k in kept):
            kept.append(b)
    return kept


def sort_reading_order(boxes: list[FaceBox]) -> list[FaceBox]:
    """Left to right (then top to bottom): a stable, predictable order for results."""
    return sorted(boxes, key=lambda b: (b.x, b.y))


# --------------------------------------------------------------------------- detectors


class SkipDetector:
    """The whole image is one face (for inputs that are already face crops).

    ``whole_image = True`` tells :class:`fervid.inference.recognizer.EmotionRecognizer` not to add
    the model's face margin around the box (the crop already is the face)."""

    name = "skip"
    whole_image = True

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        return [FaceBox(0, 0, int(w), int(h), 1.0)] if h and w else []

    def __repr__(self) -> str:
        return "SkipDetector()"


class HaarDetector:
    """OpenCV Haar cascade face detector (frontal, optionally plus profile).

    Args:
        cascade: file name in ``cv2.data.haarcascades`` or a path to a cascade XML. The
            default ``alt2`` cascade with ``min_neighbors=4`` had the best recall without
            false positives among the frontal cascades in ``benchmarks/detectors.md``.
        scale_factor: image pyramid step (smaller: slower, slightly higher recall).
        min_neighbors: raw detections needed to keep a box (higher: fewer false positives).
        profile_min_neighbors: the same for the profile cascade (stricter: it fires more often).
        min_size: smallest face side in pixels **of the original image**, or a fraction of
            the image's shorter side when < 1 (default 0.05, floor 24 px in the
            detection image).
        max_side: images whose longer side exceeds this are downscaled for detection
            (boxes are mapped back to original coordinates). ``None``: never.
        profile: also run the profile-face cascade on the image and its mirror.
        equalize: histogram-equalise before detection (off: it added false positives and
            lost faces in the benchmark).
    """

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_alt2.xml",
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 4,
        min_size: float = 0.05,
        max_side: int | None = 1024,
        profile: bool = False,
        profile_min_neighbors: int = 6,
        equalize: bool = False,
        name: str | None = None,
    ):
        _check_number("scale_factor", scale_factor, low=1.0, open_low=True)
        _check_number("min_neighbors", min_neighbors, low=0, integer=True)
        _check_number("profile_min_neighbors", profile_min_neighbors, low=0, integer=True)
        _check_number("min_size", min_size, low=0, open_low=True)
        _check_number("max_side", max_side, low=MIN_SIDE, integer=True, none_ok=True)
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side
        self.profile = profile
        self.profile_min_neighbors = profile_min_neighbors
        self.equalize = equalize
        self.name = name or ("haar-profile" if profile else "haar")
        self._cascades: list[Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"HaarDetector(cascade={self.cascade!r}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, max_side={self.max_side}, "
            f"profile={self.profile})"
        )

    @staticmethod
    def _load(file: str) -> Any:
        import os

        import cv2

        path = (
            file
            if os.path.isfile(file)
            else os.path.join(cv2.data.haarcascades, file)
            if hasattr(cv2, "data")
            else file
        )
        if not os.path.isfile(path):
            raise DetectorUnavailableError(
                f"Haar cascade {file!r} not found (looked in cv2.data.haarcascades); opencv-python(-headless) "
                "5.x ships no cascade files: install opencv-python-headless<5 or pass detector='dlib'"
            )
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise DetectorUnavailableError(f"could not load Haar cascade {path}")
        return c

    def _get(self) -> list[Any]:
        with self._lock:
            if self._cascades is None:
                cs = [self._load(self.cascade)]
                if self.profile:
                    cs.append(self._load("haarcascade_profileface.xml"))
                self._cascades = cs
        return self._cascades

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        import cv2

        cascades = self._get()
        gray = _as_gray(image)
        H, W = gray.shape
        small, scale = _downscale(gray, self.max_side)
        if self.equalize:
            small = cv2.equalizeHist(small)
        sh, sw = small.shape
        ms = self.min_size * min(sh, sw) if self.min_size < 1 else self.min_size / scale
        ms = int(max(24, ms))
        if min(sh, sw) < ms:
            return []
        with self._lock:  # cv2.CascadeClassifier keeps per-call state: one detection at a time
            raw = self._run(cascades, small, ms, scale, W, H)
        return sort_reading_order(non_max_suppression(raw))

    def _run(self, cascades: list[Any], small: np.ndarray, ms: int, scale: float, W: int, H: int) -> list[FaceBox]:
        sw = small.shape[1]
        raw: list[FaceBox] = []
        for i, casc in enumerate(cascades):
            variants = [(small, False)] if i == 0 else [(small, False), (np.ascontiguousarray(small[:, ::-1]), True)]
            for img, mirrored in variants:
                rects, counts = casc.detectMultiScale2(
                    img,
                    scaleFactor=self.scale_factor,
                    minSize=(ms, ms),
                    minNeighbors=self.min_neighbors if i == 0 else self.profile_min_neighbors,
                )
                for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(counts).reshape(-1)):
                    if mirrored:
                        x = sw - x - w
                    # profile boxes rank below frontal ones of the same support
                    score = float(n) if i == 0 else float(n) * 0.5
                    b = _clip_box(x * scale, y * scale, w * scale, h * scale, score, W, H)
                    if b is not None:
                        raw.append(b)
        return raw


class DlibHogDetector:
    """dlib's HOG frontal face detector (optional: ``pip install fervid[dlib]``).

    Args:
        upsample: times to upsample the detection image (1 finds faces down to ~40 px
            in the detection image; each step is ~4x slower).
        threshold: SVM score threshold (``adjust_threshold``); higher: fewer false positives.
        max_side: downscale larger images to this longer side for detection.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, threshold: float = 0.0, max_side: int | None = 1024):
        _check_number("upsample", upsample, low=0, integer=True)
        _check_number("threshold", threshold, low=-math.inf)
        _check_number("max_side", max_side, low=MIN_SIDE, integer=True, none_ok=True)
        self.upsample = upsample
        self.threshold = threshold
        self.max_side = max_side
        self._det: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DlibHogDetector(upsample={self.upsample}, threshold={self.threshold}, max_side={self.max_side})"

    def _get(self) -> Any:
        with self._lock:
            if self._det is None:
                try:
                    import dlib
                except ImportError as e:
                    raise DetectorUnavailableError(
                        "detector 'dlib' needs the dlib package: pip install 'fervid[dlib]' (installs dlib-bin)"
                    ) from e
                self._det = dlib.get_frontal_face_detector()
        return self._det

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        det = self._get()
        gray = _as_gray(image)
        H, W = gray.shape
        small, scale = _downscale(gray, self.max_side)
        with self._lock:  # dlib documents no thread-safety for its detector objects: one call at a time
            rects, scores, _ = det.run(small, self.upsample, self.threshold)
        out = []
        for r, s in zip(rects, scores):
            b = _clip_box(r.left() * scale, r.top() * scale, r.width() * scale, r.height() * scale, s, W, H)
            if b is not None:
                out.append(b)
        return sort_reading_order(non_max_suppression(out))


# --------------------------------------------------------------------------- YuNet

YUNET_DIR = Path(__file__).resolve().parents[1] / "weights" / "yunet"
YUNET_FILES = {"onnxruntime": "yunet_s_dynamic.onnx", "opencv": "face_detection_yunet_2023mar.onnx"}
"""The same YuNet-s weights twice: a dynamic-shape export for onnxruntime and the
fixed-shape file OpenCV's ``FaceDetectorYN`` reshapes itself (``fervid/weights/yunet``)."""
YUNET_BACKENDS = ("auto", "onnxruntime", "opencv")

# Input size and thresholds, chosen on the hand-annotated media (benchmarks/yunet.md:
# `python benchmarks/detectors.py --yunet-sweep`). Photos: small faces in large photos need
# the larger input; 0.7 keeps hands and lamps out. Video: 320 px (4x fewer pixels) finds
# every annotated video face at a quarter of the cost; the tracker bridges a missed frame.
# Photos are detected coarse to fine (YuNetDetector.detect): first at ``coarse_side`` and at
# ``max_side`` only when the coarse pass leaves a doubt; video runs one pass (a steady cost).
YUNET_PHOTO: dict[str, Any] = {"max_side": 640, "score_threshold": 0.7, "coarse_side": 320}
YUNET_VIDEO: dict[str, Any] = {"max_side": 320, "score_threshold": 0.6, "coarse_side": None}

# When the coarse pass of a photo is trusted (benchmarks/yunet.md, "coarse to fine"). YuNet's
# score on the annotated faces shrunk to s px at its input: 0 at 8 px, 0.3-0.75 at 10-12 px,
# >= 0.7 for every face from 28 px (most from 16 px); at 640 px it finds faces from ~17 px.
# Such a face is, at a coarse input at least 1/1.25 of the fine one, >= ~13 px: found, or a
# candidate scoring in [YUNET_REFINE_SCORE, score_threshold) that sends the photo to the fine
# pass (of 246 real 15-30 px faces pasted into the two no-face photos and found at 640 px,
# 2 left no such candidate at 512 px; 51 at ratio 1.5 with 0.3). A face found below
# YUNET_SMALL_FACE px at the coarse input means a photo of small faces whose neighbours may
# score lower: fine pass too; and so does a coarse pass that finds nothing.
YUNET_COARSE_RATIO = 1.25
"""The coarse input's longer side is at least the fine one's divided by this."""
YUNET_REFINE_SCORE = 0.15
"""A coarse candidate scoring at least this but below ``score_threshold``: detect again finer
(the 400 px portraits of ``benchmarks/pipeline_speed.py`` have none; 6 of 8 annotated video
frames, detected as photos, have one)."""
YUNET_SMALL_FACE = 24
"""A coarse face smaller than this (square root of the box area, pixels of the coarse input):
detect again finer."""

_VERIFIED: dict[Path, str] = {}
_VERIFY_LOCK = threading.Lock()


def yunet_weights(backend: str) -> tuple[Path, str | None]:
    """The bundled YuNet file for ``backend`` (``"onnxruntime"`` or ``"opencv"``) and its
    sha256 from ``fervid/weights/manifest.json`` (``None`` when the manifest lacks it)."""
    path = YUNET_DIR / YUNET_FILES[backend]
    manifest = YUNET_DIR.parent / "manifest.json"
    sha = None
    if manifest.is_file():
        for e in json.loads(manifest.read_text()).get("detectors", []):
            if Path(e["file"]).name == path.name:
                sha = e["sha256"]
    return path, sha


def verify_sha256(path: Path, sha256: str | None) -> Path:
    """``path`` after checking its sha256 (once per process); a clear error when it is
    missing, corrupt or modified."""
    if not path.is_file():
        raise DetectorUnavailableError(f"YuNet weights not found: {path} (a broken fervid install? reinstall fervid)")
    if sha256 is None:
        return path
    with _VERIFY_LOCK:
        if _VERIFIED.get(path) != sha256:
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            if got != sha256:
                raise DetectorUnavailableError(
                    f"{path}: sha256 {got} does not match the expected {sha256}; "
                    "the file is corrupt or was modified (reinstall fervid)"
                )
            _VERIFIED[path] = sha256
    return path


def _fit(w: int, h: int, side: int | None) -> tuple[int, int]:
    """``(w, h)`` shrunk so the longer side is at most ``side`` (never enlarged)."""
    if not side or max(w, h) <= side:
        return w, h
    s = side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def shrink(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """``image`` reduced to ``size`` (``w, h``), and the scale factors back to the original
    pixels (``x_original = x_small * sx``).

    Area averaging by the largest whole factor ``k`` (OpenCV's fast integer path; the image is
    first cut to a multiple of ``k``, dropping under ``k`` pixels at the right and bottom),
    then bilinear for the remaining factor (< 2, where bilinear barely aliases).
    ``cv2.INTER_AREA`` straight to a fractional size costs 2-8 ms on a 1000-2000 px photo
    and 0.8 ms from 400 to 320 px (opencv 4.14, one core): more than YuNet itself at 320 px."""
    import cv2

    H, W = image.shape[:2]
    w, h = size
    if (w, h) == (W, H):
        return image, 1.0, 1.0
    k = min(W // w, H // h)
    Wk, Hk = W, H
    if k >= 2:
        Wk, Hk = W - W % k, H - H % k
        image = cv2.resize(image[:Hk, :Wk], (Wk // k, Hk // k), interpolation=cv2.INTER_AREA)
    if image.shape[1] != w or image.shape[0] != h:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return image, Wk / w, Hk / h


def _yunet_blob(image: np.ndarray, swap_rb: bool) -> np.ndarray:
    """YuNet's onnxruntime input: ``1 x 3 x H' x W'`` float32 BGR planes, zero-padded to a
    multiple of 32 (what OpenCV's ``FaceDetectorYN`` feeds its network), straight from an
    RGB (``swap_rb``), BGR or grey ``uint8`` image: one pass per plane, no BGR copy."""
    import cv2

    h, w = image.shape[:2]
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    x = np.empty((1, 3, ph, pw), np.float32)
    x[:, :, h:, :] = 0
    x[:, :, :h, w:] = 0
    if image.ndim == 2:
        x[0, :, :h, :w] = image
    else:
        planes = cv2.split(image)
        for c, plane in enumerate(planes[::-1] if swap_rb else planes):
            x[0, c, :h, :w] = plane
    return x


def decode_yunet(
    outputs: dict[str, np.ndarray],
    pad_w: int,
    pad_h: int,
    score_threshold: float,
    nms_threshold: float,
    top_k: int = 5000,
) -> np.ndarray:
    """YuNet's raw outputs (``cls_s``, ``obj_s``, ``bbox_s``, ``kps_s`` for strides 8, 16,
    32) on a ``pad_w x pad_h`` input -> ``N x 15`` float32 rows ``x, y, w, h``, five
    landmarks ``(x, y)``, score, after NMS: the decoding of OpenCV's ``FaceDetectorYN``
    (``modules/objdetect/src/face_detect.cpp``), step for step, so both give the same faces."""
    import cv2

    rows_out = []
    for s in (8, 16, 32):
        cols = pad_w // s
        cls = outputs[f"cls_{s}"].reshape(-1)
        obj = outputs[f"obj_{s}"].reshape(-1)
        score = np.sqrt(np.minimum(np.maximum(cls, 0), 1) * np.minimum(np.maximum(obj, 0), 1))  # clip, cheaper
        idx = np.flatnonzero(score >= score_threshold)
        if not len(idx):
            continue
        bbox = outputs[f"bbox_{s}"].reshape(-1, 4)[idx]
        kps = outputs[f"kps_{s}"].reshape(-1, 10)[idx]
        r, c = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
        cx, cy = (c + bbox[:, 0]) * s, (r + bbox[:, 1]) * s
        w, h = np.exp(bbox[:, 2]) * s, np.exp(bbox[:, 3]) * s
        lm = np.empty((len(idx), 10), np.float32)
        lm[:, 0::2] = (kps[:, 0::2] + c[:, None]) * s
        lm[:, 1::2] = (kps[:, 1::2] + r[:, None]) * s
        rows_out.append(np.column_stack([cx - w / 2, cy - h / 2, w, h, lm, score[idx]]).astype(np.float32))
    if not rows_out:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(rows_out)
    if len(faces) > 1:  # OpenCV's NMS on integer (truncated) boxes
        rects = [(int(x), int(y), int(w), int(h)) for x, y, w, h in faces[:, :4].tolist()]
        keep = np.asarray(
            cv2.dnn.NMSBoxes(rects, faces[:, 14].tolist(), score_threshold, nms_threshold, top_k=top_k), np.int64
        ).reshape(-1)
        faces = faces[keep]
    return faces


class YuNetDetector:
    """YuNet-s face detector with five landmarks (the default detector).

    Args:
        max_side: the image is shrunk (:func:`shrink`) so its longer side is at most this
            for detection; boxes and landmarks are mapped back to the original pixels.
            YuNet finds faces down to ~10 px in the detection image. Photos 640 (default),
            video 320 (:data:`YUNET_VIDEO`, what :mod:`fervid.inference.video` uses).
        score_threshold: keep faces scoring at least this (0..1). 0.9 (OpenCV's demo)
            loses turned and blurred faces; hands and lamps appeared at 0.5 and below.
        coarse_side: detect coarse to fine (photos: 320, the default; ``None``: one pass at
            ``max_side``, as video does). When the image is larger than this, YuNet first
            runs at this longer side (or at the image's longer side / 1.25 if that is larger) and its
            faces are the answer when the pass is clear: at least one face, none smaller
            than :data:`YUNET_SMALL_FACE` px there, and no doubtful candidate (scoring
            :data:`YUNET_REFINE_SCORE` or more but under ``score_threshold``). Otherwise it
            runs again at ``max_side`` and that pass is the answer. A ~400 px photo of one
            face costs a 320 px pass instead of a 400 px one; small faces still get the
            ``max_side`` pass (benchmarks/yunet.md, "coarse to fine").
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.
        top_k: most candidates kept by the NMS.
        backend: ``"auto"`` (onnxruntime when installed, else OpenCV), ``"onnxruntime"``
            or ``"opencv"``; both run the same weights and give the same boxes.
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default). The OpenCV
            backend follows ``cv2.setNumThreads``.
        model: another YuNet ONNX file instead of the bundled one (no sha256 check).

    :attr:`input_sizes` counts the network's input sizes ``(w, h)`` (before padding) over
    every pass this detector has run: what the coarse-to-fine choice did.
    """

    name = "yunet"

    def __init__(
        self,
        max_side: int | None = YUNET_PHOTO["max_side"],
        score_threshold: float = YUNET_PHOTO["score_threshold"],
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        backend: str = "auto",
        threads: int | None = None,
        model: str | Path | None = None,
        coarse_side: int | None = YUNET_PHOTO["coarse_side"],
    ):
        if backend not in YUNET_BACKENDS:
            raise UserValueError(f"unknown YuNet backend {backend!r}; available: {', '.join(YUNET_BACKENDS)}")
        _check_number("score_threshold", score_threshold, low=0.0, high=1.0)
        _check_number("nms_threshold", nms_threshold, low=0.0, high=1.0)
        _check_number("top_k", top_k, low=1, integer=True)
        _check_number("threads", threads, low=1, integer=True, none_ok=True)
        _check_number("max_side", max_side, low=MIN_SIDE, integer=True, none_ok=True)
        _check_number("coarse_side", coarse_side, low=MIN_SIDE, integer=True, none_ok=True)
        self.max_side = max_side
        self.score_threshold = float(score_threshold)
        self.coarse_side = None if coarse_side is None else int(coarse_side)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.backend = backend
        self.threads = threads
        self.model = model
        self.input_sizes: Counter[tuple[int, int]] = Counter()
        self._impl: Any = None
        self._impl_backend: str | None = None
        self._input_name = "input"
        self._out_names: list[str] = []
        self._cv_size: tuple[int, int] | None = None
        self._cv_threshold = self.score_threshold
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"YuNetDetector(max_side={self.max_side}, score_threshold={self.score_threshold}, "
            f"coarse_side={self.coarse_side}, nms_threshold={self.nms_threshold}, backend={self.backend!r})"
        )

    def with_options(self, **kwargs: Any) -> YuNetDetector:
        """A copy with some settings changed (e.g. ``**YUNET_VIDEO`` for video frames)."""
        kw: dict[str, Any] = {
            "max_side": self.max_side,
            "score_threshold": self.score_threshold,
            "coarse_side": self.coarse_side,
            "nms_threshold": self.nms_threshold,
            "top_k": self.top_k,
            "backend": self.backend,
            "threads": self.threads,
            "model": self.model,
        }
        kw.update(kwargs)
        return YuNetDetector(**kw)

    @property
    def resolved_backend(self) -> str:
        """``"onnxruntime"`` or ``"opencv"``: what :meth:`detect` runs on."""
        if self.backend != "auto":
            return self.backend
        import importlib.util

        return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "opencv"

    def _get(self) -> tuple[str, Any]:
        with self._lock:
            if self._impl is None:
                backend = self.resolved_backend
                if self.model is not None:
                    path = Path(self.model)
                    if not path.is_file():
                        raise DetectorUnavailableError(f"YuNet model not found: {path}")
                else:
                    path = verify_sha256(*yunet_weights(backend))
                if backend == "onnxruntime":
                    try:
                        import onnxruntime as ort
                    except ImportError as e:
                        raise DetectorUnavailableError(
                            "YuNet backend 'onnxruntime' needs onnxruntime: pip install onnxruntime "
                            "(or backend='opencv')"
                        ) from e
                    so = ort.SessionOptions()
                    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    if self.threads:
                        so.intra_op_num_threads = int(self.threads)
                    so.inter_op_num_threads = 1
                    so.log_severity_level = 3
                    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                    self._input_name = sess.get_inputs()[0].name
                    self._out_names = [o.name for o in sess.get_outputs()]
                    self._impl = sess
                else:
                    import cv2

                    if not hasattr(cv2, "FaceDetectorYN"):
                        raise DetectorUnavailableError(
                            f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs opencv-python(-headless) >= 4.8); "
                            "pip install -U 'opencv-python-headless>=4.8,<5' or onnxruntime"
                        )
                    self._impl = cv2.FaceDetectorYN.create(
                        str(path), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
                    )
                    self._cv_size = (320, 320)
                    self._cv_threshold = self.score_threshold
                self._impl_backend = backend
        return self._impl_backend, self._impl  # type: ignore[return-value]

    def load(self) -> YuNetDetector:
        """Load (and verify) the weights now instead of on the first :meth:`detect`."""
        self._get()
        return self

    def raw(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet on a BGR uint8 image as it is (no resizing): ``N x 15`` float32 rows
        ``x, y, w, h``, five landmarks ``(x, y)``, score, in that image's pixels."""
        return self._raw(_detector_input(bgr), False, self.score_threshold)

    def _raw(self, image: np.ndarray, swap_rb: bool, score_threshold: float) -> np.ndarray:
        """:meth:`raw` on a BGR, RGB (``swap_rb``) or grey image, keeping faces scoring at
        least ``score_threshold``."""
        import cv2

        backend, impl = self._get()
        h, w = image.shape[:2]
        with self._lock:
            self.input_sizes[(w, h)] += 1
        if backend == "onnxruntime":
            x = _yunet_blob(image, swap_rb)
            outs = dict(zip(self._out_names, impl.run(self._out_names, {self._input_name: x})))
            return decode_yunet(outs, x.shape[3], x.shape[2], score_threshold, self.nms_threshold, self.top_k)
        if image.ndim == 2:
            bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        else:
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if swap_rb else np.ascontiguousarray(image)
        with self._lock:  # FaceDetectorYN keeps the input size and threshold as state
            if self._cv_size != (w, h):
                impl.setInputSize((w, h))
                self._cv_size = (w, h)
            if self._cv_threshold != score_threshold:
                impl.setScoreThreshold(score_threshold)
                self._cv_threshold = score_threshold
            _, faces = impl.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else np.asarray(faces, np.float32).reshape(-1, 15)

    def _coarse_size(self, w: int, h: int, fine: tuple[int, int]) -> tuple[int, int] | None:
        """The coarse pass's input size for a ``w x h`` image, or ``None`` for one pass.
        Only images the fine pass sees whole (longer side <= ``max_side``) get one: on larger
        photos a coarser pass moved the landmarks of large faces by up to 15% of the eye
        distance (benchmarks/yunet.md), and they keep the one ``max_side`` pass."""
        if self.coarse_side is None or fine != (w, h):
            return None
        side = max(self.coarse_side, int(np.ceil(max(fine) / YUNET_COARSE_RATIO)))
        return _fit(w, h, side) if side < max(fine) else None

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB (``H x W x 3``) or grey ``uint8`` image, left to right (coarse to
        fine: see the class docstring)."""
        image = _detector_input(image)
        swap = image.ndim == 3  # RGB in, BGR to the network
        if swap and image.strides[2] < 0 and image[:, :, ::-1].flags.c_contiguous:
            image, swap = image[:, :, ::-1], False  # an RGB view of a BGR frame (video): the frame itself
        H, W = image.shape[:2]
        if not H or not W:
            return []
        fine = _fit(W, H, self.max_side)
        coarse = self._coarse_size(W, H, fine)
        if coarse is not None:
            small, sx, sy = shrink(image, coarse)
            rows = self._raw(small, swap, min(YUNET_REFINE_SCORE, self.score_threshold))
            sure = rows[:, 14] >= self.score_threshold
            if sure.all() and len(rows) and (np.sqrt(rows[:, 2] * rows[:, 3]) >= YUNET_SMALL_FACE).all():
                return self._faces(rows, sx, sy, W, H)
        small, sx, sy = shrink(image, fine)
        return self._faces(self._raw(small, swap, self.score_threshold), sx, sy, W, H)

    @staticmethod
    def _faces(rows: np.ndarray, sx: float, sy: float, W: int, H: int) -> list[FaceBox]:
        """YuNet's rows on a shrunk image -> :class:`FaceBox` es in the original's pixels."""
        out = []
        for row in rows.tolist():
            b = _clip_box(row[0] * sx, row[1] * sy, row[2] * sx, row[3] * sy, row[14], W, H)
            if b is None:
                continue
            lm = tuple((row[4 + 2 * k] * sx, row[5 + 2 * k] * sy) for k in range(5))
            out.append(FaceBox(b.x, b.y, b.w, b.h, b.score, lm))
        return sort_reading_order(out)


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[Callable[..., Detector], str]] = {
    "yunet": (lambda **kw: YuNetDetector(**kw), "YuNet CNN with 5 landmarks (default; bundled, onnxruntime or OpenCV)"),
    "haar": (lambda **kw: HaarDetector(**kw), "OpenCV Haar frontal cascade (no landmarks)"),
    "haar-profile": (lambda **kw: HaarDetector(profile=True, **kw), "Haar frontal + profile cascades"),
    "dlib": (lambda **kw: DlibHogDetector(**kw), "dlib HOG frontal detector (pip install 'fervid[dlib]')"),
    "skip": (lambda **kw: SkipDetector(**kw), "no detection: the whole image is one face"),
}


def register_detector(name: str, factory: Callable[..., Detector], description: str = "") -> None:
    """Make ``create_detector(name)`` return ``factory(**kwargs)``."""
    _REGISTRY[name] = (factory, description)


def available_detectors() -> dict[str, str]:
    """Registered detector names -> one-line descriptions (optional ones may be uninstalled)."""
    return {k: d for k, (_, d) in _REGISTRY.items()}


def create_detector(name: str | Detector | None = None, **kwargs: Any) -> Detector:
    """A detector by registered name (default ``"yunet"``), or ``name`` itself if it already
    is a detector object. Nothing heavy is loaded until the first ``detect`` call."""
    if name is None:
        name = DEFAULT_DETECTOR
    if not isinstance(name, str):
        if not callable(getattr(name, "detect", None)):
            raise TypeError(f"{name!r} is not a detector (needs a detect(image) method)")
        return name
    if name not in _REGISTRY:
        raise UserValueError(f"unknown detector {name!r}; available: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[name][0](**kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        bad = str(e).rsplit("argument", 1)[-1].strip()
        raise UserValueError(f"detector {name!r} has no option {bad} (options given: {sorted(kwargs)})") from None
