"""`fervid serve` and the recognizer config (issue 21): every worker process gets the whole
config (``fervid serve --workers 2 --detector haar`` answers with the Haar detector's results),
the pixel limit comes from the config, and the page's live view starts on the server's model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from servekit import wait_until_serving
from tolerances import parity_bound, spy_on_crops

pytest.importorskip("fastapi", reason="fervid serve needs the serve extra: pip install 'fervid[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from fervid import EmotionRecognizer, RecognizerConfig  # noqa: E402
from fervid.errors import UserValueError  # noqa: E402
from fervid.serve.app import ENV_CONFIG, app_from_env, create_app, serve_config  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "src" / "fervid" / "serve" / "static"


@pytest.fixture(scope="module")
def media(data_root: Path) -> Path:
    return data_root / "media"


@pytest.fixture(scope="module")
def serve_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-cache")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 20-40 s on 2 loaded cores: make test-slow (CI) runs it
def test_workers_get_the_whole_config_and_answer_with_haar(
    media: Path, serve_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's check, on the real CLI: `fervid serve --workers 2 --detector haar` (with
    settings a partial config would lose: a Haar option and the labels_above threshold) answers
    /v1/predict on two_people.jpg with the boxes and probabilities of that recognizer."""
    import httpx

    from fervid.models.checkpoint import load_model  # torch: the bound is computed from the network

    port = _free_port()
    argv = ["--model", "fast", "--detector", "haar", "--detector-option", "min_neighbors=5", "--threshold", "0.05"]
    cfg = RecognizerConfig(model="fast", detector="haar", threshold=0.05, detector_options={"min_neighbors": 5})
    proc = subprocess.Popen(
        [sys.executable, "-m", "fervid", "serve", "--port", str(port), "--workers", "2", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "FERVID_CACHE": str(serve_cache)},
        text=True,
        start_new_session=True,  # its own process group: the workers end with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc, timeout=120)
        photo = media / "two_people.jpg"
        rec = EmotionRecognizer.from_config(cfg)
        crops = spy_on_crops(rec, monkeypatch)
        expected = rec.predict(photo).to_dict()
        labels = list(expected["faces"][0]["probabilities"])
        want = np.array([[f["probabilities"][k] for k in labels] for f in expected["faces"]])
        # a worker process evaluates the same network on the same crops, its float32 sums in
        # another order (its own threads): within the parity bound derived from the weights
        bound = parity_bound(load_model("fast"), crops[0], want)
        yunet_boxes = [f.box for f in EmotionRecognizer("fast").predict(photo).faces]
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(4):  # several requests: both workers answer some of them
                r = c.post("/v1/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
                assert r.status_code == 200, r.text
                faces = r.json()["faces"]
                boxes = [tuple(f["box"][k] for k in "xywh") for f in faces]
                assert boxes == [tuple(f["box"][k] for k in "xywh") for f in expected["faces"]]
                assert len(boxes) == 2 and boxes != yunet_boxes  # Haar's boxes, not the default YuNet's
                assert all(f["landmarks"] is None for f in faces)  # Haar finds no landmarks
                for got_face, want_face in zip(faces, expected["faces"]):
                    assert got_face["labels_above"] == want_face["labels_above"]  # the threshold reached the worker
                got = np.array([[f["probabilities"][k] for k in labels] for f in faces])
                assert (np.abs(got - want) <= bound).all(), (np.abs(got - want).max(), bound.min())
            m = c.get("/v1/models").json()["service"]
            assert (m["model"], m["detector"]) == ("fast", "haar")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def test_the_env_config_is_the_whole_config(monkeypatch: pytest.MonkeyPatch, serve_cache: Path) -> None:
    cfg = RecognizerConfig(model="fast", detector="haar", photo_max_side=2048, threshold=0.2, max_pixels=1234)
    data = serve_config(cfg, "k", 2.0)
    assert RecognizerConfig.from_dict({k: v for k, v in data.items() if k not in ("api_key", "max_upload_mb")}) == cfg
    monkeypatch.setenv(ENV_CONFIG, json.dumps(data))
    monkeypatch.setenv("FERVID_CACHE", str(serve_cache))
    app = app_from_env()
    state = app.state.fervid
    assert state.recognizer.config == cfg and state.max_pixels == 1234 and state.max_bytes == 2 * 2**20
    monkeypatch.setenv(ENV_CONFIG, json.dumps({"model": "fast", "max_side": 640}))
    with pytest.raises(UserValueError, match="max_side"):
        app_from_env()
    monkeypatch.setenv(ENV_CONFIG, '{"model": "fast"}')  # the documented hand-written form still works
    assert app_from_env().state.fervid.recognizer.config == RecognizerConfig(model="fast")


@pytest.mark.parametrize(("model", "expected"), [("default", "default"), ("fast", "fast")])
def test_the_page_starts_on_the_servers_model(serve_cache: Path, model: str, expected: str) -> None:
    rec = EmotionRecognizer(model)
    with TestClient(create_app(rec, load=False, cache_dir=serve_cache)) as c:
        index = c.get("/models/index.json").json()
        assert index["service_model"] == expected and expected in [m["name"] for m in index["models"]]
    js = (STATIC / "app.js").read_text()
    # the live view's first model is the server's when the page can run it (else fast, as before)
    assert "serviceModel = index.service_model" in js
    assert "names.includes(serviceModel) ? serviceModel" in js


def test_a_checkpoint_server_model_is_not_offered_to_the_page(serve_cache: Path, tmp_path: Path) -> None:
    rec = EmotionRecognizer(str(tmp_path / "mine.safetensors"))  # nothing loads: load=False
    with TestClient(create_app(rec, load=False, cache_dir=serve_cache)) as c:
        assert c.get("/models/index.json").json()["service_model"] is None
