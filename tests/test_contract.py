"""One face, one result (issue 21): the same photo and the same video frame through every entry
point -- the Python API, ``fervid predict --json``, ``fervid video --csv``, ``fervid batch``,
the DataFrame and ``POST /v1/predict`` -- give the same probabilities (within 1e-5, one
backend: onnx) and the same fields, all spelled as :mod:`fervid.inference.schema` declares; and
``fervid batch`` over a photo and the clip has no null in any row."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from fervid import EmotionRecognizer
from fervid.cli import main
from fervid.inference import schema
from fervid.inference.options import DEFAULT_SMOOTH
from tolerances import U64, gamma

pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

PHOTO = "two_people.jpg"
VIDEO_SECONDS = 1  # the first 30 frames of the clip: two faces before the cut at frame 20


@pytest.fixture(scope="module")
def rec() -> EmotionRecognizer:
    return EmotionRecognizer(backend="onnx", device="cpu").load()


@pytest.fixture(scope="module")
def photo(data_root: Path) -> Path:
    return data_root / "media" / PHOTO


@pytest.fixture(scope="module")
def batch_rows(photo: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict]:
    """``fervid batch`` (the CLI) over a folder holding the photo and the clip: its rows and
    the Parquet metadata."""
    folder = tmp_path_factory.mktemp("contract-corpus")
    shutil.copy(photo, folder / photo.name)
    shutil.copy(clip, folder / clip.name)
    out = tmp_path_factory.mktemp("contract-batch") / "r.parquet"
    assert main(["batch", str(folder), "--out", str(out), "--backend", "onnx", "--device", "cpu", "--no-progress"]) == 0
    table = pq.read_table(out)
    return table.to_pylist(), dict(table.schema.metadata or {})


def _flat_face_fields(face: dict) -> set[str]:
    """A face's JSON fields as the table spells them (box -> x, y, w, h; probabilities ->
    p_<label>; smoothed -> smoothed_<label>; landmarks -> <name>_x/_y)."""
    out: set[str] = set()
    for k, v in face.items():
        if k == "box":
            out |= set(schema.BOX_COLUMNS)
        elif k == "probabilities":
            out |= {schema.prob_column(lab) for lab in v}
        elif k == "smoothed":
            out |= {schema.smoothed_column(lab) for lab in v}
        elif k == "landmarks":
            out |= set(schema.LANDMARK_COLUMNS)
        else:
            out.add(k)
    return out


def _close(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal: every output carries the recognizer's float64 values in full (JSON and the CSV's
    shortest round trip), computed by one onnxruntime model with the same session options on the
    same crops in the same per-image / per-frame batches, so nothing is summed in another order."""
    return list(a) == list(b) and all(a[k] == b[k] for k in a)


def _probs_of_row(row: dict, labels: list[str]) -> dict[str, float]:
    return {lab: float(row[schema.prob_column(lab)]) for lab in labels}


# --------------------------------------------------------------------------- a photo


def test_one_photo_through_every_entry_point(rec, photo, batch_rows, capsys, tmp_path):
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    api = rec.predict(photo)
    labels = list(api.labels)
    assert len(api.faces) == 2
    expected = [f.probabilities for f in api.faces]
    face_fields = schema.field_names(schema.FACE_FIELDS)

    # the Python API's JSON and `fervid predict --json`
    doc = api.to_dict()
    assert doc["schema_version"] == schema.SCHEMA_VERSION
    assert main(["predict", str(photo), "--json", "--backend", "onnx", "--device", "cpu", "--no-progress"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    # `POST /v1/predict`
    with TestClient(create_app(rec, cache_dir=tmp_path / "serve-cache")) as client:
        r = client.post("/v1/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        served = r.json()
    for out in (doc, cli, served):
        assert list(out) == schema.field_names(f for f in schema.DOCUMENT_FIELDS if "frame" not in f.where)
        assert out["schema_version"] == schema.SCHEMA_VERSION
        assert [list(f) for f in out["faces"]] == [face_fields] * 2
        assert all(_close(f["probabilities"], p) for f, p in zip(out["faces"], expected))

    # the DataFrame and `fervid batch`'s photo rows: one table, the schema's columns
    df = api.to_dataframe()
    rows = [r for r in batch_rows[0] if r["kind"] == "image"]
    assert list(df.columns) == schema.columns(labels) == list(rows[0])
    assert len(df) == len(rows) == 2
    for (_, d), b, p in zip(df.iterrows(), rows, expected):
        assert _close(_probs_of_row(d, labels), p) and _close(_probs_of_row(b, labels), p)
        assert _close({lab: float(d[schema.smoothed_column(lab)]) for lab in labels}, p)
    # every JSON field of a face is a table column
    assert _flat_face_fields(doc["faces"][0]) <= set(df.columns)


# --------------------------------------------------------------------------- a video frame


def test_one_video_frame_through_every_entry_point(rec, clip, batch_rows, tmp_path):
    frames = list(rec.stream(clip, max_seconds=VIDEO_SECONDS))
    labels = list(rec.labels)
    assert len(frames) == 30
    # raw probabilities by (frame, box): a frame's own probabilities depend on its pixels only
    streamed = {(fr.index, f.box): f.probabilities for fr in frames for f in fr.faces}
    assert len({i for i, _ in streamed}) >= 20  # faces on most of these frames
    track_fields = ["face_id", *schema.field_names(schema.FACE_FIELDS), "raw_label", "smoothed", "key_frame"]
    for fr in frames:
        d = fr.to_dict()
        assert d["schema_version"] == schema.SCHEMA_VERSION
        assert all(list(f) == track_fields for f in d["faces"])
        # every photo field, computed on the frame's own probabilities
        for f in fr.faces:
            assert f.ambiguity == f.face.ambiguity and f.labels_above == f.face.labels_above
            assert f.raw_label == max(f.probabilities, key=f.probabilities.__getitem__)

    # `fervid video --csv`
    out = tmp_path / "t.csv"
    argv = ["video", str(clip), "--csv", str(out), "--max-seconds", str(VIDEO_SECONDS), "--no-progress"]
    assert main([*argv, "--backend", "onnx", "--device", "cpu", "--no-show"]) == 0
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        csv_rows = list(reader)
    from_csv = {
        (int(r["frame"]), tuple(int(r[c]) for c in schema.BOX_COLUMNS)): _probs_of_row(r, labels) for r in csv_rows
    }
    # `fervid batch`'s video rows (the whole clip: these frames among them)
    video_rows = [r for r in batch_rows[0] if r["kind"] == "video"]
    from_batch = {
        (r["frame"], tuple(r[c] for c in schema.BOX_COLUMNS)): _probs_of_row(r, labels)
        for r in video_rows
        if r["frame"] < len(frames)
    }
    # the CSV and the batch rows hold the faces the stream confirmed as people: the same boxes
    assert set(from_csv) == set(streamed) == set(from_batch)
    for key, p in streamed.items():
        assert _close(from_csv[key], p) and _close(from_batch[key], p), key
    # one column set: the CSV's, the batch table's and the DataFrame's
    assert header == schema.columns(labels) == list(video_rows[0])
    assert all(r["source"] == str(clip) for r in csv_rows)


# --------------------------------------------------------------------------- batch


def test_batch_over_a_photo_and_the_clip_has_no_null(rec, batch_rows, photo):
    rows, meta = batch_rows
    assert meta[schema.PARQUET_METADATA_KEY] == schema.SCHEMA_VERSION.encode()
    assert {r["kind"] for r in rows} == {"image", "video"}
    cols = schema.columns(list(rec.labels))
    assert all(list(r) == cols for r in rows)
    assert list(rec.predict(photo).to_dataframe().columns) == cols
    nulls = [(r["source"], r["frame"], k) for r in rows for k, v in r.items() if v is None or v != v]
    assert not nulls, nulls[:10]
    # The probabilities and their smoothed averages sum to 1. A float64 softmax and the row's
    # sum: gamma(3k) (as test_predict). The moving average s' = a p + (1 - a) s: each step adds
    # 4 roundings of terms whose magnitudes sum to 1 and a times p's error, the old error shrinks
    # by 1 - a, so at most (gamma(4) + a gamma(3k)) / a, plus the row's sum.
    k, a = len(rec.labels), DEFAULT_SMOOTH
    smoothed_tol = (gamma(4, U64) + a * gamma(3 * k, U64)) / a + gamma(k, U64)
    for r in rows:
        assert abs(sum(r[schema.prob_column(lab)] for lab in rec.labels) - 1) <= gamma(3 * k, U64)
        assert abs(sum(r[schema.smoothed_column(lab)] for lab in rec.labels) - 1) <= smoothed_tol


# --------------------------------------------------------------------------- the page


def test_the_schema_page_is_the_schema():
    page = (Path(__file__).resolve().parents[1] / "docs" / "result-schema.md").read_text()
    assert schema.markdown_table() in page  # regenerate the table when the schema changes
    for column in schema.columns(["<label>"]):
        assert f"`{column}`" in page, column


def test_the_services_response_models_are_the_schema():
    pytest.importorskip("fastapi")
    from fervid.serve.schemas import Face, PredictResult

    assert list(Face.model_fields) == schema.field_names(schema.FACE_FIELDS)
    photo_doc = [f for f in schema.DOCUMENT_FIELDS if "frame" not in f.where]
    assert list(PredictResult.model_fields) == schema.field_names(photo_doc)


def test_batch_refuses_to_continue_rows_of_another_schema(data_root, tmp_path, monkeypatch):
    import fervid.batch as batch

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_root / "media" / "obama.jpg", folder / "obama.jpg")
    out = tmp_path / "r.parquet"
    options = batch.BatchOptions(model="fast", backend="onnx")
    monkeypatch.setattr(batch, "SCHEMA_VERSION", "0")  # an output written under an older schema
    batch.run_batch(folder, out, options=options, progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="schema_version: '0' then, '1' now"):
        batch.run_batch(folder, out, options=options, progress=False)


def test_the_web_pages_constants_are_pythons():
    """The page (src/fervid/serve/static/app.js) names a face's landmarks and flags ambiguity as
    the schema does; tests/test_serve_browser.py checks its faces' fields in a real browser."""
    import re

    from fervid.detectors import LANDMARK_NAMES
    from fervid.inference.ambiguity import AMBIGUITY_THRESHOLD, LABEL_THRESHOLD

    js = (Path(__file__).resolve().parents[1] / "src" / "fervid" / "serve" / "static" / "app.js").read_text()

    def const(name: str) -> str:
        m = re.search(rf"^const {name} = (.+?);", js, re.M)
        assert m, f"app.js has no const {name}"
        return m.group(1)

    assert json.loads(const("LANDMARK_NAMES")) == list(LANDMARK_NAMES)
    assert float(const("AMBIGUOUS")) == AMBIGUITY_THRESHOLD
    assert float(const("LABEL_THRESHOLD")) == LABEL_THRESHOLD
    # no face field under another spelling (the page once had labelsAbove)
    for name in schema.field_names(schema.FACE_FIELDS):
        camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)
        assert camel == name or camel not in js, camel
