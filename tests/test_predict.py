"""Image loading, the EmotionRecognizer API, drawing and ``fervid predict`` on real photos."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fervid.data.datasets import FERDataError
from fervid.data.io import ImageLoadError, load_image
from fervid.models.checkpoint import load_model
from tolerances import U64, gamma, parity_bound, spy_on_crops

# ------------------------------------------------------------------ image loading (no model needed)


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_load_rgba_composites_on_white():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200  # red-ish, fully transparent except one opaque pixel
    a[0, 0, 3] = 255
    a[1, 1, 3] = 128
    rgb = load_image(_png_bytes(Image.fromarray(a, "RGBA")))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[3, 3]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(rgb[0, 0]) == (200, 0, 0)
    assert 200 <= rgb[1, 1, 0] <= 230 and 120 <= rgb[1, 1, 1] <= 135
    # the same through an RGBA numpy array
    np.testing.assert_allclose(load_image(a).astype(int), rgb.astype(int), atol=1)


def test_load_grey_16bit_palette():
    g = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = load_image(_png_bytes(Image.fromarray(g, "L")))
    assert out.shape == (8, 8, 3) and (out[..., 0] == g).all() and (out[..., 2] == g).all()

    g16 = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    im16 = Image.fromarray(g16)
    assert im16.mode.startswith("I")
    out16 = load_image(_png_bytes(im16))
    assert out16.max() == 255 and out16[0, 0, 0] == 0  # scaled to the image's own range
    assert (np.diff(out16[..., 0].ravel().astype(int)) >= 0).all()

    pal = Image.fromarray(g, "L").convert("P")
    pal.info["transparency"] = int(pal.getpixel((0, 0)))
    outp = load_image(_png_bytes(pal, transparency=pal.info["transparency"]))
    assert tuple(outp[0, 0]) == (255, 255, 255)  # transparent palette entry -> white
    assert outp.shape == (8, 8, 3)


def test_load_applies_exif_orientation():
    im = Image.new("RGB", (60, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).shape == (60, 20, 3)


def test_load_array_colour_orders():
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0] = 255
    assert (load_image(rgb)[..., 0] == 255).all()
    bgr = rgb[..., ::-1]
    assert (load_image(bgr, color="bgr")[..., 0] == 255).all()
    assert (load_image(bgr, color="bgr")[..., 2] == 0).all()
    assert load_image(np.ones((5, 6), np.float32)).max() == 255  # float [0, 1]
    assert load_image(np.full((5, 6, 1), 7, np.uint8)).shape == (5, 6, 3)
    with pytest.raises(ValueError, match="color"):
        load_image(rgb, color="hsv")  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((5, 6, 2), np.uint8))
    with pytest.raises(TypeError):
        load_image(12)  # type: ignore[arg-type]


def test_truncated_and_garbage_files_name_the_file(tmp_path: Path, data_root: Path):
    src = (data_root / "media" / "obama.jpg").read_bytes()
    trunc = tmp_path / "truncated.jpg"
    trunc.write_bytes(src[: len(src) // 4])
    with pytest.raises(ImageLoadError, match="truncated.jpg.*truncated") as ei:
        load_image(trunc)
    assert isinstance(ei.value, FERDataError) and ei.value.path == str(trunc)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(ImageLoadError, match="junk.png"):
        load_image(junk)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="bytes"):
        load_image(b"\xff\xd8\xff garbage")


# ------------------------------------------------------------------ recognizer (real tiny checkpoint)


@pytest.fixture(scope="module")
def media(data_root: Path) -> Path:
    return data_root / "media"


@pytest.fixture(scope="module")
def rec(tiny_checkpoint: Path):
    from fervid.inference.recognizer import EmotionRecognizer

    return EmotionRecognizer(str(tiny_checkpoint), device="cpu")


def test_recognizer_is_lazy(tiny_checkpoint: Path):
    from fervid.inference.recognizer import EmotionRecognizer

    r = EmotionRecognizer("no/such/model.pt")
    # nothing loaded yet: the detector object exists (its options are checked) but not its model
    assert r._classifier is None and r._detector is not None and r._detector._impl is None
    with pytest.raises(FileNotFoundError):
        r.predict(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown detector"):
        EmotionRecognizer(str(tiny_checkpoint), detector="nope")


def _check_faces(res, shape):
    for f in res.faces:
        p = np.array(list(f.probabilities.values()))
        # renormalised in float64 (K additions, K divisions) and summed here: within gamma(3K)
        assert len(p) == 7 and abs(p.sum() - 1) <= gamma(3 * 7, U64) and (p >= 0).all()
        assert f.label == max(f.probabilities, key=f.probabilities.get)
        assert f.confidence == pytest.approx(p.max())
        assert 0.0 <= f.ambiguity <= 1.0
        assert list(f.labels_above) == [
            k for k, v in sorted(f.probabilities.items(), key=lambda kv: -kv[1]) if v >= 0.3
        ]
        x, y, w, h = f.box
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= shape[1] and y + h <= shape[0]


# obama_and_biden.jpg: the two men and, bottom right, a child looking down (a real face the
# default YuNet detector finds; the Haar cascade did not).
@pytest.mark.parametrize(
    "name,n",
    [
        ("two_people.jpg", 2),
        ("obama.jpg", 1),
        ("obama_and_biden.jpg", 3),
        ("lin-manuel-miranda.png", 1),
        ("32bit.png", 1),
    ],
)
def test_predict_real_photos(rec, media: Path, name: str, n: int):
    res = rec.predict(media / name)
    assert len(res.faces) == n
    assert res.source == str(media / name)
    with Image.open(media / name) as im:
        from PIL import ImageOps

        w, h = ImageOps.exif_transpose(im).size
    assert (res.width, res.height) == (w, h)
    _check_faces(res, (h, w))


def test_predict_inputs_agree(rec, media: Path):
    path = media / "two_people.jpg"
    a = rec.predict(path)
    b = rec.predict(path.read_bytes())
    with Image.open(path) as im:
        c = rec.predict(im)
    rgb = load_image(path)
    d = rec.predict(rgb)
    e = rec.predict(np.ascontiguousarray(rgb[..., ::-1]), color="bgr")
    for r in (b, c, d, e):
        assert [f.box for f in r.faces] == [f.box for f in a.faces]
        # the same pixels, so the same crops in a batch of the same size: the same computation
        assert [f.probabilities for f in r.faces] == [f.probabilities for f in a.faces]


def test_rgba_png_is_stable_and_matches_composite(rec, media: Path):
    path = media / "32bit.png"
    a, b = rec.predict(path), rec.predict(path)
    assert a.to_dict()["faces"] == b.to_dict()["faces"]
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        composited = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    c = rec.predict(composited)
    assert [f.box for f in c.faces] == [f.box for f in a.faces]
    # predict composites an RGBA image over white exactly as PIL does here: the same pixels
    assert [f.probabilities for f in c.faces] == [f.probabilities for f in a.faces]


def test_no_face_is_empty_not_error(rec):
    res = rec.predict(np.full((300, 400, 3), 90, np.uint8))
    assert res.faces == [] and len(res) == 0
    assert res.to_dict()["faces"] == []


def test_truncated_file_raises_clear_error(rec, media: Path, tmp_path: Path):
    bad = tmp_path / "cut.jpg"
    bad.write_bytes((media / "two_people.jpg").read_bytes()[:20000])
    with pytest.raises(FERDataError, match="cut.jpg"):
        rec.predict(bad)


def test_large_image_boxes_in_original_coordinates(rec, media: Path):
    import cv2

    small = load_image(media / "obama-480p.jpg")
    big = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 2559 x 1440
    rs, rb = rec.predict(small), rec.predict(big)
    assert len(rs.faces) == len(rb.faces) == 1
    (xs, ys, ws, hs), (xb, yb, wb, hb) = rs.faces[0].box, rb.faces[0].box
    assert (rb.width, rb.height) == (big.shape[1], big.shape[0])
    assert abs(xb - 3 * xs) < 0.1 * wb and abs(yb - 3 * ys) < 0.1 * hb and abs(wb - 3 * ws) < 0.1 * wb
    assert abs(hb - 3 * hs) < 0.1 * hb
    # same face, similar crop -> similar emotion distribution
    ps, pb = np.array(list(rs.faces[0].probabilities.values())), np.array(list(rb.faces[0].probabilities.values()))
    assert np.abs(ps - pb).max() < 0.1


def test_predict_batch_matches_predict(rec, media: Path, monkeypatch):
    paths = [media / "two_people.jpg", media / "obama-480p.jpg"]
    crops = spy_on_crops(rec, monkeypatch)
    batch = rec.predict_batch(paths + [np.full((64, 64), 0, np.uint8)])
    assert [len(r.faces) for r in batch] == [2, 1, 0]
    # the same crops in a batch of 3 and in batches of 2 and 1: float32 evaluations in other
    # orders (other kernels per batch size), each probability within the parity bound
    pb = np.array([list(f.probabilities.values()) for r in batch for f in r.faces])
    bound = parity_bound(load_model(rec.model), crops[0], pb)
    singles = [rec.predict(p) for p in paths]
    ps = np.array([list(f.probabilities.values()) for r in singles for f in r.faces])
    assert [f.box for r in singles for f in r.faces] == [f.box for r in batch for f in r.faces]
    assert (np.abs(pb - ps) <= bound).all(), (np.abs(pb - ps).max(), bound.min())


def test_predict_faces_on_crops(rec, fer_data):
    faces = fer_data.images[:5]
    res = rec.predict_faces(faces)  # N x 48 x 48 grey stack
    assert len(res) == 5
    assert all(f.box == (0, 0, 48, 48) and f.score == 1.0 for f in res)
    one = rec.predict_faces(faces[0])
    # a batch of 1 and of 5: within the parity bound of the crop (float32 in other orders)
    p1, p5 = np.array(list(one[0].probabilities.values())), np.array(list(res[0].probabilities.values()))
    assert (np.abs(p1 - p5) <= parity_bound(load_model(rec.model), faces[:1], p5, p1)[0]).all()
    # the same as running the classifier directly with the model's temperature
    from fervid.runtime import softmax

    clf = rec.classifier
    direct = softmax(clf.logits(faces), clf.temperature)
    # the same logits (same faces, same batch); the recognizer renormalises softmax's float64
    # rows once more: K additions and one division, within gamma(2K) of them in float64
    k = len(clf.labels)
    np.testing.assert_allclose([list(f.probabilities.values()) for f in res], direct, rtol=gamma(2 * k, U64), atol=0)
    # skip detector on a crop == predict_faces
    from fervid.inference.recognizer import EmotionRecognizer

    skip = EmotionRecognizer(rec.model, detector="skip", device="cpu").predict(faces[0])
    assert skip.faces[0].probabilities == one[0].probabilities  # the same crop, batch of 1: exact


def test_threshold_controls_labels_above(tiny_checkpoint: Path, fer_data):
    from fervid.inference.recognizer import EmotionRecognizer

    r0 = EmotionRecognizer(str(tiny_checkpoint), detector="skip", device="cpu", threshold=0.0)
    f = r0.predict_faces(fer_data.images[0])[0]
    assert len(f.labels_above) == 7 and f.labels_above[0] == f.label
    r1 = EmotionRecognizer(str(tiny_checkpoint), detector="skip", device="cpu", threshold=1.0)
    assert r1.predict_faces(fer_data.images[0])[0].labels_above == ()
    with pytest.raises(ValueError):
        EmotionRecognizer(str(tiny_checkpoint), threshold=1.5)


def test_results_to_json_and_dataframe(rec, media: Path):
    res = rec.predict(media / "two_people.jpg")
    d = json.loads(res.to_json())
    assert d["path"].endswith("two_people.jpg") and len(d["faces"]) == 2
    assert set(d["faces"][0]) == {
        "box",
        "score",
        "label",
        "confidence",
        "probabilities",
        "ambiguity",
        "top2_margin",
        "ambiguous",
        "labels_above",
        "landmarks",
    }
    assert set(d["faces"][0]["box"]) == {"x", "y", "w", "h"}
    # the default detector's five landmarks, in image pixels, on the face: eyes above the mouth
    for f, face in zip(d["faces"], res.faces):
        lm = f["landmarks"]
        assert list(lm) == ["right_eye", "left_eye", "nose", "mouth_right", "mouth_left"]
        assert lm["right_eye"] == [round(v, 2) for v in face.landmarks[0]]
        b = f["box"]
        for x, y in lm.values():
            assert b["x"] <= x <= b["x"] + b["w"] and b["y"] <= y <= b["y"] + b["h"]
        assert lm["right_eye"][0] < lm["left_eye"][0] and lm["left_eye"][1] < lm["mouth_left"][1]
    pd = pytest.importorskip("pandas")
    from fervid.inference.recognizer import results_to_dataframe
    from fervid.inference.schema import columns

    df = res.to_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert list(df.columns) == columns(res.labels)  # the schema's table, as batch and the video CSV
    p_cols = [f"p_{lab}" for lab in res.labels]
    assert df[p_cols].to_numpy().tolist() == [list(f.probabilities.values()) for f in res.faces]
    assert df["nose_x"].tolist() == [f.landmarks[2][0] for f in res.faces]  # copied: exact
    assert df["mouth_left_y"].tolist() == [f.landmarks[4][1] for f in res.faces]
    np.testing.assert_allclose(df[p_cols].sum(axis=1), 1.0, rtol=0, atol=gamma(3 * 7, U64))
    both = results_to_dataframe([res, rec.predict(np.zeros((50, 50, 3), np.uint8))])
    assert len(both) == 2  # an image without faces adds no rows
    # a detector without landmarks: null in JSON, NaN in the table
    from fervid.inference.recognizer import EmotionRecognizer

    haar = EmotionRecognizer(rec.model, detector="haar", device="cpu").predict(media / "two_people.jpg")
    assert [f["landmarks"] for f in haar.to_dict()["faces"]] == [None, None]
    assert haar.to_dataframe()["right_eye_x"].isna().all()


# ------------------------------------------------------------------ drawing


def test_annotate_draws_without_touching_input(rec, media: Path):
    from fervid.inference.draw import annotate

    rgb = load_image(media / "two_people.jpg")
    before = rgb.copy()
    res = rec.predict(rgb)
    out = annotate(rgb, res.faces)
    assert (rgb == before).all()
    assert out.shape == rgb.shape and out.dtype == np.uint8
    x, y, w, h = res.faces[0].box
    assert (out[y + h // 2, x] != rgb[y + h // 2, x]).any()  # box edge drawn
    for f in res.faces:  # labels and probability panels never cover a face's centre
        fx, fy, fw, fh = f.box
        cy, cx = fy + fh // 2, fx + fw // 2
        assert (out[cy - 5 : cy + 5, cx - 5 : cx + 5] == rgb[cy - 5 : cy + 5, cx - 5 : cx + 5]).all()
    # dicts from to_dict() work too, and grey images come back 3-channel
    out2 = annotate(rgb[..., 0], [f.to_dict() for f in res.faces])
    assert out2.shape == rgb.shape
    # a dot on every landmark (in the face's colour), none with landmarks=False
    from fervid.inference.draw import color_for

    bare = annotate(rgb, res.faces, landmarks=False, bars=False)
    dots = annotate(rgb, res.faces, bars=False)
    for f in res.faces:
        for x, y in f.landmarks:
            px = (int(round(y)), int(round(x)))
            assert tuple(dots[px]) == color_for(f.label) and (bare[px] == rgb[px]).all()
    assert (annotate(rgb, [f.to_dict() for f in res.faces], bars=False) == dots).all()


# ------------------------------------------------------------------ CLI


def _cli(args: list[str]) -> int:
    from fervid.cli import main

    return main(["predict", *args])


def test_cli_json_two_people(tiny_checkpoint: Path, media: Path, capsys):
    rc = _cli([str(media / "two_people.jpg"), "--model", str(tiny_checkpoint), "--json", "--device", "cpu"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    obj = json.loads(out[0])
    assert obj["path"] == str(media / "two_people.jpg")
    assert len(obj["faces"]) == 2
    for f in obj["faces"]:
        assert len(f["probabilities"]) == 7
        assert abs(sum(f["probabilities"].values()) - 1) <= gamma(3 * 7, U64)  # JSON keeps the floats


def test_cli_out_writes_annotated_images(tiny_checkpoint: Path, media: Path, tmp_path: Path, capsys):
    out = tmp_path / "annotated"
    rc = _cli(
        [
            str(media / "two_people.jpg"),
            str(media / "lin-manuel-miranda.png"),
            "--model",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "two_people.jpg: 2 faces" in text and "lin-manuel-miranda.png: 1 face" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == ["lin-manuel-miranda.png", "two_people.jpg"]
    written = np.asarray(Image.open(out / "lin-manuel-miranda.png").convert("RGB"))
    original = load_image(media / "lin-manuel-miranda.png")
    assert written.shape == original.shape
    assert (written != original).any(axis=2).mean() > 0.005  # something was drawn


def test_cli_bad_input_reported_others_processed(tiny_checkpoint: Path, media: Path, tmp_path: Path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((media / "obama-480p.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes((media / "obama-480p.jpg").read_bytes()[:5000])
    (folder / "notes.txt").write_text("not an image, not picked up from a folder")
    rc = _cli([str(folder), str(tmp_path / "missing.png"), "--model", str(tiny_checkpoint), "--json"])
    cap = capsys.readouterr()
    assert rc != 0
    lines = [json.loads(x) for x in cap.out.strip().splitlines()]
    assert [Path(x["path"]).name for x in lines] == ["a.jpg"] and len(lines[0]["faces"]) == 1
    assert "broken.jpg" in cap.err and "missing.png" in cap.err
    # not processed and not an error, but reported (issue 25: a scan says what it left out)
    assert [ln for ln in cap.err.splitlines() if "notes.txt" in ln] == [
        f"fervid predict: note: skipped 1 file not in an image format fervid reads (.txt: 1): {folder / 'notes.txt'}"
    ]


def test_cli_glob_and_bad_model(tiny_checkpoint: Path, media: Path, capsys):
    rc = _cli([str(media / "*.png"), "--model", str(tiny_checkpoint), "--json"])
    names = sorted(Path(json.loads(x)["path"]).name for x in capsys.readouterr().out.strip().splitlines())
    assert rc == 0 and names == ["32bit.png", "lin-manuel-miranda.png"]
    rc = _cli([str(media / "two_people.jpg"), "--model", "no-such-model"])
    assert rc == 1 and "no-such-model" in capsys.readouterr().err
