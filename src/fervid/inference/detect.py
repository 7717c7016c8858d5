"""Moved: face detection is the :mod:`fervid.detectors` package (the registry, with the
protocol, boxes and geometry in :mod:`fervid.detectors.base` and one module per detector).

This module re-exports its public names so that imports written for earlier versions
(``from fervid.inference.detect import create_detector, FaceBox``) keep working; new code
imports from :mod:`fervid.detectors`.
"""

from __future__ import annotations

from fervid.detectors import (
    DEFAULT_DETECTOR,
    available_detectors,
    create_detector,
    register_detector,
)
from fervid.detectors.base import (
    LANDMARK_NAMES,
    MIN_SIDE,
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
    shrink,
    sort_reading_order,
)
from fervid.detectors.dlib import DlibHogDetector
from fervid.detectors.haar import HaarDetector
from fervid.detectors.yunet import (
    YUNET_BACKENDS,
    YUNET_COARSE_RATIO,
    YUNET_DIR,
    YUNET_FILES,
    YUNET_PHOTO,
    YUNET_REFINE_SCORE,
    YUNET_SMALL_FACE,
    YUNET_VIDEO,
    YuNetDetector,
    decode_yunet,
    verify_sha256,
    yunet_weights,
)

__all__ = [
    "DEFAULT_DETECTOR",
    "LANDMARK_NAMES",
    "MIN_SIDE",
    "YUNET_BACKENDS",
    "YUNET_COARSE_RATIO",
    "YUNET_DIR",
    "YUNET_FILES",
    "YUNET_PHOTO",
    "YUNET_REFINE_SCORE",
    "YUNET_SMALL_FACE",
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
    "decode_yunet",
    "for_video",
    "iou",
    "landmark_columns",
    "landmarks_dict",
    "non_max_suppression",
    "register_detector",
    "roi_scale",
    "shrink",
    "sort_reading_order",
    "verify_sha256",
    "yunet_weights",
]
