"""OpenCV's Haar cascades (``haar``, ``haar-profile``): no landmarks; in video, re-detection
windows shrunk so the tracked face is ~48 px (:meth:`HaarDetector.roi_scale`)."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from fervid.detectors.base import (
    MIN_SIDE,
    BaseDetector,
    DetectorUnavailableError,
    FaceBox,
    as_gray,
    check_flag,
    check_option,
    clip_box,
    downscale,
    non_max_suppression,
    sort_reading_order,
)

HAAR_MIN_FACE = 24
"""The smallest face side (px of the detection image) the cascades are asked to find."""


class HaarDetector(BaseDetector):
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
        roi_face: in video, the side (px) a tracked face is shrunk to in its re-detection
            window (:meth:`roi_scale`): the cascade scans every scale from its 24 px minimum
            up to the window, so a face near the minimum is found with the fewest scales
            (40 px lost faces).
        name: the name results report (default ``haar``, or ``haar-profile`` with ``profile``).
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
        roi_face: int = 48,
        name: str | None = None,
    ):
        check_option("scale_factor", scale_factor, low=1.0, open_low=True)
        check_option("min_neighbors", min_neighbors, low=0, integer=True)
        check_option("profile_min_neighbors", profile_min_neighbors, low=0, integer=True)
        check_option("min_size", min_size, low=0, open_low=True)
        check_option("max_side", max_side, low=MIN_SIDE, integer=True, none_ok=True)
        check_option("roi_face", roi_face, low=HAAR_MIN_FACE, integer=True)
        check_flag("profile", profile)
        check_flag("equalize", equalize)
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side
        self.profile = profile
        self.profile_min_neighbors = profile_min_neighbors
        self.equalize = equalize
        self.roi_face = int(roi_face)
        self.name = name or ("haar-profile" if profile else "haar")
        self._cascades: list[Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"HaarDetector(cascade={self.cascade!r}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, max_side={self.max_side}, "
            f"profile={self.profile})"
        )

    def roi_scale(self, face_side: float) -> float:
        """Shrink a re-detection window so its face is about :attr:`roi_face` px (never enlarge)."""
        return min(1.0, self.roi_face / face_side) if face_side > 0 else 1.0

    @staticmethod
    def _load(file: str) -> Any:
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
        gray = as_gray(image)
        H, W = gray.shape
        small, scale = downscale(gray, self.max_side)
        if self.equalize:
            small = cv2.equalizeHist(small)
        sh, sw = small.shape
        ms = self.min_size * min(sh, sw) if self.min_size < 1 else self.min_size / scale
        ms = int(max(HAAR_MIN_FACE, ms))
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
                    b = clip_box(x * scale, y * scale, w * scale, h * scale, score, W, H)
                    if b is not None:
                        raw.append(b)
        return raw
