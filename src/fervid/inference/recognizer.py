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

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.data.datasets import FERDataError
from fervid.data.io import ColorOrder, ImageInput, describe_source, load_image
from fervid.detectors import Detector, FaceBox, create_detector, for_video, video_options
from fervid.errors import UserValueError
from fervid.inference.backends import Classifier, EnsembleClassifier, TorchClassifier, load_classifier
from fervid.inference.config import DEFAULTS, RecognizerConfig
from fervid.inference.options import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTH
from fervid.inference.pipeline import FacePipeline
from fervid.inference.schema import FaceResult as FaceResult  # re-exported: it lived here
from fervid.inference.schema import ImageResult as ImageResult
from fervid.inference.schema import results_to_dataframe as results_to_dataframe
from fervid.inference.video import VideoSource, VideoStream, stream
from fervid.runtime import resolve_device, torch_available

if TYPE_CHECKING:
    from fervid.inference.tracking import Tracker


DEFAULT_THRESHOLD = DEFAULTS.threshold
"""Default probability threshold for :attr:`FaceResult.labels_above` (:class:`RecognizerConfig`'s)."""


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

    @property
    def pipeline(self) -> FacePipeline:
        """The face pipeline for photos: this recognizer's classifier (loaded now), detector
        and threshold (:mod:`fervid.inference.pipeline`). Made per call, cheaply, so that it
        follows :meth:`adapt`."""
        return FacePipeline(self.classifier, self.detector, self.threshold)

    @property
    def video_pipeline(self) -> FacePipeline:
        """The face pipeline for video frames: as :attr:`pipeline` with :attr:`video_detector`."""
        return FacePipeline(self.classifier, self.video_detector, self.threshold)

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
        pipe = self.pipeline
        metas: list[tuple[str, int, int, list[FaceBox]]] = []
        crops: list[np.ndarray] = []
        for image in images:
            rgb = load_image(image, color=color)
            boxes, found = pipe.find(rgb)
            crops += found
            metas.append((describe_source(image), rgb.shape[1], rgb.shape[0], boxes))
        stack = pipe.stack(crops)
        # The adapted classifier is local to this call: a recognizer shared by threads (a web
        # service) never sees another call's adaptation.
        clf_used = self._adapted_classifier(stack) if adabn else None
        faces = pipe.classify(stack, [b for m in metas for b in m[3]], clf_used)
        out, i = [], 0
        for source, w, h, boxes in metas:
            out.append(ImageResult(source, w, h, faces[i : i + len(boxes)], pipe.labels))
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

        pipe = self.pipeline
        crops: list[np.ndarray] = []
        for image in tqdm(list(images), desc="adabn: faces", unit="img", disable=not progress, leave=False):
            try:
                rgb = load_image(image, color=color)
            except (FERDataError, OSError):
                if strict:
                    raise
                continue
            crops += pipe.find(rgb)[1]
        self._classifier = self._adapted_classifier(pipe.stack(crops))
        return len(crops)

    def _adapted_classifier(self, faces: np.ndarray) -> Classifier:
        """A torch classifier whose model's BatchNorm statistics come from ``faces``."""
        from fervid.inference.adapt import adabn

        clf = self.classifier
        if isinstance(clf, EnsembleClassifier):
            raise UserValueError(
                f"AdaBN re-estimates the BatchNorm statistics of one PyTorch model; the ensemble {self.model!r} "
                "cannot be adapted: adapt a single model"
            )
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
        an ``N x H x W`` uint8 array is N grey crops, unless ``W`` is 1, 3 or 4: such an array
        is one ``H x W x C`` image; pass a list of crops to say otherwise). Each is converted to grey and
        resized to the model's input size. Boxes are the whole crop; scores are 1.0.
        """
        pipe = self.pipeline
        if isinstance(crops, np.ndarray) and crops.ndim == 3 and crops.shape[-1] not in (1, 3, 4):
            items: Sequence[Any] = list(crops)  # N x H x W grey stack
        elif isinstance(crops, (np.ndarray, str, bytes, bytearray, memoryview)) or not isinstance(crops, Sequence):
            items = [crops]
        else:
            items = crops
        grays, boxes = [], []
        for c in items:
            g = pipe.gray(load_image(c, color=color))
            boxes.append(FaceBox(0, 0, g.shape[1], g.shape[0], 1.0))
            grays.append(pipe.fit(g))
        return pipe.classify(pipe.stack(grays), boxes)

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
        """The faces of a crop stack (``clf``: another classifier with the same labels)."""
        return self.pipeline.classify(faces, boxes, clf)
