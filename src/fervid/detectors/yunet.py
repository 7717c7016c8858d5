"""YuNet-s (``yunet``, the default detector): a small CNN that also returns five landmarks.

libfacedetection's YuNet-s (75 k parameters, 232 KB ONNX shipped in the wheel under
``fervid/weights/yunet/`` with its MIT and Apache-2.0 notices; sha256 checked at load). Runs
through onnxruntime when it is installed, else OpenCV's ``cv2.FaceDetectorYN`` (every
opencv-python 4.8+ wheel); both give the same boxes. The image is shrunk (:func:`shrink`) so
its longer side is at most ``max_side`` (photos 640, video 320: :data:`YUNET_PHOTO`,
:data:`YUNET_VIDEO`; :meth:`YuNetDetector.for_video`). Photos up to ``max_side`` are detected
coarse to fine: first at 320 px (or 1/1.25 of the photo's longer side if that is larger),
again at full size only when that pass finds nothing, a face under 24 px or a doubtful
candidate (a ~400 px portrait: one 320 px pass; small faces: both). Video runs one pass.
Score: the detector's confidence, 0..1.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fervid.detectors.base import (
    MIN_SIDE,
    BaseDetector,
    DetectorUnavailableError,
    FaceBox,
    check_option,
    clip_box,
    detector_input,
    fit_size,
    shrink,
    sort_reading_order,
)
from fervid.errors import UserValueError
from fervid.models.bundled import weight_file

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


class _PhotoDefault:
    """The default of a setting photos and video frames set differently (``max_side``,
    ``score_threshold``, ``coarse_side``): :class:`YuNetDetector` tells it from a value its
    caller chose, which :meth:`YuNetDetector.for_video` keeps. Its repr is the photo value,
    what ``help(YuNetDetector)`` shows."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return repr(YUNET_PHOTO[self.key])


_PHOTO: dict[str, Any] = {k: _PhotoDefault(k) for k in YUNET_PHOTO}


def _photo_or(value: Any) -> Any:
    """``value``, or the photo default it stands for."""
    return YUNET_PHOTO[value.key] if isinstance(value, _PhotoDefault) else value


_VERIFIED: dict[Path, str] = {}
_VERIFY_LOCK = threading.Lock()


def yunet_weights(backend: str) -> tuple[Path, str | None]:
    """The bundled YuNet file for ``backend`` (``"onnxruntime"`` or ``"opencv"``) and its
    sha256, from the weights catalogue (:func:`fervid.models.bundled.weight_file`)."""
    w = weight_file("yunet", backend)
    return w.path, w.sha256 or None


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


class YuNetDetector(BaseDetector):
    """YuNet-s face detector with five landmarks (the default detector).

    Args:
        max_side: the image is shrunk (:func:`shrink`) so its longer side is at most this
            for detection; boxes and landmarks are mapped back to the original pixels.
            YuNet finds faces down to ~10 px in the detection image. Photos 640 (default),
            video 320 (:data:`YUNET_VIDEO`, :meth:`for_video`).
        score_threshold: keep faces scoring at least this (0..1; photos 0.7, video 0.6).
            0.9 (OpenCV's demo) loses turned and blurred faces; hands and lamps appeared at
            0.5 and below.
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

    ``max_side``, ``score_threshold`` and ``coarse_side`` left out are the photo defaults
    (:data:`YUNET_PHOTO`), which :meth:`for_video` replaces by the video ones; set, they are
    the caller's choice and video keeps them.

    :attr:`input_sizes` counts the network's input sizes ``(w, h)`` (before padding) over
    every pass this detector has run: what the coarse-to-fine choice did.
    """

    name = "yunet"
    landmarks = True
    video_options = YUNET_VIDEO
    confirm_score = 0.65
    """A video track is a person once one of its boxes scores 0.65 or more: on the media clip
    a dark blur found 4 frames in a row scored 0.60-0.63, every annotated person reached 0.66
    within their first 4 frames (``benchmarks/identity.py --sweep``, BENCHMARKS.md "Identity
    through a video")."""

    def __init__(
        self,
        max_side: int | None = _PHOTO["max_side"],
        score_threshold: float = _PHOTO["score_threshold"],
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        backend: str = "auto",
        threads: int | None = None,
        model: str | Path | None = None,
        coarse_side: int | None = _PHOTO["coarse_side"],
    ):
        given = {"max_side": max_side, "score_threshold": score_threshold, "coarse_side": coarse_side}
        self._chosen = frozenset(k for k, v in given.items() if not isinstance(v, _PhotoDefault))
        max_side = _photo_or(max_side)
        score_threshold = _photo_or(score_threshold)
        coarse_side = _photo_or(coarse_side)
        if backend not in YUNET_BACKENDS:
            raise UserValueError(f"unknown YuNet backend {backend!r}; available: {', '.join(YUNET_BACKENDS)}")
        check_option("score_threshold", score_threshold, low=0.0, high=1.0)
        check_option("nms_threshold", nms_threshold, low=0.0, high=1.0)
        check_option("top_k", top_k, low=1, integer=True)
        check_option("threads", threads, low=1, integer=True, none_ok=True)
        check_option("max_side", max_side, low=MIN_SIDE, integer=True, none_ok=True)
        check_option("coarse_side", coarse_side, low=MIN_SIDE, integer=True, none_ok=True)
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
        self._video: YuNetDetector | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"YuNetDetector(max_side={self.max_side}, score_threshold={self.score_threshold}, "
            f"coarse_side={self.coarse_side}, nms_threshold={self.nms_threshold}, backend={self.backend!r})"
        )

    def with_options(self, **kwargs: Any) -> YuNetDetector:
        """A copy with some settings changed (e.g. ``**YUNET_VIDEO`` for video frames); the
        settings this detector left at their photo defaults stay defaults in the copy."""
        kw: dict[str, Any] = {k: getattr(self, k) for k in self._chosen}
        kw |= {
            "nms_threshold": self.nms_threshold,
            "top_k": self.top_k,
            "backend": self.backend,
            "threads": self.threads,
            "model": self.model,
        }
        kw.update(kwargs)
        return YuNetDetector(**kw)

    def for_video(self) -> YuNetDetector:
        """This detector with its video settings: :data:`YUNET_VIDEO` (320 px, score 0.6, one
        pass: what the annotated clip was tuned on) for every setting this detector left at its
        photo default; the settings it was made with are kept. The same rule as a recognizer's
        config (:meth:`fervid.inference.config.RecognizerConfig.video_detector_kwargs`: the
        video defaults, then the detector options over them). A detector that chose all of
        them is used as it is. Made once: later calls return the same detector."""
        fill = {k: v for k, v in YUNET_VIDEO.items() if k not in self._chosen}
        if not fill:
            return self
        with self._lock:
            if self._video is None:
                self._video = self.with_options(**fill)
        return self._video

    @property
    def resolved_backend(self) -> str:
        """``"onnxruntime"`` or ``"opencv"``: what :meth:`detect` runs on."""
        if self.backend != "auto":
            return self.backend
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
                self._impl = self._onnxruntime(path) if backend == "onnxruntime" else self._opencv(path)
                self._impl_backend = backend
        return self._impl_backend, self._impl  # type: ignore[return-value]

    def _onnxruntime(self, path: Path) -> Any:
        """An onnxruntime session on ``path`` (its input and output names noted)."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise DetectorUnavailableError(
                "YuNet backend 'onnxruntime' needs onnxruntime: pip install onnxruntime (or backend='opencv')"
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
        return sess

    def _opencv(self, path: Path) -> Any:
        """OpenCV's ``FaceDetectorYN`` on ``path`` (its input size and threshold noted: it keeps them as state)."""
        import cv2

        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorUnavailableError(
                f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs opencv-python(-headless) >= 4.8); "
                "pip install -U 'opencv-python-headless>=4.8,<5' or onnxruntime"
            )
        impl = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
        )
        self._cv_size = (320, 320)
        self._cv_threshold = self.score_threshold
        return impl

    def load(self) -> YuNetDetector:
        """Load (and verify) the weights now instead of on the first :meth:`detect`."""
        self._get()
        return self

    def raw(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet on a BGR uint8 image as it is (no resizing): ``N x 15`` float32 rows
        ``x, y, w, h``, five landmarks ``(x, y)``, score, in that image's pixels."""
        return self._raw(detector_input(bgr), False, self.score_threshold)

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
        return fit_size(w, h, side) if side < max(fine) else None

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB (``H x W x 3``) or grey ``uint8`` image, left to right (coarse to
        fine: see the class docstring)."""
        image = detector_input(image)
        swap = image.ndim == 3  # RGB in, BGR to the network
        if swap and image.strides[2] < 0 and image[:, :, ::-1].flags.c_contiguous:
            image, swap = image[:, :, ::-1], False  # an RGB view of a BGR frame (video): the frame itself
        H, W = image.shape[:2]
        if not H or not W:
            return []
        fine = fit_size(W, H, self.max_side)
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
            b = clip_box(row[0] * sx, row[1] * sy, row[2] * sx, row[3] * sy, row[14], W, H)
            if b is None:
                continue
            lm = tuple((row[4 + 2 * k] * sx, row[5 + 2 * k] * sy) for k in range(5))
            out.append(FaceBox(b.x, b.y, b.w, b.h, b.score, lm))
        return sort_reading_order(out)
