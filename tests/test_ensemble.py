"""Ensembles ``A+B`` (issue 26): ``model="default+fast"`` through the one face pipeline, its
probabilities the mean of the members' calibrated probabilities, wherever a model is taken
(the recognizer, its config, ``fervid predict``, ``fervid batch``, the service)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fervid import EmotionRecognizer, RecognizerConfig
from fervid.errors import UserValueError
from fervid.inference.backends import EnsembleClassifier, ensemble_members, load_classifier, mean_probabilities
from tolerances import U64, gamma

PHOTO = "two_people.jpg"


@pytest.fixture(scope="session")
def media(data_root: Path) -> Path:
    return data_root / "media"


@pytest.fixture(scope="module")
def members(media: Path) -> dict[str, list[np.ndarray]]:
    """Each bundled member's probabilities on the photo's faces, alone (the same crops: the
    members share the detector and the crop)."""
    out = {}
    for m in ("default", "fast"):
        res = EmotionRecognizer(m, device="cpu").predict(media / PHOTO)
        out[m] = [np.array(list(f.probabilities.values())) for f in res.faces]
    return out


def mean_bound(mean: np.ndarray, k: int) -> np.ndarray:
    """How far the ensemble's probabilities may be from ``(a + b) / 2`` computed here in float64:
    each member's row was divided by its float64 sum (so it sums to 1 within ``gamma(k)``), the
    mean rounds once, and the ensemble divides by the float64 sum of the ``k`` means once more
    (one more ``gamma(k)`` and one rounding): relatively ``gamma(2k + 4)`` of each value."""
    return gamma(2 * k + 4, U64) * mean


def _check_mean(faces: list[dict[str, float]], members: dict[str, list[np.ndarray]]) -> None:
    assert len(faces) == len(members["default"]) == len(members["fast"]) == 2
    for f, a, b in zip(faces, members["default"], members["fast"]):
        got = np.array(list(f.values()))
        m = (a + b) / 2
        assert (np.abs(got - m) <= mean_bound(m, len(m))).all(), np.abs(got - m).max()


def test_bundled_models_share_the_crop() -> None:
    # one crop serves every member: the bundled models crop 48x48 with margin 0.2
    crops = {m: load_classifier(m, "onnx").preprocess for m in ("default", "fast", "ferplus")}
    assert {(p.input_size, p.face_margin) for p in crops.values()} == {(48, 0.2)}


def test_predict_is_the_mean_of_the_members(media: Path, members: dict[str, list[np.ndarray]]) -> None:
    rec = EmotionRecognizer("default+fast", device="cpu")
    res = rec.predict(media / PHOTO)
    assert isinstance(rec.classifier, EnsembleClassifier) and rec.classifier.temperature == 1.0
    assert rec.labels == EmotionRecognizer("default").labels
    _check_mean([f.probabilities for f in res.faces], members)
    for f in res.faces:
        assert f.label == max(f.probabilities, key=f.probabilities.__getitem__)
        assert abs(sum(f.probabilities.values()) - 1) <= gamma(3 * 7, U64)
    # the same computation through predict_batch
    batch = rec.predict_batch([media / PHOTO])[0]
    assert [f.probabilities for f in batch.faces] == [f.probabilities for f in res.faces]


def test_cli_predict_json(media: Path, members: dict[str, list[np.ndarray]], capsys: pytest.CaptureFixture) -> None:
    from fervid.cli import main

    assert main(["predict", str(media / PHOTO), "--model", "default+fast", "--json", "--device", "cpu"]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    _check_mean([f["probabilities"] for f in obj["faces"]], members)


def test_mean_probabilities_is_the_evaluate_and_travel_definition() -> None:
    rng = np.random.default_rng(0)
    p = [rng.dirichlet(np.ones(7), 50) for _ in range(3)]
    got = mean_probabilities(p)
    assert np.allclose(got, sum(p) / 3, rtol=gamma(2 * 7 + 6, U64), atol=0)
    assert (np.abs(got.sum(1) - 1) <= gamma(7, U64)).all()


@pytest.mark.parametrize(
    "spec,named",
    [("default+nosuch", "'nosuch'"), ("nosuch+fast", "'nosuch'"), ("default+", "each side"), ("fast+fast", "twice")],
)
def test_bad_members_are_named(spec: str, named: str, media: Path, capsys: pytest.CaptureFixture) -> None:
    from fervid.cli import main

    with pytest.raises(UserValueError, match=named):
        RecognizerConfig(model=spec)
    with pytest.raises(UserValueError, match=named):
        EmotionRecognizer(spec)
    with pytest.raises(UserValueError, match=named):
        load_classifier(spec, "onnx")
    assert main(["predict", str(media / PHOTO), "--model", spec]) != 0
    assert named.strip("'") in capsys.readouterr().err


def test_members_must_share_labels() -> None:
    # ferplus has an eighth label (contempt): refused when the members load, naming it
    rec = EmotionRecognizer("default+ferplus")
    with pytest.raises(UserValueError, match="member 'ferplus' has labels"):
        rec.load()


def test_a_path_with_plus_is_one_model(tmp_path: Path) -> None:
    from fervid.models.bundled import bundled_onnx

    path = tmp_path / "a+b.onnx"
    shutil.copy(bundled_onnx("fast"), path)  # type: ignore[arg-type]
    assert ensemble_members(path) is None and ensemble_members(str(tmp_path / "x.onnx+fast")) == [
        str(tmp_path / "x.onnx"),
        "fast",
    ]
    assert load_classifier(path, "onnx").labels == load_classifier("fast", "onnx").labels
    ens = load_classifier(f"{path}+default", "onnx")
    assert isinstance(ens, EnsembleClassifier) and ens.names == [str(path), "default"]


def test_adabn_refuses_an_ensemble(media: Path) -> None:
    with pytest.raises(UserValueError, match="ensemble"):
        EmotionRecognizer("default+fast").predict_batch([media / PHOTO] * 2, adabn=True)


def test_serve_answers_with_an_ensemble(media: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="fervid serve needs the serve extra")
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    rec = EmotionRecognizer("default+fast", device="cpu")
    with TestClient(create_app(rec, cache_dir=tmp_path)) as c:
        r = c.post("/v1/predict", files={"file": (PHOTO, (media / PHOTO).read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        exp = rec.predict(media / PHOTO)
        assert [f["probabilities"] for f in r.json()["faces"]] == [f.probabilities for f in exp.faces]
        assert c.get("/v1/models").json()["service"]["model"] == "default+fast"
        # the page runs single bundled models only: it does not start on the service's model
        assert c.get("/models/index.json").json()["service_model"] is None


def test_batch_with_an_ensemble(media: Path, tmp_path: Path, members: dict[str, list[np.ndarray]]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from fervid.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path\n{media / PHOTO}\n")
    out = tmp_path / "r.parquet"
    assert main(["batch", str(manifest), "--out", str(out), "--model", "default+fast", "--no-progress"]) == 0
    rows = pq.read_table(out).to_pylist()
    labels = EmotionRecognizer("default").labels
    _check_mean([{lab: r[f"p_{lab}"] for lab in labels} for r in rows], members)


def test_video_with_an_ensemble(clip: Path) -> None:
    # a video face goes through the same pipeline: the ensemble's faces on the stream's frames
    ens = EmotionRecognizer("default+fast", device="cpu")
    single = {m: EmotionRecognizer(m, device="cpu") for m in ("default", "fast")}
    frames = list(ens.stream(clip, every=10))
    assert sum(len(fr.faces) for fr in frames) > 0
    alone = {m: list(r.stream(clip, every=10)) for m, r in single.items()}
    for i, fr in enumerate(frames):
        for f, a, b in zip(fr.faces, alone["default"][i].faces, alone["fast"][i].faces):
            assert f.box == a.box == b.box
            m = (np.array(list(a.probabilities.values())) + np.array(list(b.probabilities.values()))) / 2
            got = np.array(list(f.probabilities.values()))
            assert (np.abs(got - m) <= mean_bound(m, len(m))).all()


def test_evaluate_takes_a_plus(fer_csv: Path, capsys: pytest.CaptureFixture) -> None:
    from fervid.cli import main

    args = ["--data", str(fer_csv), "--split", "PublicTest", "--max-images", "50", "--no-progress", "--no-report"]
    assert main(["evaluate", "default+fast", *args]) == 0
    plus = capsys.readouterr().out
    assert main(["evaluate", "default", "fast", *args]) == 0
    assert "ensemble (mean)" in plus and plus == capsys.readouterr().out
