"""The choices and defaults of inference, in one torch-free place (the CLI lists them cheaply)."""

from __future__ import annotations

TTA_MODES: tuple[str, ...] = ("none", "flip", "crops")
"""Test-time augmentation: none, horizontal flip, or ten crops (see :mod:`fervid.inference.logits`)."""

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx")
"""Classifier backends: ``auto`` = ONNX Runtime on the CPU when installed, else torch."""

DEFAULT_SMOOTH = 0.4
"""Video: weight of the newest frame in each face's exponential moving average of probabilities."""

DEFAULT_DETECT_EVERY = 1
"""Video: run the face detector on every N-th processed frame and track boxes in between. 1 (every
frame) since the default detector is YuNet (a few ms per 640x480 frame, benchmarks/video_yunet.md);
5 suits the slow Haar cascade."""

TRACKERS: tuple[str, ...] = ("person", "iou")
"""Video trackers: ``person`` (the default: shot cuts, confirmation, re-identification by
appearance; :class:`fervid.inference.tracking.PersonTracker`) and ``iou`` (fervid's box tracker
before it: an id per box at once, no cuts, no appearance)."""
