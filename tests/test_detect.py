"""Face detectors on real photos (../shared/data/media) and synthetic edge cases. The default
detector (YuNet) has its own tests in test_yunet.py; the Haar cascade, no longer the default,
is tested here as a choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fervid.data.io import load_image
from fervid.detectors import (
    DEFAULT_DETECTOR,
    FaceBox,
    HaarDetector,
    SkipDetector,
    available_detectors,
    create_detector,
    iou,
    non_max_suppression,
    register_detector,
)

EXPECTED = {
    "two_people.jpg": 2,
    "obama.jpg": 1,
    "obama-480p.jpg": 1,
    "obama_and_biden.jpg": 2,
    "lin-manuel-miranda.png": 1,
    "32bit.png": 1,
}


@pytest.fixture(scope="module")
def media(data_root: Path) -> Path:
    m = data_root / "media"
    if not (m / "two_people.jpg").is_file():
        pytest.skip("media photos not found")
    return m


@pytest.fixture(scope="module")
def haar():
    return create_detector("haar")


def _inside(b: FaceBox, shape: tuple[int, ...]) -> bool:
    return b.x >= 0 and b.y >= 0 and b.w > 0 and b.h > 0 and b.x + b.w <= shape[1] and b.y + b.h <= shape[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_haar_finds_expected_faces(media: Path, haar, name: str):
    img = load_image(media / name)
    faces = haar.detect(img)
    assert len(faces) == EXPECTED[name], [f.box for f in faces]
    for f in faces:
        assert _inside(f, img.shape)
        assert f.w >= 0.05 * min(img.shape[:2])  # a face, not a speck
        assert f.score > 0
    assert [f.x for f in faces] == sorted(f.x for f in faces)  # left-to-right order


def test_two_people_boxes_are_on_the_faces(media: Path, haar):
    # Hand-checked face centres: Obama about (320, 115), Biden about (870, 150).
    faces = haar.detect(load_image(media / "two_people.jpg"))
    centres = [(f.x + f.w / 2, f.y + f.h / 2) for f in faces]
    assert abs(centres[0][0] - 320) < 40 and abs(centres[0][1] - 115) < 40
    assert abs(centres[1][0] - 870) < 40 and abs(centres[1][1] - 150) < 40


def test_grey_input_gives_same_boxes(media: Path, haar):
    import cv2

    rgb = load_image(media / "two_people.jpg")
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert [f.box for f in haar.detect(grey)] == [f.box for f in haar.detect(rgb)]


def test_large_image_boxes_in_original_coordinates(media: Path):
    import cv2

    rgb = load_image(media / "obama-480p.jpg")  # 853 x 480
    det = HaarDetector(max_side=1024)
    small = det.detect(rgb)
    big_img = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 2559 x 1440: downscaled inside
    big = det.detect(big_img)
    assert len(small) == len(big) == 1
    s, b = small[0], big[0]
    assert _inside(b, big_img.shape)
    scaled = FaceBox(s.x * 3, s.y * 3, s.w * 3, s.h * 3)
    assert iou(scaled, b) > 0.7, (scaled, b)


def test_no_face_in_synthetic_images(haar):
    rng = np.random.default_rng(0)
    assert haar.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    yy, xx = np.mgrid[0:480, 0:640]
    gradient = ((xx + yy) % 256).astype(np.uint8)
    assert haar.detect(gradient) == []
    noise = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    assert len(haar.detect(noise)) <= 1  # pure noise: nothing, or at worst a stray box
    assert haar.detect(np.zeros((10, 10), np.uint8)) == []  # smaller than any face


def test_skip_detector_is_whole_image():
    det = create_detector("skip")
    assert isinstance(det, SkipDetector)
    assert det.detect(np.zeros((48, 40), np.uint8)) == [FaceBox(0, 0, 40, 48, 1.0)]
    assert det.detect(np.zeros((30, 20, 3), np.uint8))[0].box == (0, 0, 20, 30)


def test_registry_and_custom_detectors():
    assert DEFAULT_DETECTOR == "yunet"
    assert {"yunet", "haar", "haar-profile", "dlib", "skip"} <= set(available_detectors())
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        create_detector("nope")
    with pytest.raises(TypeError):
        create_detector(object())  # type: ignore[arg-type]

    class Fixed:
        name = "fixed"

        def detect(self, image):
            return [FaceBox(1, 2, 3, 4, 0.5)]

    obj = Fixed()
    assert create_detector(obj) is obj
    register_detector("fixed-test", Fixed, "a test detector")
    assert create_detector("fixed-test").detect(np.zeros((5, 5), np.uint8))[0].box == (1, 2, 3, 4)
    assert available_detectors()["fixed-test"] == "a test detector"


def test_detectors_load_lazily():
    det = HaarDetector()
    assert det._cascades is None  # nothing loaded until the first detect
    det.detect(np.zeros((100, 100), np.uint8))
    assert det._cascades is not None


def test_missing_cascade_is_a_clear_error():
    from fervid.detectors import DetectorUnavailableError

    with pytest.raises(DetectorUnavailableError, match="not found"):
        HaarDetector(cascade="no_such_cascade.xml").detect(np.zeros((100, 100), np.uint8))


def test_rejects_bad_arrays(haar):
    with pytest.raises(TypeError, match="uint8"):
        haar.detect(np.zeros((100, 100), np.float32))
    with pytest.raises(ValueError, match="shape"):
        haar.detect(np.zeros((100, 100, 5), np.uint8))


def test_nms_and_iou():
    a, b, c = FaceBox(0, 0, 10, 10, 5), FaceBox(1, 1, 10, 10, 9), FaceBox(50, 50, 10, 10, 1)
    assert iou(a, a) == 1.0 and iou(a, c) == 0.0
    assert 0.6 < iou(a, b) < 0.7
    kept = non_max_suppression([a, b, c])
    assert kept == [b, c]  # the higher-scoring of the overlapping pair survives
    nested = FaceBox(2, 2, 4, 4, 10)
    assert non_max_suppression([a, nested]) == [nested]  # a box inside another is a duplicate


def test_haar_profile_runs_and_includes_frontal(media: Path, haar):
    img = load_image(media / "obama-480p.jpg")
    prof = create_detector("haar-profile").detect(img)
    assert len(prof) >= 1
    front = {f.box for f in haar.detect(img)}
    assert front <= {f.box for f in prof}


# ------------------------------------------------------------------ dlib (optional extra)


@pytest.fixture(scope="module")
def dlib_det():
    pytest.importorskip("dlib")
    return create_detector("dlib")


@pytest.mark.parametrize(
    "name", ["two_people.jpg", "obama-480p.jpg", "lin-manuel-miranda.png", "obama_partial_face.jpg"]
)
def test_dlib_finds_faces(media: Path, dlib_det, name: str):
    img = load_image(media / name)
    faces = dlib_det.detect(img)
    assert len(faces) == {"two_people.jpg": 2}.get(name, 1)
    assert all(_inside(f, img.shape) for f in faces)


def test_dlib_agrees_with_haar(media: Path, dlib_det, haar):
    img = load_image(media / "two_people.jpg")
    for d, h in zip(dlib_det.detect(img), haar.detect(img)):
        assert iou(d, h) > 0.4


def test_dlib_missing_is_a_clear_error(monkeypatch):
    import builtins

    from fervid.detectors import DetectorUnavailableError

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DetectorUnavailableError, match="fervid\\[dlib\\]"):
        create_detector("dlib").detect(np.zeros((50, 50), np.uint8))
