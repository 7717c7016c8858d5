"""Face crops: the one function that turns a detected face into the classifier's input."""

from __future__ import annotations

import numpy as np

from fervid.errors import UserValueError


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int) -> np.ndarray:
    """Square ``size x size`` grey crop around ``box`` grown by ``margin`` (share of the box
    side) on every side; parts outside the image repeat the border pixels."""
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    H, W = gray.shape[:2]
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + s), min(H, y0 + s)
    if ix1 <= ix0 or iy1 <= iy0:
        raise UserValueError(f"face box {box} lies outside the {W}x{H} image")
    crop = gray[iy0:iy1, ix0:ix1]
    pad = (iy0 - y0, y0 + s - iy1, ix0 - x0, x0 + s - ix1)
    if any(pad):
        crop = cv2.copyMakeBorder(crop, *pad, borderType=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
