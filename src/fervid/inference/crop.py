"""Face crops: the one function that turns a detected face into the classifier's input.

Two ways, chosen by what the detector gives:

*Aligned* (detectors with landmarks: ``yunet``, the default). A similarity transform
(rotation, uniform scale, shift; no shear, no mirroring) maps the five landmarks onto
:data:`CANONICAL_LANDMARKS_48`, where YuNet finds them on FER2013's own training faces
(medians over 2,953 faces, ``benchmarks/fer_geometry.py``). The eyes come out level, at the
inter-ocular distance and position the classifier was trained on, whatever the tilt of the
head or the detector's box. The transform is the least-squares fit over the five points
(closed form, :func:`alignment_matrix`); when it shrinks the face, every output pixel
averages its footprint (:func:`warp_face`), so the crop does not alias. Pixels from
outside the image repeat the border.

*Box* (``haar``, ``dlib``, ``skip``, custom detectors without landmarks): the square of side
``max(w, h) * (1 + 2 * margin)`` centred on the box, resized.

Coordinates follow OpenCV's pixel-centre convention: pixel ``(i, j)`` has its centre at
``x = i, y = j`` (so the 48x48 frame spans ``-0.5 .. 47.5``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fervid.errors import UserValueError

CANONICAL_LANDMARKS_48: tuple[tuple[float, float], ...] = (
    (14.39, 17.99),  # right eye (the person's; image left)
    (32.61, 17.99),  # left eye
    (23.50, 28.20),  # nose tip
    (16.31, 35.86),  # right mouth corner
    (30.69, 35.86),  # left mouth corner
)
"""Where the five YuNet landmarks lie on FER2013 faces, in the 48x48 frame (pixel-centre
coordinates; order of :data:`fervid.detectors.base.LANDMARK_NAMES`). Measured by
``python benchmarks/fer_geometry.py --n 3000`` (YuNet on 3,000 stratified Training faces
upscaled 4x; it fired on 98.4%): the per-point medians, made mirror-symmetric about the
midline ``x = 23.5``. Spread on FER2013 itself (5th-95th percentile): inter-ocular
distance 11.3-22.1 px (median 18.1), eye-line roll -10.7..+12.9 degrees, eye centre x
16.7-28.7, y 11.1-22.6 (benchmarks/alignment.md)."""

# An aligned crop is refused (box crop instead) when the face the landmarks describe is
# this many times larger or smaller than the detector's box: broken landmarks, not a face.
_MAX_SCALE_DISAGREEMENT = 3.0


def canonical_landmarks(size: int) -> np.ndarray:
    """:data:`CANONICAL_LANDMARKS_48` for a ``size x size`` output (same relative layout):
    ``5 x 2`` float64."""
    t = np.asarray(CANONICAL_LANDMARKS_48, np.float64)
    return (t + 0.5) * (size / 48.0) - 0.5


def alignment_matrix(landmarks: Sequence[Sequence[float]] | np.ndarray, size: int) -> np.ndarray:
    """The ``2 x 3`` similarity transform (image pixels -> ``size x size`` crop pixels) that
    best maps the five ``landmarks`` onto :func:`canonical_landmarks` in the least-squares
    sense: ``[[a, -b, tx], [b, a, ty]]`` with ``a = s cos(t)``, ``b = s sin(t)``.

    Closed form: with ``p``, ``q`` the source and target points minus their means,
    ``a = sum(p . q) / sum(|p|^2)``, ``b = sum(p x q) / sum(|p|^2)`` and
    ``t = mean(q) - R mean(p)``."""
    src = np.asarray(landmarks, np.float64).reshape(-1, 2)
    dst = canonical_landmarks(size)
    if src.shape != dst.shape:
        raise UserValueError(f"alignment needs {len(dst)} landmarks (x, y), got an array of shape {src.shape}")
    ps, qs = src.mean(0), dst.mean(0)
    p, q = src - ps, dst - qs
    norm = float((p**2).sum())
    if not np.isfinite(norm) or norm < 1e-6:
        raise UserValueError("landmarks are degenerate (all at one point)")
    a = float((p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]).sum()) / norm
    b = float((p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum()) / norm
    R = np.array([[a, -b], [b, a]])
    t = qs - R @ ps
    return np.array([[a, -b, t[0]], [b, a, t[1]]])


def align_face(gray: np.ndarray, landmarks: Sequence[Sequence[float]] | np.ndarray, size: int) -> np.ndarray:
    """``size x size`` grey crop with the face's five landmarks on the canonical FER2013
    positions (see the module docstring)."""
    return warp_face(gray, alignment_matrix(landmarks, size), size)


def warp_face(gray: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` crop of ``gray`` through the ``2 x 3`` similarity ``M`` (image pixels ->
    crop pixels); border pixels repeat.

    When the crop shrinks the face (scale ``s < 1`` crop pixels per image pixel), each output
    pixel is the mean of ``k x k`` bilinear samples spread over its footprint in the image,
    ``k = ceil(1 / s)`` (at most 8): the warp is done at ``k`` times the output size, then
    averaged down ``k x k`` (``cv2.INTER_AREA`` by an integer factor). That is area averaging
    on the output's own grid, like the box crop's ``INTER_AREA`` resize, at any rotation;
    shrinking a region first and warping it after would interpolate between bins that do
    not line up with the output pixels and blur the face (measured: 2x the round-trip error
    on FER2013 faces)."""
    import cv2

    M = np.asarray(M, np.float64)
    scale = float(np.hypot(M[0, 0], M[1, 0]))  # crop pixels per image pixel
    k = 1 if scale >= 1 else min(8, int(np.ceil(1.0 / scale - 1e-9)))
    if k == 1:
        return cv2.warpAffine(gray, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # supersampled grid: X_k = (X + 0.5) * k - 0.5
    Mk = np.vstack([M * k, [0, 0, 0]])[:2]
    Mk[:, 2] += (k - 1) / 2.0
    big = cv2.warpAffine(gray, Mk, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def box_crop(gray: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int) -> np.ndarray:
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


def crop_face(
    gray: np.ndarray,
    box: tuple[int, int, int, int],
    margin: float,
    size: int,
    landmarks: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> np.ndarray:
    """The classifier's ``size x size`` grey input for one face: aligned on ``landmarks``
    when given (``margin`` is then unused: the canonical geometry fixes the framing), else
    the box crop (:func:`box_crop`). Landmarks that disagree wildly with the box (a face
    :data:`_MAX_SCALE_DISAGREEMENT` times larger or smaller) fall back to the box crop."""
    if landmarks is not None:
        try:
            M = alignment_matrix(landmarks, size)
        except UserValueError:
            M = None
        if M is not None:
            # the face's extent in image pixels per the landmarks vs the box's
            implied = size / max(float(np.hypot(M[0, 0], M[1, 0])), 1e-9)
            side = max(box[2], box[3], 1)
            if 1 / _MAX_SCALE_DISAGREEMENT <= implied / side <= _MAX_SCALE_DISAGREEMENT:
                return warp_face(gray, M, size)  # align_face, without fitting M again
    return box_crop(gray, box, margin, size)
