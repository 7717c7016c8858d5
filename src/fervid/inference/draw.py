"""Draw prediction results on images: a box per face, its top emotion and small
probability bars. Used by ``fervid predict --out`` and the video tools.

>>> from fervid.inference.draw import annotate
>>> out = annotate(rgb, result.faces)      # a new RGB uint8 array; ``rgb`` is untouched

Works on RGB arrays (OpenCV draws on any channel order; the colours below are RGB, so for
BGR frames pass ``bgr=True``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# One colour per emotion (RGB), readable on photos; unknown labels get grey.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (230, 50, 50),
    "anger": (230, 50, 50),
    "disgust": (120, 170, 40),
    "fear": (150, 80, 200),
    "happy": (250, 200, 0),
    "happiness": (250, 200, 0),
    "sad": (50, 110, 230),
    "sadness": (50, 110, 230),
    "surprise": (250, 130, 20),
    "neutral": (200, 200, 200),
    "contempt": (160, 100, 60),
}
_DEFAULT_COLOR = (180, 180, 180)


class FaceLike(Protocol):
    """What :func:`annotate` needs of a face (``fervid.inference.recognizer.FaceResult`` fits)."""

    # Read-only members, so that frozen dataclasses (FaceResult, TrackedFace) fit.
    @property
    def box(self) -> tuple[int, int, int, int]: ...
    @property
    def label(self) -> str: ...
    @property
    def probabilities(self) -> Mapping[str, float]: ...


def color_for(label: str) -> tuple[int, int, int]:
    """The RGB colour used for ``label``."""
    return EMOTION_COLORS.get(label.lower(), _DEFAULT_COLOR)


def _get(face: Any, name: str) -> Any:
    return face[name] if isinstance(face, Mapping) else getattr(face, name)


def annotate(
    image: np.ndarray,
    faces: Sequence[FaceLike] | Sequence[Mapping[str, Any]],
    *,
    bars: bool = True,
    bgr: bool = False,
    thickness: int | None = None,
    landmarks: bool = True,
) -> np.ndarray:
    """Return a copy of ``image`` (``H x W x 3`` uint8; grey is converted to 3 channels) with
    each face's box, top label and probability, (``bars=True``) one small bar per emotion
    next to the box and (``landmarks=True``) a dot on each of the face's five landmarks
    when it has them (eyes, nose, mouth corners: what the crop was aligned on).
    ``faces`` are :class:`~fervid.inference.recognizer.FaceResult` objects or their ``to_dict()``
    dicts (``box`` as ``(x, y, w, h)`` or ``{"x":..,"y":..,"w":..,"h":..}``; ``landmarks``
    as ``((x, y), ...)`` or ``{"right_eye": [x, y], ...}``)."""
    import cv2

    if image.ndim == 2:
        out = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        out = np.ascontiguousarray(image[:, :, :3])
    else:
        out = np.ascontiguousarray(image).copy()
    if out.dtype != np.uint8:
        raise TypeError(f"annotate takes uint8 images, got {out.dtype}")
    H, W = out.shape[:2]
    base = max(H, W)
    th = thickness or max(1, round(base / 400))
    font = cv2.FONT_HERSHEY_SIMPLEX
    fscale = max(0.4, base / 1400)

    def c(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        return rgb[::-1] if bgr else rgb

    boxes = [_box_of(f) for f in faces]
    taken: list[tuple[int, int, int, int]] = list(boxes)  # panels avoid faces and earlier panels
    for face, (x, y, w, h) in zip(faces, boxes):
        label = str(_get(face, "label"))
        probs: Mapping[str, float] = _get(face, "probabilities")
        col = c(color_for(label))
        cv2.rectangle(out, (x, y), (x + w, y + h), col, th, cv2.LINE_AA)
        if landmarks:
            r = max(1, round(max(w, h) / 60))
            for px, py in _landmarks_of(face):
                # a dark ring under the coloured dot: visible on light and dark skin alike
                cv2.circle(out, (int(round(px)), int(round(py))), r + 1, (0, 0, 0), -1, cv2.LINE_AA)
                cv2.circle(out, (int(round(px)), int(round(py))), r, col, -1, cv2.LINE_AA)

        text = f"{label} {100 * float(probs.get(label, 0.0)):.0f}%"
        (tw, tht), bl = cv2.getTextSize(text, font, fscale, max(1, th // 2 + 1))
        ty = y - 4 if y - tht - bl - 4 >= 0 else min(H - 1, y + h + tht + 4)
        cv2.rectangle(out, (x, ty - tht - bl), (x + tw + 4, ty + bl // 2), col, -1)
        cv2.putText(out, text, (x + 2, ty - bl // 2), font, fscale, (0, 0, 0), max(1, th // 2 + 1), cv2.LINE_AA)

        if bars and probs:
            taken.append(_draw_bars(out, probs, (x, y, w, h), fscale, c, font, taken))
    return out


def _landmarks_of(face: Any) -> list[tuple[float, float]]:
    """The face's landmarks as ``(x, y)`` pairs (none when it has none)."""
    lm = face.get("landmarks") if isinstance(face, Mapping) else getattr(face, "landmarks", None)
    if lm is None:
        return []
    pts = lm.values() if isinstance(lm, Mapping) else lm
    return [(float(p[0]), float(p[1])) for p in pts]


def _box_of(face: Any) -> tuple[int, int, int, int]:
    box = _get(face, "box")
    if isinstance(box, Mapping):
        box = (box["x"], box["y"], box["w"], box["h"])
    x, y, w, h = (int(v) for v in box)
    return x, y, w, h


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _draw_bars(
    out: np.ndarray,
    probs: Mapping[str, float],
    box: tuple[int, int, int, int],
    fscale: float,
    c: Any,
    font: int,
    avoid: Sequence[tuple[int, int, int, int]],
) -> tuple[int, int, int, int]:
    """A panel of small labelled bars next to the box: right, left, below or above, the
    first place inside the image that covers no other face (or panel). Returns the panel."""
    import cv2

    H, W = out.shape[:2]
    x, y, w, h = box
    n = len(probs)
    row = max(8, min(int(h / max(n, 1)), int(22 * fscale / 0.5)))
    s = fscale * 0.75
    name_w = max(cv2.getTextSize(k[:8], font, s, 1)[0][0] for k in probs) + 4
    bar_w = max(20, int(name_w * 1.2))
    panel_w, panel_h = name_w + bar_w + 6, row * n
    gap = 4
    candidates = [(x + w + gap, y), (x - panel_w - gap, y), (x, y + h + gap), (x, y - panel_h - gap)]
    others = [b for b in avoid if b != box]

    def fits(p: tuple[int, int]) -> bool:
        return 0 <= p[0] and p[0] + panel_w <= W and 0 <= p[1] and p[1] + panel_h <= H

    inside = [p for p in candidates if fits(p)]
    free = [p for p in inside if not any(_overlaps((p[0], p[1], panel_w, panel_h), b) for b in others)]
    if free:
        px, py = free[0]
    else:
        px, py = inside[0] if inside else candidates[0]
        px, py = max(0, min(W - panel_w, px)), max(0, min(H - panel_h, py))
    # darken the panel for contrast
    y1, x1 = min(H, py + row * n), min(W, px + panel_w)
    if y1 > py and x1 > px:
        out[py:y1, px:x1] = (out[py:y1, px:x1].astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, (k, v) in enumerate(probs.items()):
        ry = py + i * row
        cv2.putText(out, k[:8], (px + 2, ry + int(row * 0.75)), font, s, (255, 255, 255), 1, cv2.LINE_AA)
        bx = px + name_w
        cv2.rectangle(out, (bx, ry + 2), (bx + bar_w, ry + row - 2), (90, 90, 90), 1)
        fill = int(round(bar_w * max(0.0, min(1.0, float(v)))))
        if fill > 0:
            cv2.rectangle(out, (bx, ry + 2), (bx + fill, ry + row - 2), c(color_for(k)), -1)
    return (px, py, panel_w, panel_h)


# ------------------------------------------------------------------ written media, read back


def verify_video(path: str | Path, frames: int) -> None:
    """Open the video at ``path`` and check that it holds ``frames`` frames and that its
    first and last decode (``ValueError`` otherwise): a container without its index, or
    with frames missing, fails here instead of being reported written."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("the written video cannot be opened (no container index: the writer failed)")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n != frames:
            raise ValueError(f"the written video holds {n} readable frames, not the {frames} written")
        for index in sorted({0, frames - 1}) if frames else []:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, img = cap.read()
            if not ok or img is None or not img.size:
                raise ValueError(f"frame {index} of the written video does not decode")
    finally:
        cap.release()
