"""The Python API for photos: find faces, classify their emotion, get typed results.

>>> from fervid import EmotionRecognizer
>>> rec = EmotionRecognizer()                      # bundled "default" model, YuNet detector
>>> result = rec.predict("two_people.jpg")         # path, bytes, PIL image or numpy array
>>> for face in result.faces:
...     print(face.box, face.label, round(face.confidence, 2), face.labels_above)
>>> result.to_json()                               # or .to_dict(), .to_dataframe()

Colour order: numpy arrays are taken as **RGB** (like PIL). For OpenCV frames
(``cv2.imread``, ``cv2.VideoCapture.read``), which are BGR, pass ``color="bgr"``:
``rec.predict(frame, color="bgr")``.

Each face is cropped by :func:`fervid.inference.crop.crop_face`, in grey, at the model's
``input_size``: with the default detector (YuNet, which finds five landmarks) the crop is
*aligned*: a similarity transform puts the eyes, nose and mouth corners where they lie on
FER2013's own training faces (eyes level, same scale and position); detectors without
landmarks (``haar``, ``dlib``) get the square box grown by the model's margin
(``preprocess.face_margin`` of the box side on every side). Pixels outside the image
repeat the border.
Probabilities are the softmax of the logits divided by the model's calibration
temperature, so they sum to 1.

Nothing is loaded when this module is imported or the recognizer is created: the model
and the detector load on first use (or call :meth:`EmotionRecognizer.load`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.data.io import ColorOrder, ImageInput, describe_source, load_image
from fervid.detectors import (
    Detector,
    FaceBox,
    create_detector,
    for_video,
    landmark_columns,
    landmarks_dict,
    video_options,
)
from fervid.errors import UserValueError
from fervid.inference.config import DEFAULTS, RecognizerConfig
from fervid.inference.crop import crop_face
from fervid.inference.options import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTH
from fervid.runtime import resolve_device, torch_available

if TYPE_CHECKING:
    import pandas as pd

    from fervid.inference.backends import Classifier
    from fervid.inference.tracking import Tracker
    from fervid.inference.video import VideoSource, VideoStream


DEFAULT_THRESHOLD = DEFAULTS.threshold
"""Default probability threshold for :attr:`FaceResult.labels_above` (:class:`RecognizerConfig`'s)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FaceResult:
    """The emotion of one face.

    Attributes:
        box: ``(x, y, w, h)`` of the detected face in the original image's pixels.
        score: the detector's score (scale depends on the detector; 1.0 for ``skip`` and
            :meth:`EmotionRecognizer.predict_faces`).
        probabilities: every emotion label -> probability (temperature applied; sums to 1),
            in the model's label order.
        label: the most probable emotion.
        confidence: its probability.
        ambiguity: normalised entropy of ``probabilities``, 0 (one certain emotion) .. 1
            (all equally likely).
        labels_above: labels whose probability is at least the recognizer's ``threshold``
            (default 0.3), most probable first: the plausible readings of an ambiguous face.
        top2_margin: probability of the best label minus the second best (near 0: the
            model hesitates between two readings).
        ambiguous: ``ambiguity >= fervid.inference.ambiguity.AMBIGUITY_THRESHOLD``, a level set so
            that the bundled model flags about as many FER+ test faces as the ten human
            annotators disagreed on (see :mod:`fervid.inference.ambiguity`). Computed from
            ``probabilities`` when not given.
        landmarks: the detector's five landmarks ``((x, y), ...)`` in the original image's
            pixels, in :data:`fervid.detectors.LANDMARK_NAMES` order (the person's
            right eye, left eye, nose tip, right and left mouth corners); ``None`` for
            detectors without landmarks (``haar``, ``dlib``, ``skip``). The crop was
            aligned on them.
    """

    box: tuple[int, int, int, int]
    score: float
    probabilities: dict[str, float]
    label: str
    confidence: float
    ambiguity: float
    labels_above: tuple[str, ...]
    top2_margin: float | None = None
    ambiguous: bool | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        from fervid.inference.ambiguity import AMBIGUITY_THRESHOLD, top2_margin

        if self.top2_margin is None:
            object.__setattr__(self, "top2_margin", float(top2_margin(list(self.probabilities.values()))))
        if self.ambiguous is None:
            object.__setattr__(self, "ambiguous", bool(self.ambiguity >= AMBIGUITY_THRESHOLD))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        x, y, w, h = self.box
        return {
            "box": {"x": x, "y": y, "w": w, "h": h},
            "score": round(float(self.score), 4),
            "label": self.label,
            "confidence": float(self.confidence),
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "ambiguity": float(self.ambiguity),
            "top2_margin": float(self.top2_margin),  # type: ignore[arg-type]
            "ambiguous": bool(self.ambiguous),
            "labels_above": list(self.labels_above),
            "landmarks": landmarks_dict(self.landmarks),
        }


@dataclass(frozen=True)
class ImageResult:
    """All faces found in one image (an empty ``faces`` list when there is none).

    Attributes:
        source: the path, or a short description of an in-memory input.
        width, height: the image size in pixels (after EXIF orientation).
        faces: one :class:`FaceResult` per face, left to right.
        labels: the model's emotion labels (the keys of every face's probabilities).
    """

    source: str
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)
    labels: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self):
        return iter(self.faces)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.source,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }

    def to_json(self, **kwargs: Any) -> str:
        """One JSON object (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per face (see :func:`results_to_dataframe`); needs pandas."""
        return results_to_dataframe([self])


def results_to_dataframe(results: Iterable[ImageResult]) -> pd.DataFrame:
    """One row per face: ``path, face, x, y, w, h, score, label, confidence, ambiguity,
    top2_margin, ambiguous, labels_above`` (``"|"``-joined), the landmarks (``right_eye_x,
    right_eye_y, ..., mouth_left_y``; NaN for detectors without them) and one probability
    column per emotion label.
    Images without faces contribute no rows. Needs pandas (``pip install 'fervid[pandas]'``)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_dataframe needs pandas: pip install 'fervid[pandas]'") from e
    results = list(results)
    labels: list[str] = []
    for r in results:
        labels += [lab for lab in r.labels if lab not in labels]
    lm_cols = landmark_columns()
    rows = []
    for r in results:
        for i, f in enumerate(r.faces):
            x, y, w, h = f.box
            lm = [float("nan")] * len(lm_cols) if f.landmarks is None else [float(v) for p in f.landmarks for v in p]
            rows.append(
                {
                    "path": r.source,
                    "face": i,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "score": f.score,
                    "label": f.label,
                    "confidence": f.confidence,
                    "ambiguity": f.ambiguity,
                    "top2_margin": f.top2_margin,
                    "ambiguous": f.ambiguous,
                    "labels_above": "|".join(f.labels_above),
                    **dict(zip(lm_cols, lm)),
                    **f.probabilities,
                }
            )
    cols = [
        "path",
        "face",
        "x",
        "y",
        "w",
        "h",
        "score",
        "label",
        "confidence",
        "ambiguity",
        "top2_margin",
        "ambiguous",
        "labels_above",
        *lm_cols,
        *labels,
    ]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- ambiguity


def _normalized_entropy(p: np.ndarray) -> float:
    from fervid.inference.ambiguity import normalized_entropy

    return float(normalized_entropy(p))


def _labels_above(p: np.ndarray, labels: Sequence[str], threshold: float) -> tuple[str, ...]:
    from fervid.inference.ambiguity import labels_above

    return labels_above(p, labels, threshold)


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    from fervid.data.io import rgb_to_gray

    return rgb_to_gray(rgb)


# --------------------------------------------------------------------------- recognizer


class EmotionRecognizer:
    """Detect faces and recognise their emotions.

    Args:
        model: a bundled model name (``"default"``, ``"fast"``), a checkpoint path
            (``.pt`` from ``fervid train``, ``.safetensors``), or a loaded torch model.
        detector: a detector name (``"yunet"`` default, with landmarks; ``"haar"``,
            ``"haar-profile"``, ``"dlib"``, ``"skip"`` for images that already are face
            crops; see :mod:`fervid.detectors`) or any object with
            ``detect(image) -> list[FaceBox]``.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        backend: ``"auto"`` (default: onnxruntime when it is installed and the device is
            the CPU, where it was 1.5-3x faster than PyTorch; else torch), ``"torch"`` or
            ``"onnx"`` (see :func:`fervid.inference.backends.load_classifier`).
        threshold: probability threshold for :attr:`FaceResult.labels_above` (default 0.3).
        detector_options: keyword arguments for :func:`fervid.detectors.create_detector`
            (e.g. ``{"max_side": 1024}`` for YuNet on photos of small faces, ``{"min_neighbors": 8}``
            for Haar, ``{"coarse_side": None}`` for YuNet in one pass); they apply to photos and
            video frames alike, over YuNet's video settings
            (:data:`~fervid.detectors.YUNET_VIDEO`) in :meth:`stream`.

    These keyword arguments build a :class:`~fervid.inference.config.RecognizerConfig`
    (:attr:`config`); :meth:`from_config` takes one with every setting, the photo and video
    detection sizes and the detector's score threshold included::

        EmotionRecognizer.from_config(RecognizerConfig(model="fast", photo_max_side=1024))
    """

    def __init__(
        self,
        model: Any = DEFAULTS.model,
        detector: str | Detector = DEFAULTS.detector,
        device: str = DEFAULTS.device,
        backend: str = DEFAULTS.backend,
        *,
        threshold: float = DEFAULTS.threshold,
        detector_options: Mapping[str, Any] | None = None,
    ):
        config = RecognizerConfig(
            model=model,
            detector=detector,
            device=device,
            backend=backend,
            threshold=threshold,
            detector_options=detector_options or {},
        )
        self._setup(config)

    @classmethod
    def from_config(cls, config: RecognizerConfig) -> EmotionRecognizer:
        """A recognizer with these settings (``EmotionRecognizer(model=..., ...)`` builds the same
        config from its keyword arguments). Nothing loads until first use."""
        if not isinstance(config, RecognizerConfig):
            raise TypeError(f"from_config takes a RecognizerConfig, got {type(config).__name__}")
        rec = cls.__new__(cls)
        rec._setup(config)
        return rec

    def _setup(self, config: RecognizerConfig) -> None:
        self._config = config  # valid: a RecognizerConfig is checked when it is made
        # Made now (cheap: nothing loads before the first detection), so that an unknown
        # detector or option, or a value out of range, fails here as it does in the CLI.
        self._detector: Detector | None = create_detector(config.detector, **config.detector_kwargs())
        self._video_detector: Detector | None = None
        self._classifier: Classifier | None = None
        self._load_lock = threading.Lock()

    @property
    def config(self) -> RecognizerConfig:
        """The settings this recognizer was made with (frozen; :meth:`from_config` makes another)."""
        return self._config

    @property
    def model(self) -> Any:
        """The model name, checkpoint path or model object (``config.model``)."""
        return self._config.model

    @property
    def device(self) -> str:
        return self._config.device

    @property
    def backend(self) -> str:
        return self._config.backend

    @property
    def threshold(self) -> float:
        """The :attr:`FaceResult.labels_above` threshold (``config.threshold``)."""
        return self._config.threshold

    def __repr__(self) -> str:
        c = self._config
        changed = [
            f"{f.name}={getattr(c, f.name)!r}"
            for f in fields(c)
            if f.name not in ("model", "detector") and getattr(c, f.name) != getattr(DEFAULTS, f.name)
        ]
        return f"EmotionRecognizer(model={c.model!r}, detector={c.detector!r}{''.join(', ' + x for x in changed)})"

    # ---- lazy parts
    @property
    def classifier(self) -> Classifier:
        """The emotion classifier (loaded on first access)."""
        if self._classifier is None:
            from fervid.inference.backends import load_classifier

            with self._load_lock:  # threads sharing a recognizer load the model once
                if self._classifier is None:
                    # without torch there is one device (the CPU, onnxruntime): load_classifier checks it
                    device = str(resolve_device(self.device)) if torch_available() else self.device
                    self._classifier = load_classifier(self.model, backend=self.backend, device=device)
        return self._classifier

    @property
    def detector(self) -> Detector:
        """The face detector for photos (created with the recognizer; loads on first use)."""
        if self._detector is None:
            with self._load_lock:
                if self._detector is None:
                    self._detector = create_detector(self._config.detector, **self._config.detector_kwargs())
        return self._detector

    @property
    def video_detector(self) -> Detector:
        """The detector for video frames (:meth:`stream`): the detector's video settings
        (:func:`fervid.detectors.video_options`; YuNet: 320 px, score 0.6, one pass, what the
        annotated clip was tuned on), then ``detector_options``, ``video_max_side`` and
        ``score_threshold`` over them (:meth:`RecognizerConfig.video_detector_kwargs`). A
        detector without video settings and without ``video_max_side`` is the photo detector
        itself; a detector object gives its own :func:`fervid.detectors.for_video`."""
        det = self.detector  # before the lock: the detector property takes it too
        cfg = self._config
        if not isinstance(cfg.detector, str):
            return for_video(det)
        kw = cfg.video_detector_kwargs(video_options(det))
        if kw == cfg.detector_kwargs():
            return det
        if self._video_detector is None:
            with self._load_lock:
                if self._video_detector is None:
                    self._video_detector = create_detector(cfg.detector, **kw)
        return self._video_detector

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels)

    def load(self) -> EmotionRecognizer:
        """Load the model and detector now (otherwise they load on first use)."""
        _ = self.classifier, self.detector
        return self

    # ---- prediction
    def predict(self, image: ImageInput, color: ColorOrder = "rgb") -> ImageResult:
        """Faces and emotions in one image.

        Args:
            image: a path, encoded image bytes, a PIL image, or a numpy array
                (RGB unless ``color="bgr"``; grey and RGBA arrays work too).
            color: ``"bgr"`` for OpenCV arrays; ignored for paths, bytes and PIL images.

        Returns:
            An :class:`ImageResult`; ``faces`` is empty when no face is found.

        Raises:
            fervid.data.io.ImageLoadError: unreadable or truncated image (names the file).
        """
        return self.predict_batch([image], color=color)[0]

    def predict_batch(
        self, images: Iterable[ImageInput], color: ColorOrder = "rgb", *, adabn: bool = False
    ) -> list[ImageResult]:
        """:meth:`predict` for many images; all faces are classified in one batch.

        ``adabn=True`` first re-estimates the model's BatchNorm statistics on the faces
        found in these images (AdaBN, :func:`fervid.inference.adapt.adabn`), for a set of photos that
        share a shift from FER2013 (another camera, blur, low light); the recognizer itself
        is left unadapted (see :meth:`adapt` for that). Needs the torch backend and at
        least :data:`fervid.inference.adapt.MIN_IMAGES` faces.
        """
        clf = self.classifier
        det = self.detector
        size, margin = int(clf.preprocess.input_size), float(clf.preprocess.face_margin)
        if getattr(det, "whole_image", False):  # e.g. "skip": the image already is the face crop
            margin = 0.0
        metas: list[tuple[str, int, int, list[FaceBox]]] = []
        crops: list[np.ndarray] = []
        for image in images:
            rgb = load_image(image, color=color)
            boxes = det.detect(rgb)
            gray = _to_gray(rgb)
            crops += [crop_face(gray, b.box, margin, size, b.landmarks) for b in boxes]
            metas.append((describe_source(image), rgb.shape[1], rgb.shape[0], boxes))
        stack = np.stack(crops) if crops else np.zeros((0, size, size), np.uint8)
        # The adapted classifier is local to this call: a recognizer shared by threads (a web
        # service) never sees another call's adaptation.
        clf_used = self._adapted_classifier(stack) if adabn else None
        faces = self._classify(stack, [b for m in metas for b in m[3]], clf_used)
        out, i = [], 0
        for source, w, h, boxes in metas:
            out.append(ImageResult(source, w, h, faces[i : i + len(boxes)], self.labels))
            i += len(boxes)
        return out

    def adapt(
        self, images: Iterable[ImageInput], color: ColorOrder = "rgb", *, strict: bool = True, progress: bool = False
    ) -> int:
        """AdaBN for a folder of photos: detect the faces in ``images`` (unlabelled photos of
        the target domain), re-estimate the model's BatchNorm statistics on them, and use the
        adapted model for every later prediction of this recognizer. Returns the number of
        faces used. ``strict=False`` skips unreadable images instead of raising.

        Raises ``ValueError`` for the onnx backend (AdaBN changes the PyTorch model; with
        ``backend="auto"`` the torch model is used) or fewer than
        :data:`fervid.inference.adapt.MIN_IMAGES` faces.
        """
        from tqdm.auto import tqdm

        from fervid.data.datasets import FERDataError

        det = self.detector
        size = int(self.classifier.preprocess.input_size)
        margin = 0.0 if getattr(det, "whole_image", False) else float(self.classifier.preprocess.face_margin)
        crops: list[np.ndarray] = []
        for image in tqdm(list(images), desc="adabn: faces", unit="img", disable=not progress, leave=False):
            try:
                rgb = load_image(image, color=color)
            except (FERDataError, OSError):
                if strict:
                    raise
                continue
            gray = _to_gray(rgb)
            crops += [crop_face(gray, b.box, margin, size, b.landmarks) for b in det.detect(rgb)]
        self._classifier = self._adapted_classifier(np.stack(crops) if crops else np.zeros((0, size, size), np.uint8))
        return len(crops)

    def _adapted_classifier(self, faces: np.ndarray) -> Classifier:
        """A torch classifier whose model's BatchNorm statistics come from ``faces``."""
        from fervid.inference.adapt import adabn
        from fervid.inference.backends import TorchClassifier, load_classifier

        clf = self.classifier
        if not isinstance(clf, TorchClassifier):
            if self.backend != "auto":
                raise UserValueError(
                    f"AdaBN re-estimates BatchNorm statistics of the PyTorch model; the {self.backend!r} "
                    "backend cannot be adapted: use backend='torch' (fervid predict --backend torch)"
                )
            clf = load_classifier(self.model, backend="torch", device=str(resolve_device(self.device)))
            assert isinstance(clf, TorchClassifier)
        return TorchClassifier(adabn(clf.model, faces), device=clf.device)

    def predict_faces(self, crops: ImageInput | Sequence[ImageInput], color: ColorOrder = "rgb") -> list[FaceResult]:
        """Emotions of images that already are face crops (no detection, no margin added).

        ``crops`` is one image or a sequence of them (paths, bytes, PIL images, arrays;
        an ``N x H x W`` uint8 array is N grey crops). Each is converted to grey and
        resized to the model's input size. Boxes are the whole crop; scores are 1.0.
        """
        import cv2

        clf = self.classifier
        size = int(clf.preprocess.input_size)
        if isinstance(crops, np.ndarray) and crops.ndim == 3 and crops.shape[-1] not in (1, 3, 4):
            items: Sequence[Any] = list(crops)  # N x H x W grey stack
        elif isinstance(crops, (np.ndarray, str, bytes, bytearray, memoryview)) or not isinstance(crops, Sequence):
            items = [crops]
        else:
            items = crops
        grays, boxes = [], []
        for c in items:
            g = _to_gray(load_image(c, color=color))
            boxes.append(FaceBox(0, 0, g.shape[1], g.shape[0], 1.0))
            interp = cv2.INTER_AREA if max(g.shape) > size else cv2.INTER_LINEAR
            grays.append(g if g.shape == (size, size) else cv2.resize(g, (size, size), interpolation=interp))
        return self._classify(np.stack(grays) if grays else np.zeros((0, size, size), np.uint8), boxes)

    def stream(
        self,
        source: VideoSource,
        *,
        every: int = 1,
        smooth: float = DEFAULT_SMOOTH,
        max_seconds: float | None = None,
        detect_every: int = DEFAULT_DETECT_EVERY,
        tracker: str | Tracker | None = None,
    ) -> VideoStream:
        """Faces, stable face ids and emotions frame by frame in a video file, a camera or
        an iterable of BGR frames: an iterator of :class:`fervid.inference.video.FrameResult` (no
        drawing, no window; see :mod:`fervid.inference.video` for tracking, smoothing, speed and how
        bad streams end).

        Args:
            source: a video file path, a camera index (``0`` or ``"0"``) or BGR frames.
            every: process every N-th frame.
            smooth: weight of the newest frame in each face's moving average (1: none).
            max_seconds: stop after this much video (files) or wall-clock (cameras) time.
            detect_every: full-frame detection on every N-th processed frame; known faces
                are re-detected near their last box in between (1: every frame).
            tracker: ``"person"`` (default: shot cuts, confirmation, re-identification;
                :mod:`fervid.inference.tracking`), ``"iou"`` or a tracker object.

        Raises:
            FileNotFoundError, fervid.inference.video.VideoOpenError: the source cannot be opened.
        """
        from fervid.inference.video import stream

        return stream(
            self,
            source,
            every=every,
            smooth=smooth,
            max_seconds=max_seconds,
            detect_every=detect_every,
            tracker=tracker,
        )

    def _classify(self, faces: np.ndarray, boxes: list[FaceBox], clf: Classifier | None = None) -> list[FaceResult]:
        from fervid.runtime import softmax

        if len(faces) == 0:
            return []
        clf = clf if clf is not None else self.classifier
        labels = tuple(clf.labels)
        probs = softmax(np.asarray(clf.logits(faces), np.float32), float(clf.temperature)).astype(np.float64)
        probs /= probs.sum(1, keepdims=True)
        out = []
        for b, p in zip(boxes, probs):
            k = int(np.argmax(p))
            out.append(
                FaceResult(
                    box=b.box,
                    score=float(b.score),
                    probabilities={lab: float(v) for lab, v in zip(labels, p)},
                    label=labels[k],
                    confidence=float(p[k]),
                    ambiguity=_normalized_entropy(p),
                    labels_above=_labels_above(p, labels, self.threshold),
                    landmarks=getattr(b, "landmarks", None),
                )
            )
        return out
