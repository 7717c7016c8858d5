"""Face detection behind one small interface.

A detector is any object with ``detect(image) -> list[FaceBox]``, where ``image`` is an
``H x W x 3`` RGB or ``H x W`` grey ``uint8`` array and every box is in the **original
image's pixel coordinates** (``x, y, w, h``, clipped to the image) with a detector score
(higher is more confident; the scale depends on the detector).

Built-in detectors (``create_detector(name)``, ``available_detectors()``):

``haar`` (default)
    OpenCV's frontal-face Haar cascade (``alt2``) from ``cv2.data`` (shipped in every
    ``opencv-python(-headless)`` 4.x wheel): works offline right after ``pip install`` on any
    platform. Images larger than ``max_side`` are downscaled for detection and the boxes
    mapped back. Score: the number of raw detections merged into the box (>= ``min_neighbors``).
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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

DEFAULT_DETECTOR = "haar"


@dataclass(frozen=True)
class FaceBox:
    """One detected face: box in original-image pixels and the detector's score."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``."""
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        return self.w * self.h

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB (``H x W x 3``) or grey (``H x W``) ``uint8`` image."""

    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        ...


class DetectorUnavailableError(ImportError):
    """An optional detector's dependency is not installed (the message says what to install)."""


# --------------------------------------------------------------------------- helpers

def _as_gray(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise TypeError(f"detectors take uint8 images, got {image.dtype} (use fervid.io.load_image)")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0])
    if image.ndim == 3 and image.shape[2] == 3:
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an H x W or H x W x 3 image, got shape {image.shape}")


def _downscale(gray: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns (image, scale original/small)."""
    h, w = gray.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return gray, 1.0
    import cv2

    s = max_side / max(h, w)
    small = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, max(h, w) / max_side


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

    ``whole_image = True`` tells :class:`fervid.recognizer.EmotionRecognizer` not to add
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

    def __init__(self, cascade: str = "haarcascade_frontalface_alt2.xml", *, scale_factor: float = 1.1,
                 min_neighbors: int = 4, min_size: float = 0.05, max_side: int | None = 1024,
                 profile: bool = False, profile_min_neighbors: int = 6, equalize: bool = False,
                 name: str | None = None):
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
        return (f"HaarDetector(cascade={self.cascade!r}, scale_factor={self.scale_factor}, "
                f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, max_side={self.max_side}, "
                f"profile={self.profile})")

    @staticmethod
    def _load(file: str) -> Any:
        import os

        import cv2

        path = file if os.path.isfile(file) else os.path.join(getattr(cv2, "data").haarcascades, file) \
            if hasattr(cv2, "data") else file
        if not os.path.isfile(path):
            raise DetectorUnavailableError(
                f"Haar cascade {file!r} not found (looked in cv2.data.haarcascades); opencv-python(-headless) "
                "5.x ships no cascade files: install opencv-python-headless<5 or pass detector='dlib'")
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
        raw: list[FaceBox] = []
        for i, casc in enumerate(cascades):
            variants = [(small, False)] if i == 0 else [(small, False), (np.ascontiguousarray(small[:, ::-1]), True)]
            for img, mirrored in variants:
                rects, counts = casc.detectMultiScale2(
                    img, scaleFactor=self.scale_factor, minSize=(ms, ms),
                    minNeighbors=self.min_neighbors if i == 0 else self.profile_min_neighbors)
                for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(counts).reshape(-1)):
                    if mirrored:
                        x = sw - x - w
                    # profile boxes rank below frontal ones of the same support
                    score = float(n) if i == 0 else float(n) * 0.5
                    b = _clip_box(x * scale, y * scale, w * scale, h * scale, score, W, H)
                    if b is not None:
                        raw.append(b)
        return sort_reading_order(non_max_suppression(raw))


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
                        "detector 'dlib' needs the dlib package: pip install 'fervid[dlib]' (installs dlib-bin)") from e
                self._det = dlib.get_frontal_face_detector()
        return self._det

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        det = self._get()
        gray = _as_gray(image)
        H, W = gray.shape
        small, scale = _downscale(gray, self.max_side)
        rects, scores, _ = det.run(small, self.upsample, self.threshold)
        out = []
        for r, s in zip(rects, scores):
            b = _clip_box(r.left() * scale, r.top() * scale, r.width() * scale, r.height() * scale, s, W, H)
            if b is not None:
                out.append(b)
        return sort_reading_order(non_max_suppression(out))


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[Callable[..., Detector], str]] = {
    "haar": (lambda **kw: HaarDetector(**kw), "OpenCV Haar frontal cascade (default; always available)"),
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
    """A detector by registered name (default ``"haar"``), or ``name`` itself if it already
    is a detector object. Nothing heavy is loaded until the first ``detect`` call."""
    if name is None:
        name = DEFAULT_DETECTOR
    if not isinstance(name, str):
        if not callable(getattr(name, "detect", None)):
            raise TypeError(f"{name!r} is not a detector (needs a detect(image) method)")
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name][0](**kwargs)
