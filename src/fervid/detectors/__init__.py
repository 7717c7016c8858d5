"""Face detectors behind one small interface, and their registry.

``create_detector(name, **options)`` makes one, ``available_detectors()`` lists them,
``register_detector`` adds your own. What a detector is, and what it may declare about itself
(landmarks, whole-image mode, video settings, re-detection window scale), is in
:mod:`fervid.detectors.base`: a detector needs only ``detect(image)``.

Built-in detectors:

``yunet`` (default, :mod:`fervid.detectors.yunet`)
    YuNet-s, a small CNN bundled with the package that also returns five landmarks;
    onnxruntime or OpenCV. Photos at 640 px coarse to fine, video at 320 px in one pass.
    Score: the detector's confidence, 0..1.
``haar`` (:mod:`fervid.detectors.haar`)
    OpenCV's frontal-face Haar cascade (``alt2``) from ``cv2.data`` (shipped in every
    ``opencv-python(-headless)`` 4.x wheel). Images larger than ``max_side`` are downscaled
    for detection and the boxes mapped back. Score: the number of raw detections merged
    into the box (>= ``min_neighbors``). No landmarks.
``haar-profile``
    ``haar`` plus the profile cascade (run on the image and its mirror) for turned heads;
    higher recall on side views, slower, a few more false positives.
``dlib`` (:mod:`fervid.detectors.dlib`)
    dlib's HOG + linear SVM frontal detector (``pip install fervid[dlib]``, a CPU wheel);
    more precise boxes and fewer false positives than Haar. Score: the SVM margin.
``skip`` (:class:`~fervid.detectors.base.SkipDetector`)
    No detection: the whole image is one face (for images that are already face crops,
    e.g. FER2013 48x48 images). Score 1.0.

Measurements: ``benchmarks/detectors.md``.

Thread safety: every built-in detector may be shared by threads (one
``EmotionRecognizer`` serving many requests) and gives each thread the answer it would
give alone. ``yunet``: the model loads once under a lock, and OpenCV's ``FaceDetectorYN``
(which keeps the input size and threshold as state) runs under it; onnxruntime sessions
are thread-safe. ``haar``/``haar-profile``: ``cv2.CascadeClassifier`` is not (shared, it
returned wrong boxes and raised ``cv2.error``): detections run one at a time under the
detector's lock. ``dlib``: one call at a time under a lock (dlib documents no thread
safety). ``skip``: no state. A detector of your own that is not thread-safe needs its own
lock, or one instance per thread. Detector options are checked when the detector is
made (:func:`create_detector`): an unknown option or a value out of range is a
:class:`~fervid.errors.UserValueError`, the same from the API, the CLI and configs.

Importing this package loads numpy only; OpenCV, onnxruntime and dlib load on the first
``detect``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, overload

from fervid.detectors.base import (
    LANDMARK_NAMES,
    BaseDetector,
    Detector,
    DetectorCapabilities,
    DetectorUnavailableError,
    FaceBox,
    Landmarks,
    SkipDetector,
    capabilities,
    for_video,
    iou,
    landmark_columns,
    landmarks_dict,
    non_max_suppression,
    roi_scale,
    sort_reading_order,
    video_options,
)
from fervid.detectors.dlib import DlibHogDetector
from fervid.detectors.haar import HaarDetector
from fervid.detectors.yunet import YUNET_PHOTO, YUNET_VIDEO, YuNetDetector
from fervid.errors import UserValueError

DEFAULT_DETECTOR = "yunet"
"""The detector every entry point uses unless told otherwise (the one place it is named)."""

DetectorFactory = Callable[..., Detector]

_REGISTRY: dict[str, tuple[DetectorFactory, str]] = {}


@overload
def register_detector(name: str, factory: DetectorFactory, description: str = "") -> DetectorFactory: ...
@overload
def register_detector(name: str, *, description: str = "") -> Callable[[DetectorFactory], DetectorFactory]: ...
def register_detector(name: str, factory: DetectorFactory | None = None, description: str = "") -> Any:
    """Make ``create_detector(name, **options)`` return ``factory(**options)``.

    ``factory`` is a detector class or any callable that returns a detector. Without it this
    is a decorator (``@register_detector("mine", description="...")`` above a class or
    function). ``description`` defaults to the first line of the factory's docstring. A name
    registered again replaces the earlier entry.
    """

    def add(f: DetectorFactory) -> DetectorFactory:
        doc = (f.__doc__ or "").strip()
        _REGISTRY[name] = (f, description or (doc.splitlines()[0] if doc else ""))
        return f

    return add(factory) if factory is not None else add


def available_detectors() -> dict[str, str]:
    """Registered detector names -> one-line descriptions (optional ones may be uninstalled)."""
    return {k: d for k, (_, d) in _REGISTRY.items()}


def create_detector(name: str | Detector | None = None, **kwargs: Any) -> Detector:
    """A detector by registered name (default :data:`DEFAULT_DETECTOR`), or ``name`` itself if
    it already is a detector object. Nothing heavy is loaded until the first ``detect`` call."""
    if name is None:
        name = DEFAULT_DETECTOR
    if not isinstance(name, str):
        if not callable(getattr(name, "detect", None)):
            raise TypeError(f"{name!r} is not a detector (needs a detect(image) method)")
        return name
    if name not in _REGISTRY:
        raise UserValueError(f"unknown detector {name!r}; available: {sorted(_REGISTRY)}")
    factory = _REGISTRY[name][0]
    unknown = _unknown_options(factory, kwargs)
    if unknown:
        raise UserValueError(
            f"detector {name!r} has no option {', '.join(map(repr, unknown))} (options given: {sorted(kwargs)}; "
            f"it takes: {', '.join(_option_names(factory)) or 'none'})"
        )
    try:
        return factory(**kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        bad = str(e).rsplit("argument", 1)[-1].strip()
        raise UserValueError(f"detector {name!r} has no option {bad} (options given: {sorted(kwargs)})") from None


def _option_names(factory: DetectorFactory) -> list[str]:
    """The keyword options ``factory`` declares (empty when it takes ``**options`` or has no
    readable signature: then the call itself says what it refuses)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds]


def _unknown_options(factory: DetectorFactory, kwargs: dict[str, Any]) -> list[str]:
    """The options in ``kwargs`` that ``factory`` does not take, checked against its signature
    before it is called (so a detector without options, ``skip``, names the option too)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    known = set(_option_names(factory))
    return sorted(k for k in kwargs if k not in known)


def _haar_profile(**options: Any) -> HaarDetector:
    return HaarDetector(profile=True, **options)


# haar-profile takes Haar's options but profile (always on): its signature says so, for the check above
_haar_profile.__signature__ = inspect.signature(HaarDetector).replace(  # type: ignore[attr-defined]
    parameters=[p for p in inspect.signature(HaarDetector).parameters.values() if p.name != "profile"]
)


register_detector("yunet", YuNetDetector, "YuNet CNN with 5 landmarks (default; bundled, onnxruntime or OpenCV)")
register_detector("haar", HaarDetector, "OpenCV Haar frontal cascade (no landmarks)")
register_detector("haar-profile", _haar_profile, "Haar frontal + profile cascades")
register_detector("dlib", DlibHogDetector, "dlib HOG frontal detector (pip install 'fervid[dlib]')")
register_detector("skip", SkipDetector, "no detection: the whole image is one face")

__all__ = [
    "DEFAULT_DETECTOR",
    "LANDMARK_NAMES",
    "YUNET_PHOTO",
    "YUNET_VIDEO",
    "BaseDetector",
    "Detector",
    "DetectorCapabilities",
    "DetectorUnavailableError",
    "DlibHogDetector",
    "FaceBox",
    "HaarDetector",
    "Landmarks",
    "SkipDetector",
    "YuNetDetector",
    "available_detectors",
    "capabilities",
    "create_detector",
    "for_video",
    "iou",
    "landmark_columns",
    "landmarks_dict",
    "non_max_suppression",
    "register_detector",
    "roi_scale",
    "video_options",
    "sort_reading_order",
]
