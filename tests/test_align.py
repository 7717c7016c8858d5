"""The aligned crop: five landmarks onto FER2013's canonical geometry by a similarity
transform (fervid.inference.crop), the box-crop fallback, and the template itself measured
again on real FER2013 faces."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fervid.data.io import load_image, rgb_to_gray
from fervid.detectors import YuNetDetector
from fervid.inference.crop import (
    CANONICAL_LANDMARKS_48,
    alignment_matrix,
    box_crop,
    canonical_landmarks,
    crop_face,
    warp_face,
)
from tolerances import U64, gamma

REPO = Path(__file__).resolve().parents[1]


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.c_[pts, np.ones(len(pts))] @ np.asarray(M).T


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a, b = scale * np.cos(np.radians(angle_deg)), scale * np.sin(np.radians(angle_deg))
    return np.array([[a, -b, tx], [b, a, ty]])


# ------------------------------------------------------------------ geometry (no data needed)


def test_template_is_upright_symmetric_and_inside_the_frame():
    t = np.array(CANONICAL_LANDMARKS_48)
    assert t.shape == (5, 2)
    assert t[0, 1] == t[1, 1] and t[3, 1] == t[4, 1]  # eyes level, mouth corners level
    # mirror-symmetric about x = 23.5: two decimal constants and their sum, each rounded once
    np.testing.assert_allclose(t[0, 0] + t[1, 0], 47.0, atol=47.0 * gamma(2, U64))
    assert t[2, 0] == 23.5  # exact in binary
    assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes, nose, mouth from top to bottom
    assert ((t > 0) & (t < 47)).all()
    # other output sizes keep the layout (pixel-centre scaling)
    np.testing.assert_allclose(canonical_landmarks(96), (t + 0.5) * 2 - 0.5)


@pytest.mark.parametrize(
    "angle,scale,tx,ty", [(0, 1, 0, 0), (25, 3.0, 140, -20), (-40, 0.5, 10, 300), (180, 1.7, 5, 5)]
)
def test_alignment_matrix_inverts_a_similarity_exactly(angle, scale, tx, ty):
    tpl = canonical_landmarks(48)
    S = _similarity(angle, scale, tx, ty)
    src = _apply(S, tpl)  # the template moved into an "image"
    M = alignment_matrix(src, 48)
    np.testing.assert_allclose(_apply(M, src), tpl, atol=1e-9)
    assert np.hypot(M[0, 0], M[1, 0]) == pytest.approx(1 / scale)


def test_alignment_is_the_least_squares_fit_for_noisy_points():
    rng = np.random.default_rng(0)
    tpl = canonical_landmarks(48)
    src = _apply(_similarity(12, 2.0, 50, 60), tpl) + rng.normal(0, 1.0, (5, 2))
    M = alignment_matrix(src, 48)
    best = ((_apply(M, src) - tpl) ** 2).sum()
    for _ in range(200):  # no nearby similarity does better
        d = rng.normal(0, 1e-3, 4)
        a, b = M[0, 0] + d[0], M[1, 0] + d[1]
        P = np.array([[a, -b, M[0, 2] + d[2]], [b, a, M[1, 2] + d[3]]])
        assert ((_apply(P, src) - tpl) ** 2).sum() >= best - 1e-9


def test_bad_landmarks_fall_back_to_the_box_crop():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    box = (50, 40, 80, 100)
    ref = box_crop(gray, box, 0.2, 48)
    assert (crop_face(gray, box, 0.2, 48) == ref).all()  # no landmarks
    assert (crop_face(gray, box, 0.2, 48, [(90.0, 90.0)] * 5) == ref).all()  # degenerate
    tiny = canonical_landmarks(48) * 0.05 + 80  # a "face" 20x smaller than its box
    assert (crop_face(gray, box, 0.2, 48, tiny) == ref).all()
    with pytest.raises(ValueError, match="5 landmarks"):
        alignment_matrix([(1.0, 2.0)] * 3, 48)


def test_warp_shrinks_with_area_averaging_on_the_output_grid():
    import cv2

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (192, 192), dtype=np.uint8)
    # a 4x axis-aligned shrink is exactly OpenCV's INTER_AREA resize (no extra blur, no shift)
    M = np.array([[0.25, 0, -0.375], [0, 0.25, -0.375]])
    assert (warp_face(img, M, 48) == cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)).all()
    # no aliasing at any angle: a fine checkerboard shrunk 6x is flat grey
    checker = (np.indices((300, 300)).sum(0) % 2 * 255).astype(np.uint8)
    inv = _similarity(33, 1 / 6, 0, 0)
    out = warp_face(checker, inv, 48).astype(float)
    assert abs(out[8:-8, 8:-8].mean() - 127.5) < 3 and out[8:-8, 8:-8].std() < 6


def test_a_rotated_face_comes_out_upright(fer_data):
    """A FER2013 face rotated by 30 degrees and enlarged 5x in a bigger image, with its
    landmarks moved along: the aligned crop is the face again."""
    import cv2

    face = fer_data.images[0]
    tpl = canonical_landmarks(48)
    S = _similarity(30, 5.0, 160, 20)
    img = cv2.warpAffine(face, S, (400, 400), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    lm = _apply(S, tpl)
    out = crop_face(img, (100, 100, 250, 250), 0.2, 48, lm)
    inner = (slice(6, -6), slice(6, -6))  # the corners came from outside the rotated face
    assert np.abs(out[inner].astype(float) - face[inner]).mean() < 6
    naive = box_crop(img, (100, 100, 250, 250), 0.2, 48)
    assert np.abs(naive[inner].astype(float) - face[inner]).mean() > 20


# ------------------------------------------------------------------ real faces


@pytest.fixture(scope="module")
def media(data_root: Path) -> Path:
    m = data_root / "media"
    if not (m / "two_people.jpg").is_file():
        pytest.skip("media photos not found")
    return m


@pytest.mark.parametrize("name", ["two_people.jpg", "obama.jpg", "lin-manuel-miranda.png", "32bit.png"])
def test_aligned_media_crops_have_the_canonical_layout(media: Path, name: str):
    """The detected landmarks, carried into the aligned crop, sit on the template: eyes level
    and in place (each face keeps its own shape: a few pixels off for the nose and mouth);
    and YuNet still sees a face in the 48x48 crop."""
    import cv2

    rgb = load_image(media / name)
    gray = rgb_to_gray(rgb)
    det = YuNetDetector(max_side=None, score_threshold=0.5)
    tpl = np.array(CANONICAL_LANDMARKS_48)
    for f in YuNetDetector().detect(rgb):
        crop = crop_face(gray, f.box, 0.2, 48, f.landmarks)
        lm = _apply(alignment_matrix(f.landmarks, 48), np.array(f.landmarks))
        roll = np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0]))
        assert abs(roll) < 3
        assert np.abs(lm[:2] - tpl[:2]).max() < 3 and np.abs(lm - tpl).max() < 5
        # the eye distance of the face after the crop: the template's, within the face's shape
        assert np.hypot(*(lm[1] - lm[0])) == pytest.approx(tpl[1, 0] - tpl[0, 0], rel=0.15)
        big = cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC)
        assert det.detect(np.repeat(big[:, :, None], 3, axis=2)), "a face in the aligned crop"


def test_template_matches_fer2013_training_faces(fer_data):
    """The measurement behind the template, on 300 fresh Training faces (benchmarks/fer_geometry.py
    measured 3,000): YuNet fires on nearly all of them and their median landmarks lie within
    a pixel of the stored template."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from fer_geometry import fer_landmarks, symmetric_template
    finally:
        sys.path.pop(0)
    from fervid.data.datasets import stratified_subset

    pool = np.flatnonzero(fer_data.splits == "Training")
    idx = pool[stratified_subset(fer_data.labels[pool], 300, 1)]  # another seed than the benchmark's
    found, lm = fer_landmarks(fer_data.images[idx])
    assert found.mean() > 0.95
    tpl = symmetric_template(np.median(lm[found], 0))
    np.testing.assert_allclose(tpl, np.array(CANONICAL_LANDMARKS_48), atol=1.0)


def test_recognizer_classifies_the_aligned_crop(tiny_checkpoint: Path, media: Path):
    from fervid.inference.recognizer import EmotionRecognizer
    from fervid.runtime import softmax

    rec = EmotionRecognizer(str(tiny_checkpoint), device="cpu")
    rgb = load_image(media / "obama-480p.jpg")
    res = rec.predict(rgb)
    (face,) = res.faces
    clf = rec.classifier
    size, margin = int(clf.preprocess.input_size), float(clf.preprocess.face_margin)
    crop = crop_face(rgb_to_gray(rgb), face.box, margin, size, face.landmarks)
    p = softmax(clf.logits(crop[None]), clf.temperature)[0]
    # the same crop in a batch of 1 both times: the same logits; the recognizer renormalises
    # softmax's float64 rows once more (K additions, one division each): within gamma(2K)
    k = len(p)
    np.testing.assert_allclose(list(face.probabilities.values()), p, rtol=gamma(2 * k, U64), atol=0)
    box_p = softmax(clf.logits(box_crop(rgb_to_gray(rgb), face.box, margin, size)[None]), clf.temperature)[0]
    assert np.abs(box_p - p).max() > 1e-4  # the box crop is a different input
