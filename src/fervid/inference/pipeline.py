"""The one face pipeline: image or video frame -> detections -> crops -> classifier outputs ->
:class:`~fervid.inference.schema.FaceResult` objects.

Photos (:meth:`EmotionRecognizer.predict_batch <fervid.inference.recognizer.EmotionRecognizer.predict_batch>`),
AdaBN (``adapt``), face crops (``predict_faces``), video frames
(:class:`fervid.inference.video.VideoStream`), ``fervid batch`` and the service all go
through a :class:`FacePipeline`, so a face gets the same grey conversion, crop, softmax and
fields whatever the entry point. Video only chooses *which* boxes to crop (key frames and
re-detection windows); the rest is this module.

Arithmetic (kept bit-identical to earlier releases): the crop is
:func:`fervid.inference.crop.crop_face` at the model's ``input_size`` with its ``face_margin``
(0 for whole-image detectors such as ``skip``, whose input already is the face); the
probabilities are the classifier's own (``Classifier.probabilities``): for one model
:func:`fervid.inference.backends.calibrated_probabilities`, the softmax of the logits (as
float32) over the model's temperature, in float64, each row divided by its sum once more so it
sums to 1 to the last digit; for an ensemble (``default+fast``) the mean of its members'
(:class:`fervid.inference.backends.EnsembleClassifier`). The pipeline does not know which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fervid.data.io import ColorOrder, rgb_to_gray
from fervid.detectors import Detector, FaceBox, capabilities
from fervid.inference.ambiguity import labels_above, normalized_entropy
from fervid.inference.crop import crop_face
from fervid.inference.schema import FaceResult

if TYPE_CHECKING:
    from fervid.inference.backends import Classifier


class FacePipeline:
    """Detect, crop and classify faces with one classifier and one detector.

    Args:
        classifier: supplies the labels, preprocessing (input size, face margin) and
            probabilities.
        detector: finds the faces (``whole_image`` detectors get no margin added).
        threshold: probability threshold of :attr:`FaceResult.labels_above`.
    """

    def __init__(self, classifier: Classifier, detector: Detector, threshold: float):
        self.classifier = classifier
        self.detector = detector
        self.threshold = float(threshold)
        self.labels: tuple[str, ...] = tuple(classifier.labels)
        self.size = int(classifier.preprocess.input_size)
        # a whole-image detector (e.g. "skip") hands over the face crop itself: nothing to grow
        self.margin = 0.0 if capabilities(detector).whole_image else float(classifier.preprocess.face_margin)

    # ---- images
    @staticmethod
    def gray(image: np.ndarray, color: ColorOrder = "rgb") -> np.ndarray:
        """``H x W`` grey uint8 of an RGB (or, ``color="bgr"``, an OpenCV BGR) ``H x W x 3``
        image, ITU-R 601 luma; a grey image is returned as it is."""
        return rgb_to_gray(image, color)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """The detector's boxes in an RGB image."""
        return self.detector.detect(rgb)

    def crop(self, gray: np.ndarray, boxes: Sequence[FaceBox]) -> list[np.ndarray]:
        """One ``size x size`` grey crop per box (aligned on its landmarks where it has them)."""
        return [crop_face(gray, b.box, self.margin, self.size, b.landmarks) for b in boxes]

    def find(self, rgb: np.ndarray, gray: np.ndarray | None = None) -> tuple[list[FaceBox], list[np.ndarray]]:
        """Detect the faces of an RGB image and crop them (from ``gray`` when given)."""
        boxes = self.detect(rgb)
        return boxes, self.crop(self.gray(rgb) if gray is None else gray, boxes)

    def fit(self, gray: np.ndarray) -> np.ndarray:
        """A grey image that already is a face, resized to the model's input size."""
        if gray.shape == (self.size, self.size):
            return gray
        import cv2

        interp = cv2.INTER_AREA if max(gray.shape) > self.size else cv2.INTER_LINEAR
        return cv2.resize(gray, (self.size, self.size), interpolation=interp)

    def stack(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``N x size x size`` uint8 (``0 x size x size`` for no crop)."""
        return np.stack(crops) if len(crops) else np.zeros((0, self.size, self.size), np.uint8)

    # ---- classification
    def probabilities(self, crops: np.ndarray, classifier: Classifier | None = None) -> np.ndarray:
        """``N x K`` float64 probabilities of a crop stack (``classifier``: another one with the
        same labels, e.g. an AdaBN-adapted copy; default this pipeline's)."""
        clf = classifier if classifier is not None else self.classifier
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)))
        return np.asarray(clf.probabilities(crops), np.float64)

    def results(self, boxes: Sequence[FaceBox], probs: np.ndarray) -> list[FaceResult]:
        """One :class:`FaceResult` per box and probability row."""
        labels = self.labels
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
                    ambiguity=float(normalized_entropy(p)),
                    labels_above=labels_above(p, labels, self.threshold),
                    landmarks=b.landmarks,
                )
            )
        return out

    def classify(
        self, crops: np.ndarray, boxes: Sequence[FaceBox], classifier: Classifier | None = None
    ) -> list[FaceResult]:
        """:meth:`probabilities` then :meth:`results`."""
        if len(crops) == 0:
            return []
        return self.results(boxes, self.probabilities(crops, classifier))
