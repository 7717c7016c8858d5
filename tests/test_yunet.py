"""YuNet, the default face detector: bundled weights (sha256, licences, wheel), recall and
no false positives on the hand-annotated media, landmarks, and the same faces through
onnxruntime and OpenCV."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fervid.data.io import load_image
from fervid.detectors import (
    DEFAULT_DETECTOR,
    LANDMARK_NAMES,
    YUNET_PHOTO,
    YUNET_VIDEO,
    DetectorUnavailableError,
    FaceBox,
    YuNetDetector,
    available_detectors,
    create_detector,
    iou,
)
from fervid.detectors.yunet import YUNET_DIR, YUNET_FILES

REPO = Path(__file__).resolve().parents[1]
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


def _annotations():
    """The hand annotations of the media faces (benchmarks/detectors.py: one source of truth)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import detectors
    finally:
        sys.path.pop(0)
    return detectors


@pytest.fixture(scope="module")
def bench(data_root: Path):
    if not (data_root / "media" / "short_hamilton_clip.mp4").is_file():
        pytest.skip("media not found")
    return _annotations()


@pytest.fixture(scope="module")
def items(bench, data_root: Path):
    return bench.load_items(data_root)


@pytest.fixture(scope="module")
def photo_det():
    return create_detector("yunet")


# ------------------------------------------------------------------ weights, manifest, wheel


def test_yunet_is_the_default_and_registered():
    assert DEFAULT_DETECTOR == "yunet"
    assert {"yunet", "haar", "haar-profile", "dlib", "skip"} <= set(available_detectors())
    det = create_detector()
    assert isinstance(det, YuNetDetector) and det.max_side == YUNET_PHOTO["max_side"]
    assert det._impl is None  # nothing loaded until the first detect


def test_weights_match_the_manifest_and_carry_their_licences():
    manifest = json.loads((YUNET_DIR.parent / "manifest.json").read_text())
    entries = {Path(e["file"]).name: e for e in manifest["detectors"]}
    assert set(entries) == set(YUNET_FILES.values())
    for name, e in entries.items():
        assert hashlib.sha256((YUNET_DIR / name).read_bytes()).hexdigest() == e["sha256"]
    # the emotion models' list (bundled_models) holds no detector
    assert {"default", "fast"} <= {e["name"] for e in manifest["models"]}
    assert not any("yunet" in e["file"] for e in manifest["models"])
    licences = sorted(p.name for p in YUNET_DIR.glob("LICENSE-*.txt"))
    assert licences == [
        "LICENSE-Apache-2.0-libfacedetection.train.txt",
        "LICENSE-MIT-opencv_zoo-face_detection_yunet.txt",
    ]
    assert "Apache License" in (YUNET_DIR / licences[0]).read_text()
    assert "MIT License" in (YUNET_DIR / licences[1]).read_text()


def test_wheel_ships_the_weights_and_licences():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fervid"]
    from fnmatch import fnmatch

    pkg = REPO / "src" / "fervid"
    for f in YUNET_DIR.iterdir():
        rel = f.relative_to(pkg).as_posix()
        assert any(fnmatch(rel, pat) for pat in data), f"{rel} is not in [tool.setuptools.package-data]"


def test_modified_weights_are_refused(tmp_path: Path, monkeypatch):
    import fervid.models.bundled as catalogue

    bad = tmp_path / "yunet"
    bad.mkdir()
    for f in YUNET_DIR.iterdir():
        shutil.copy(f, bad / f.name)
    shutil.copy(YUNET_DIR.parent / "manifest.json", tmp_path / "manifest.json")
    blob = bytearray((bad / YUNET_FILES["opencv"]).read_bytes())
    blob[-1] ^= 0xFF
    (bad / YUNET_FILES["opencv"]).write_bytes(bytes(blob))
    monkeypatch.setattr(catalogue, "WEIGHTS_DIR", tmp_path)  # YuNet's files come from the catalogue
    with pytest.raises(DetectorUnavailableError, match="sha256"):
        YuNetDetector(backend="opencv").detect(np.zeros((64, 64, 3), np.uint8))
    (bad / YUNET_FILES["opencv"]).unlink()
    with pytest.raises(DetectorUnavailableError, match="not found"):
        YuNetDetector(backend="opencv").detect(np.zeros((64, 64, 3), np.uint8))


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="backend"):
        YuNetDetector(backend="tensorrt")
    with pytest.raises(ValueError, match="score_threshold"):
        YuNetDetector(score_threshold=1.5)
    with pytest.raises(TypeError, match="uint8"):
        YuNetDetector().detect(np.zeros((50, 50, 3), np.float32))


def test_auto_backend_falls_back_to_opencv(monkeypatch):
    real = importlib.util.find_spec

    def no_ort(name, *a, **k):
        return None if name == "onnxruntime" else real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", no_ort)
    det = YuNetDetector()
    assert det.resolved_backend == "opencv"
    assert det.detect(np.zeros((64, 64, 3), np.uint8)) == []
    assert det._impl_backend == "opencv"


# ------------------------------------------------------------------ accuracy on the annotated media


def test_photo_settings_find_every_annotated_face_without_false_positives(items, bench, photo_det):
    hits = fps = n = 0
    for it, img in items:
        if it.frame is None:
            h, f = bench.score_item(it, photo_det.detect(img))
            hits, fps, n = hits + h, fps + f, n + len(it.faces)
    assert (hits, fps) == (n, 0) == (9, 0)


def test_video_settings_find_the_video_faces_without_false_positives(items, bench):
    det = create_detector("yunet", **YUNET_VIDEO)
    hits = fps = n = 0
    for it, img in items:
        if it.frame is not None:
            h, f = bench.score_item(it, det.detect(img))
            hits, fps, n = hits + h, fps + f, n + len(it.faces)
    assert n == 15 and hits >= 14 and fps == 0, (hits, fps)


@pytest.mark.parametrize("settings", [YUNET_PHOTO, YUNET_VIDEO])
def test_no_face_photos_give_nothing(bench, settings):
    det = create_detector("yunet", **settings)
    for name, img in bench.load_no_face():
        assert det.detect(img) == [], name
    assert det.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert det.detect(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []
    assert det.detect(np.zeros((10, 10), np.uint8)) == []
    assert det.detect(np.zeros((0, 0, 3), np.uint8)) == []


def test_landmarks_sit_on_the_face(items, photo_det):
    n = 0
    for it, img in items:
        for f in photo_det.detect(img):
            assert f.landmarks is not None and len(f.landmarks) == len(LANDMARK_NAMES) == 5
            (rex, rey), (lex, ley), (nx, ny), (mrx, mry), (mlx, mly) = f.landmarks
            cx, cy = f.x + f.w / 2, f.y + f.h / 2
            side = max(f.w, f.h)
            for px, py in f.landmarks:  # near the box (a face cut by the border may reach past it)
                assert abs(px - cx) < side and abs(py - cy) < side
            if it.frame is None and it.name not in ("obama_partial_face.jpg",):
                # upright frontal photos: the person's right eye on the image's left, eyes above
                # the nose, the nose above the mouth
                assert rex < lex and mrx < mlx
                assert max(rey, ley) < ny < min(mry, mly)
                n += 1
    assert n >= 7


def test_boxes_in_original_coordinates_when_downscaled(media_photo):
    import cv2

    small = media_photo
    det = YuNetDetector()
    a = det.detect(small)
    big = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 2559 x 1440: shrunk inside
    b = det.detect(big)
    assert len(a) == len(b) == 1
    scaled = FaceBox(a[0].x * 3, a[0].y * 3, a[0].w * 3, a[0].h * 3)
    assert iou(scaled, b[0]) > 0.8
    # Not rounding: the 3x image is shrunk back inside (max_side), so YuNet sees other, resampled
    # pixels and localises the points again; 3% of the face width is that agreement, a property
    # of the detector on resampled input (a coordinate not scaled back is off by 2x, ~100%)
    np.testing.assert_allclose(np.array(b[0].landmarks), 3 * np.array(a[0].landmarks), atol=0.03 * b[0].w)


@pytest.fixture(scope="module")
def media_photo(data_root: Path) -> np.ndarray:
    p = data_root / "media" / "obama-480p.jpg"
    if not p.is_file():
        pytest.skip("media not found")
    return load_image(p)


def test_grey_input_and_colour_order(media_photo):
    import cv2

    det = YuNetDetector()
    grey = cv2.cvtColor(media_photo, cv2.COLOR_RGB2GRAY)
    g = det.detect(grey)
    c = det.detect(media_photo)
    assert len(g) == len(c) == 1 and iou(g[0], c[0]) > 0.8
    assert det.detect(grey[:, :, None])[0] == g[0]


def test_raw_is_yunet_on_the_image_as_is(media_photo):
    det = YuNetDetector(max_side=None, coarse_side=None)  # one pass on the image as it is
    raw = det.raw(np.ascontiguousarray(media_photo[:, :, ::-1]))
    assert raw.shape == (1, 15) and raw.dtype == np.float32
    f = det.detect(media_photo)[0]
    # detect() is raw() on the same BGR pixels, read out: the same numbers exactly
    assert f.score == float(raw[0, 14])
    assert np.array_equal(np.array(f.landmarks), raw[0, 4:14].reshape(5, 2))


# ------------------------------------------------------------------ onnxruntime == OpenCV


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
@pytest.mark.parametrize("settings", [YUNET_PHOTO, YUNET_VIDEO, {"max_side": None, "score_threshold": 0.5}])
def test_onnxruntime_and_opencv_give_identical_boxes(items, bench, settings):
    ort = YuNetDetector(backend="onnxruntime", **settings)
    cv = YuNetDetector(backend="opencv", **settings)
    images = [img for _, img in items] + [img for _, img in bench.load_no_face()]
    n = 0
    for img in images:
        a, b = ort.detect(img), cv.detect(img)
        assert [f.box for f in a] == [f.box for f in b]
        for fa, fb in zip(a, b):
            assert fa.score == pytest.approx(fb.score, abs=1e-4)
            np.testing.assert_allclose(np.array(fa.landmarks), np.array(fb.landmarks), atol=0.02)
        n += len(a)
    assert n >= 24
    assert ort._impl_backend == "onnxruntime" and cv._impl_backend == "opencv"


def test_detect_is_thread_safe(media_photo):
    from concurrent.futures import ThreadPoolExecutor

    for backend in (["onnxruntime"] if HAS_ORT else []) + ["opencv"]:
        det = YuNetDetector(backend=backend)
        imgs = [media_photo, media_photo[:300, :400].copy(), media_photo[::2, ::2].copy()] * 4
        want = [det.detect(im) for im in imgs]
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(det.detect, imgs))
        assert got == want


# ------------------------------------------------------------------ photos: coarse to fine


def _square(rgb: np.ndarray, cx: int, cy: int, side: int, out: int) -> np.ndarray:
    import cv2

    crop = rgb[max(0, cy - side // 2) : cy + side // 2, max(0, cx - side // 2) : cx + side // 2]
    return np.ascontiguousarray(cv2.resize(crop, (out, out), interpolation=cv2.INTER_AREA))


def test_a_photo_of_one_large_face_is_detected_at_the_coarse_size(data_root: Path):
    """A ~400 px portrait (pipeline_speed.py's photos) runs one 320 px pass, and finds the
    face where the one-pass 400 px detection does."""
    p = data_root / "media" / "lin-manuel-miranda.png"
    if not p.is_file():
        pytest.skip("media not found")
    img = _square(load_image(p), 417, 305, 560, 400)
    det = YuNetDetector()
    faces = det.detect(img)
    assert det.input_sizes == {(320, 320): 1}
    one_pass = YuNetDetector(coarse_side=None)
    ref = one_pass.detect(img)
    assert one_pass.input_sizes == {(400, 400): 1}
    assert len(faces) == len(ref) == 1 and iou(faces[0], ref[0]) > 0.9
    assert faces[0].landmarks is not None


def test_small_faces_send_a_photo_to_the_fine_pass(items, bench):
    """Frame 0 of the clip as a photo (640x360): the 31 px pianist is small at the coarse
    512 px input, so the photo is detected again at 640 and both annotated faces are found."""
    it, img = next((it, img) for it, img in items if it.name == "frame 0")
    det = YuNetDetector()
    found = det.detect(img)
    assert det.input_sizes == {(512, 288): 1, (640, 360): 1}
    assert bench.score_item(it, found) == (2, 0)
    assert found == YuNetDetector(coarse_side=None).detect(img)  # the fine pass is the answer


def test_a_small_face_beside_a_large_one_is_still_found(bench, media_photo):
    """A real face pasted twice into a no-face photo (640x427): large (200 px) and small
    (a 30 px patch: a ~20 px face, ~16 px at the coarse input). The large face alone would be a clear coarse pass;
    the small one is found because the photo goes on to the fine pass."""
    import cv2

    canvas = dict(bench.load_no_face())["china.jpg"].copy()
    face = _square(media_photo, 444, 107, 200, 200)  # obama-480p.jpg, the face and some margin
    canvas[100:300, 40:240] = face
    canvas[300:330, 500:530] = cv2.resize(face, (30, 30), interpolation=cv2.INTER_AREA)
    det = YuNetDetector()
    found = det.detect(canvas)
    assert det.input_sizes[(640, 427)] == 1  # the fine pass ran
    centres = sorted((f.x + f.w / 2, f.y + f.h / 2) for f in found)
    assert len(found) == 2, [f.box for f in found]
    assert 40 < centres[0][0] < 240 and 100 < centres[0][1] < 300
    assert 500 < centres[1][0] < 530 and 300 < centres[1][1] < 330
    large_only = canvas.copy()
    large_only[300:330, 500:530] = dict(bench.load_no_face())["china.jpg"][300:330, 500:530]
    det.input_sizes.clear()
    assert len(det.detect(large_only)) == 1 and det.input_sizes == {(512, 342): 1}


def test_photos_larger_than_max_side_and_faceless_photos_get_the_fine_pass(items, bench):
    det = YuNetDetector()
    big = next(img for it, img in items if it.name == "obama_and_biden.jpg")  # 2000 x 1428
    det.detect(big)
    assert det.input_sizes == {(640, 457): 1}  # one pass, as before: no coarse pass above max_side
    det.input_sizes.clear()
    assert det.detect(dict(bench.load_no_face())["flower.jpg"]) == []
    assert det.input_sizes == {(512, 342): 1, (640, 427): 1}  # nothing at 512: look again at 640
    det.input_sizes.clear()
    small = np.zeros((300, 300, 3), np.uint8)
    assert det.detect(small) == [] and det.input_sizes == {(300, 300): 1}  # below coarse_side: one pass


def test_video_detectors_run_one_pass():
    from fervid.inference.recognizer import EmotionRecognizer

    assert YUNET_VIDEO["coarse_side"] is None and YUNET_PHOTO["coarse_side"] == 320
    v = EmotionRecognizer().video_detector
    assert isinstance(v, YuNetDetector) and (v.max_side, v.coarse_side) == (YUNET_VIDEO["max_side"], None)
    v = EmotionRecognizer(detector_options={"max_side": 640}).video_detector
    assert isinstance(v, YuNetDetector) and (v.max_side, v.coarse_side) == (640, None)
    with pytest.raises(ValueError, match="coarse_side"):
        YuNetDetector(coarse_side=8)
