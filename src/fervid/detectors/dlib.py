"""dlib's HOG + linear SVM frontal detector (``dlib``; ``pip install 'fervid[dlib]'``): no
landmarks, more precise boxes and fewer false positives than Haar."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from fervid.detectors.base import (
    MIN_SIDE,
    BaseDetector,
    DetectorUnavailableError,
    FaceBox,
    as_gray,
    check_option,
    clip_box,
    downscale,
    non_max_suppression,
    sort_reading_order,
)


class DlibHogDetector(BaseDetector):
    """dlib's HOG frontal face detector (optional: ``pip install fervid[dlib]``).

    Args:
        upsample: times to upsample the detection image (1 finds faces down to ~40 px
            in the detection image; each step is ~4x slower).
        threshold: SVM score threshold (``adjust_threshold``); higher: fewer false positives.
        max_side: downscale larger images to this longer side for detection.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, threshold: float = 0.0, max_side: int | None = 1024):
        check_option("upsample", upsample, low=0, integer=True)
        check_option("threshold", threshold, low=-math.inf)
        check_option("max_side", max_side, low=MIN_SIDE, integer=True, none_ok=True)
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
        gray = as_gray(image)
        H, W = gray.shape
        small, scale = downscale(gray, self.max_side)
        with self._lock:  # dlib documents no thread-safety for its detector objects: one call at a time
            rects, scores, _ = det.run(small, self.upsample, self.threshold)
        out = []
        for r, s in zip(rects, scores):
            b = clip_box(r.left() * scale, r.top() * scale, r.width() * scale, r.height() * scale, s, W, H)
            if b is not None:
                out.append(b)
        return sort_reading_order(non_max_suppression(out))
