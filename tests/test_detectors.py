"""The detector contract (fervid.detectors): every registered detector on a real photo, the
capabilities it declares and what they promise, a user's detector that has only ``detect``
through photos and video, YuNet's video settings, and the old import path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fervid.detectors as detectors
from fervid.data.io import load_image
from fervid.detectors import (
    YUNET_PHOTO,
    YUNET_VIDEO,
    DetectorCapabilities,
    FaceBox,
    HaarDetector,
    YuNetDetector,
    available_detectors,
    capabilities,
    create_detector,
    for_video,
    register_detector,
    roi_scale,
)
from fervid.errors import UserValueError
from tolerances import U64, gamma

HAS_DLIB = importlib.util.find_spec("dlib") is not None


@pytest.fixture(scope="module")
def two_people(data_root: Path) -> np.ndarray:
    p = data_root / "media" / "two_people.jpg"
    if not p.is_file():
        pytest.skip("two_people.jpg not found")
    return load_image(p)


@pytest.mark.parametrize("name", sorted(available_detectors()))
def test_every_registered_detector_keeps_its_declared_contract(name: str, two_people: np.ndarray) -> None:
    if name == "dlib" and not HAS_DLIB:
        pytest.skip("dlib is not installed (pip install 'fervid[dlib]')")
    det = create_detector(name)
    for member in ("landmarks", "whole_image", "confirm_score", "for_video", "roi_scale"):
        assert hasattr(det, member), f"{name} does not declare {member}"
    caps = capabilities(det)
    declared = {k: getattr(det, k) for k in ("landmarks", "whole_image", "confirm_score")}
    assert caps == DetectorCapabilities(**declared)

    H, W = two_people.shape[:2]
    boxes = det.detect(two_people)
    assert all(isinstance(b, FaceBox) and 0 <= b.x and 0 <= b.y and b.x + b.w <= W and b.y + b.h <= H for b in boxes)
    if caps.whole_image:
        assert boxes == [FaceBox(0, 0, W, H, 1.0)]
    else:  # the two people, one in each half of the photo, left to right
        assert [b.x + b.w / 2 < W / 2 for b in boxes] == [True, False], [b.box for b in boxes]
    if caps.landmarks:
        assert all(b.landmarks is not None and len(b.landmarks) == 5 for b in boxes)
        for b in boxes:  # the eyes, nose and mouth inside their own face box
            assert all(b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h for x, y in b.landmarks or ())

    video = for_video(det)
    assert callable(video.detect) and capabilities(video) == caps
    assert for_video(video) is video  # a video detector's video settings are its own
    assert for_video(det) is video  # made once
    vboxes = video.detect(two_people)
    assert len(vboxes) == len(boxes)
    for side in (10.0, 48.0, 200.0):
        assert 0.0 < roi_scale(det, side) <= 1.0


class OnlyDetect:
    """A user's detector: nothing but ``detect`` (here: OpenCV's Haar cascade underneath),
    recording the size of every image it is given."""

    def __init__(self) -> None:
        self._haar = HaarDetector()
        self.shapes: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        self.shapes.append(image.shape[:2])
        return self._haar.detect(image)


class HalfWindows(OnlyDetect):
    """The same, declaring that its re-detection windows are to be halved."""

    def roi_scale(self, face_side: float) -> float:
        return 0.5


def test_a_detector_with_only_detect_gets_the_defaults() -> None:
    obj = OnlyDetect()
    assert capabilities(obj) == DetectorCapabilities(landmarks=False, whole_image=False)
    assert for_video(obj) is obj
    assert roi_scale(obj, 120.0) == 1.0
    assert create_detector(obj) is obj


def test_a_detector_with_only_detect_works_in_predict_and_stream(two_people: np.ndarray, clip: Path) -> None:
    from fervid.inference.recognizer import EmotionRecognizer

    obj = OnlyDetect()
    rec = EmotionRecognizer("fast", detector=obj, device="cpu")
    res = rec.predict(two_people)
    assert [f.box for f in res.faces] == [b.box for b in HaarDetector().detect(two_people)]
    # renormalised in float64 (K additions, K divisions) and summed here: within gamma(3K)
    assert all(abs(sum(f.probabilities.values()) - 1.0) <= gamma(3 * len(f.probabilities), U64) for f in res.faces)
    assert rec.video_detector is obj

    obj.shapes.clear()
    frames = list(rec.stream(clip, max_seconds=1.0, detect_every=3))
    assert len(frames) >= 25 and any(fr.faces for fr in frames)
    full = [s for s in obj.shapes if s == (frames[0].height, frames[0].width)]
    windows = [s for s in obj.shapes if s != (frames[0].height, frames[0].width)]
    assert len(full) >= -(-len(frames) // 3)  # the key frames (and any a shot cut adds), whole
    assert windows  # between them, windows around the tracked faces


def test_video_shrinks_redetection_windows_by_the_detectors_roi_scale(clip: Path) -> None:
    from fervid.inference.recognizer import EmotionRecognizer

    runs = {}
    for det in (OnlyDetect(), HalfWindows()):
        rec = EmotionRecognizer("fast", detector=det, device="cpu")
        list(rec.stream(clip, max_seconds=0.2, detect_every=2))
        runs[type(det).__name__] = det.shapes
    plain, half = runs["OnlyDetect"], runs["HalfWindows"]
    assert plain[0] == half[0]  # frame 0: the whole frame, the same tracks after it

    def frame_1(shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The windows of frame 1 (one per tracked face): the calls up to the next whole frame."""
        rest = shapes[1:]
        return rest[: rest.index(shapes[0])] if shapes[0] in rest else rest

    windows, halved = frame_1(plain), frame_1(half)
    assert len(windows) == len(halved) >= 1
    for (h, w), (hh, hw) in zip(windows, halved):
        assert abs(hh - h / 2) <= 1 and abs(hw - w / 2) <= 1, ((h, w), (hh, hw))


def test_haar_shrinks_windows_to_its_roi_face() -> None:
    haar = HaarDetector()
    assert haar.roi_scale(96.0) == pytest.approx(0.5) and haar.roi_scale(30.0) == 1.0
    assert HaarDetector(roi_face=64).roi_scale(128.0) == pytest.approx(0.5)
    assert create_detector("haar-profile", roi_face=32).roi_scale(64.0) == pytest.approx(0.5)  # type: ignore[attr-defined]
    with pytest.raises(UserValueError, match="roi_face"):
        HaarDetector(roi_face=8)


def test_yunet_video_settings() -> None:
    v = YuNetDetector().for_video()
    assert (v.max_side, v.score_threshold, v.coarse_side) == (
        YUNET_VIDEO["max_side"],
        YUNET_VIDEO["score_threshold"],
        None,
    )
    # the caller's own size or threshold is kept; the video defaults fill in the rest (one
    # pass: a frame's cost stays steady), as a recognizer's config does
    own = YuNetDetector(max_side=480).for_video()
    assert (own.max_side, own.score_threshold, own.coarse_side) == (480, YUNET_VIDEO["score_threshold"], None)
    own = create_detector("yunet", score_threshold=0.5).for_video()  # type: ignore[attr-defined]
    assert (own.max_side, own.score_threshold, own.coarse_side) == (YUNET_VIDEO["max_side"], 0.5, None)
    # ... and a detector that chose every video setting is used as it is
    det = YuNetDetector(max_side=480, coarse_side=240, score_threshold=0.5)
    assert det.for_video() is det
    # a copy with other settings still leaves the sizes at their defaults
    assert YuNetDetector().with_options(threads=1).for_video().max_side == YUNET_VIDEO["max_side"]
    # an explicit value equal to the photo default is still the caller's choice
    assert YuNetDetector(max_side=YUNET_PHOTO["max_side"]).for_video().max_side == YUNET_PHOTO["max_side"]


def test_recognizer_video_detector_is_the_detectors_for_video() -> None:
    from fervid.inference.recognizer import EmotionRecognizer

    rec = EmotionRecognizer("fast", device="cpu")
    v, ref = rec.video_detector, for_video(rec.detector)
    assert isinstance(v, YuNetDetector) and isinstance(ref, YuNetDetector)
    assert (v.max_side, v.score_threshold, v.coarse_side) == (ref.max_side, ref.score_threshold, ref.coarse_side)
    assert rec.video_detector is v  # made once
    mine = YuNetDetector(max_side=400)
    v = EmotionRecognizer("fast", detector=mine, device="cpu").video_detector
    assert isinstance(v, YuNetDetector) and (v.max_side, v.coarse_side) == (400, None)
    haar = EmotionRecognizer("fast", detector="haar", device="cpu")
    assert haar.video_detector is haar.detector


def test_register_detector_as_a_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detectors, "_REGISTRY", dict(detectors._REGISTRY))

    @register_detector("centre-test")
    class Centre:
        """The middle half of the image.

        (A test detector.)"""

        landmarks = False

        def __init__(self, fraction: float = 0.5) -> None:
            self.fraction = fraction

        def detect(self, image: np.ndarray) -> list[FaceBox]:
            h, w = image.shape[:2]
            return [FaceBox(int(w * self.fraction / 2), int(h * self.fraction / 2), w // 2, h // 2)]

    assert available_detectors()["centre-test"] == "The middle half of the image."
    det = create_detector("centre-test", fraction=0.5)
    assert det.detect(np.zeros((40, 80), np.uint8))[0].box == (20, 10, 40, 20)
    with pytest.raises(UserValueError, match="no option 'size'"):
        create_detector("centre-test", size=3)


def test_the_old_module_re_exports_the_same_objects() -> None:
    import fervid.inference.detect as old

    for name in old.__all__:
        new = getattr(detectors, name, None)
        if new is None:  # names of one detector's module
            new = next(
                getattr(m, name)
                for m in (detectors.base, detectors.yunet, detectors.haar, detectors.dlib)
                if hasattr(m, name)
            )
        assert getattr(old, name) is new, name
