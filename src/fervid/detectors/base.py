"""What a face detector is: the :class:`Detector` protocol, what it may declare about itself
(its capabilities), the :class:`FaceBox` it returns, and the geometry every detector shares
(intersection over union, non-maximum suppression, reading order, shrinking).

The contract
------------
A detector is any object with ``detect(image) -> list[FaceBox]``, where ``image`` is an
``H x W x 3`` RGB or ``H x W`` grey ``uint8`` array and every box is in the **original
image's pixel coordinates** (``x, y, w, h``, clipped to the image) with a detector score
(higher is more confident; the scale depends on the detector). Detectors that find facial
landmarks also fill :attr:`FaceBox.landmarks`: five ``(x, y)`` points in the original
image's pixels, in :data:`LANDMARK_NAMES` order; the crop
(:func:`fervid.inference.crop.crop_face`) aligns the face on them whenever a box has them.

That one method is all a detector must have. What else it can do it declares with four
optional members, which :class:`BaseDetector` defines with the defaults below (subclass it,
or set them on your own class):

``landmarks: bool`` (default ``False``)
    Every box it returns carries the five landmarks.
``whole_image: bool`` (default ``False``)
    The input already is the face crop (``skip``): its one box is the whole image, and the
    recognizer adds no face margin around it. Video tracks no face between key frames for
    such a detector: every frame is detected whole.
``for_video() -> Detector`` (default: the detector itself)
    The detector with its settings for video frames (YuNet: a smaller input, one pass,
    :data:`~fervid.detectors.yunet.YUNET_VIDEO`). Called once per stream, not per frame.
``video_options: Mapping[str, Any] | None`` (default ``None``)
    The options its video version is made with, as keyword arguments of the registered
    factory (YuNet: :data:`~fervid.detectors.yunet.YUNET_VIDEO`); a recognizer made from a
    :class:`~fervid.inference.config.RecognizerConfig` creates its video detector from them
    and the config's own video settings. ``None``: frames are detected as photos are.
``roi_scale(face_side: float) -> float`` (default ``1.0``)
    Between key frames a video stream detects again only in a window around each tracked face
    (``face_side`` pixels wide); the window is shrunk by this factor (in ``(0, 1]``) before
    :meth:`detect` (Haar: so the face is ~48 px, the scale its cascade finds fastest).

Callers never test a detector's class and never read these members directly: they call
:func:`capabilities`, :func:`for_video`, :func:`video_options` and :func:`roi_scale` here, which fall back to the
defaults for a detector that has only ``detect``. A ``name`` attribute, when present, is
what results and the service report as the detector's name.

Helpers for writing a detector: :func:`detector_input` (checks and views the input),
:func:`as_gray`, :func:`downscale` / :func:`shrink` (and :func:`fit_size`), :func:`clip_box`,
:func:`non_max_suppression`, :func:`sort_reading_order` and :func:`check_option` (a
detector option out of range is a :class:`~fervid.errors.UserValueError` when the detector
is made).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fervid.data.io import rgb_to_gray
from fervid.errors import FervidError, UserValueError

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


# --------------------------------------------------------------------------- the protocol


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB (``H x W x 3``) or grey (``H x W``) ``uint8`` image: the one
    required method. The optional capabilities are :class:`BaseDetector`'s (module docstring)."""

    def detect(self, image: np.ndarray) -> list[FaceBox]: ...


class BaseDetector(ABC):
    """A detector's capabilities with their defaults: subclass it, write :meth:`detect` and
    override what differs (every built-in detector does). A detector that does not subclass
    it may declare the same members itself, or none: callers read them through
    :func:`capabilities`, :func:`for_video` and :func:`roi_scale`, which apply these defaults.
    """

    name: str = "detector"
    """What results and the service report as the detector."""
    landmarks: bool = False
    """Every box it returns has the five landmarks."""
    whole_image: bool = False
    """The input already is the face crop: its one box is the whole image (no face margin is
    added around it, and video detects every frame whole)."""
    video_options: Mapping[str, Any] | None = None
    """The factory options of its video version (``None``: frames are detected as photos)."""
    confirm_score: float | None = None
    """In a video, a new track becomes a person only once one of its boxes scores at least
    this (in this detector's own score units; ``None``: no such test). A blurred background
    patch found a few frames in a row scores just above the detection threshold, a face
    clearly above it (:class:`fervid.inference.tracking.PersonTracker`)."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in ``image``, in its pixels (the module docstring's contract)."""

    def for_video(self) -> Detector:
        """The detector with its settings for video frames, made once per stream (default:
        itself; YuNet: a smaller input in one pass)."""
        return self

    def roi_scale(self, face_side: float) -> float:
        """The factor in ``(0, 1]`` a video re-detection window around a tracked face
        ``face_side`` px wide is shrunk by before :meth:`detect` (default 1.0: not shrunk;
        Haar: so the face is ~48 px)."""
        return 1.0


@dataclass(frozen=True)
class DetectorCapabilities:
    """What a detector declares about itself (:func:`capabilities`)."""

    landmarks: bool
    whole_image: bool
    confirm_score: float | None = None


def capabilities(detector: Detector) -> DetectorCapabilities:
    """``detector``'s declared :attr:`~BaseDetector.landmarks`,
    :attr:`~BaseDetector.whole_image` (``False`` where it declares nothing) and
    :attr:`~BaseDetector.confirm_score` (``None`` where it declares none)."""
    score = getattr(detector, "confirm_score", None)
    return DetectorCapabilities(
        landmarks=bool(getattr(detector, "landmarks", False)),
        whole_image=bool(getattr(detector, "whole_image", False)),
        confirm_score=None if score is None else float(score),
    )


def for_video(detector: Detector) -> Detector:
    """``detector.for_video()``, or ``detector`` itself when it has no such method."""
    method = getattr(detector, "for_video", None)
    if method is None:
        return detector
    video = method()
    if not callable(getattr(video, "detect", None)):
        raise TypeError(f"{detector!r}.for_video() returned {video!r}, not a detector")
    return video


def video_options(detector: Detector) -> Mapping[str, Any] | None:
    """``detector``'s declared :attr:`~BaseDetector.video_options` (``None`` where it declares none)."""
    opts = getattr(detector, "video_options", None)
    return None if opts is None else dict(opts)


def roi_scale(detector: Detector, face_side: float) -> float:
    """``detector.roi_scale(face_side)`` (1.0 when it has no such method), checked to be in ``(0, 1]``."""
    method = getattr(detector, "roi_scale", None)
    if method is None:
        return 1.0
    f = float(method(face_side))
    if not 0.0 < f <= 1.0:
        raise ValueError(f"{detector!r}.roi_scale({face_side}) returned {f}; it must be in (0, 1]")
    return f


class DetectorUnavailableError(FervidError, ImportError):
    """An optional detector's dependency is not installed (the message says what to install)."""


# --------------------------------------------------------------------------- helpers


def detector_input(image: np.ndarray) -> np.ndarray:
    """A detector input checked and viewed as ``H x W`` grey or ``H x W x 3`` (no copy)."""
    if image.dtype != np.uint8:
        raise TypeError(f"detectors take uint8 images, got {image.dtype} (use fervid.data.io.load_image)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    raise UserValueError(f"expected an H x W or H x W x 3 image, got shape {image.shape}")


def as_gray(image: np.ndarray) -> np.ndarray:
    """A detector input (RGB or grey, checked by :func:`detector_input`) as contiguous grey."""
    return np.ascontiguousarray(rgb_to_gray(detector_input(image)))


def check_option(
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


def check_flag(name: str, value: Any) -> None:
    """Refuse (:class:`UserValueError`) a yes/no detector option that is not a bool: from JSON,
    YAML or ``--detector-option profile=yes`` a string would read as true whatever it says."""
    if not isinstance(value, (bool, np.bool_)):
        raise UserValueError(f"detector option {name} must be true or false, got {value!r}")


MIN_SIDE = 32
"""Smallest ``max_side`` a detector accepts: below it no face can be found."""


def downscale(gray: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns (image, scale original/small)."""
    h, w = gray.shape[:2]
    size = fit_size(w, h, max_side)
    if size == (w, h):
        return gray, 1.0
    import cv2

    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), max(h, w) / max_side


def clip_box(x: float, y: float, w: float, h: float, score: float, W: int, H: int) -> FaceBox | None:
    """A box in pixels rounded and clipped to a ``W x H`` image; ``None`` when under 2 px is left."""
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


def fit_size(w: int, h: int, side: int | None) -> tuple[int, int]:
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


class SkipDetector(BaseDetector):
    """No detection: the whole image is one face (for inputs that are already face crops,
    e.g. FER2013's 48x48 images). Score 1.0."""

    name = "skip"
    whole_image = True

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        return [FaceBox(0, 0, int(w), int(h), 1.0)] if h and w else []

    def __repr__(self) -> str:
        return "SkipDetector()"
