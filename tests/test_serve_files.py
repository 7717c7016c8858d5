"""The page's large vendored files, shipped gzip-compressed (issue 23: the core venv's size):
each ``.gz`` decompresses to the original recorded by ``web/build.sh``, and ``fervid serve``
sends it gzip-encoded to clients that accept gzip and decompressed to the others, with the
original's content type, validators, ``Vary`` and the security headers of any static file."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fervid serve needs the serve extra: pip install 'fervid[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from fervid import EmotionRecognizer  # noqa: E402
from fervid.serve.app import STATIC_DIR, create_app  # noqa: E402
from fervid.serve.files import accepts_gzip  # noqa: E402
from fervid.serve.guards import SECURITY_HEADERS  # noqa: E402

VENDOR = STATIC_DIR / "vendor"
MANIFEST = json.loads((VENDOR / "precompressed.json").read_text())
WASM = "onnxruntime-web/ort-wasm-simd-threaded.wasm"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(EmotionRecognizer("fast"), load=False)) as c:
        yield c


def test_each_gz_decompresses_to_its_recorded_original() -> None:
    assert {WASM, "swagger-ui/swagger-ui-bundle.js"} <= set(MANIFEST)
    shipped = {p.relative_to(VENDOR).as_posix()[: -len(".gz")] for p in VENDOR.rglob("*.gz")}
    assert shipped == set(MANIFEST)
    for name, original in MANIFEST.items():
        assert not (VENDOR / name).exists(), f"{name} is shipped twice (plain and .gz)"
        data = gzip.decompress((VENDOR / f"{name}.gz").read_bytes())
        assert len(data) == original["size"], name
        assert hashlib.sha256(data).hexdigest() == original["sha256"], name


def test_no_plain_vendored_file_is_large() -> None:
    """What web/build.sh compresses (over 100 kB) is never left uncompressed in the package."""
    kinds = {".wasm", ".js", ".mjs", ".css"}
    assert [p for p in VENDOR.rglob("*") if p.suffix in kinds and p.stat().st_size > 100 * 1024] == []


def test_the_page_and_the_docs_ask_for_the_original_names(client: TestClient) -> None:
    app_js = (STATIC_DIR / "app.js").read_text()
    wasm_dir = re.search(r'ort\.env\.wasm\.wasmPaths = "/static/vendor/([^"]+)"', app_js)
    assert wasm_dir and f"{wasm_dir.group(1)}ort-wasm-simd-threaded.wasm" == WASM
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in client.get("/docs").text


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip, deflate, br, zstd", True),  # Chromium
        ("GZIP", True),
        ("x-gzip", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("*", True),
        ("", False),  # no header: identity
        ("identity", False),
        ("br", False),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),  # gzip refused by name wins over the wildcard
        ("*;q=0", False),
        ("gzip;q=oops", False),
    ],
)
def test_accept_encoding(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


def _raw_get(client: TestClient, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body as sent (httpx would undo the gzip otherwise)."""
    with client.stream("GET", url, headers=headers) as r:
        return r.status_code, dict(r.headers), b"".join(r.iter_raw())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_a_client_that_accepts_gzip_gets_the_gz_as_it_is(client: TestClient, name: str) -> None:
    url = f"/static/vendor/{name}"
    status, headers, body = _raw_get(client, url, **{"Accept-Encoding": "gzip, deflate, br"})
    assert status == 200
    assert body == (VENDOR / f"{name}.gz").read_bytes()
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body)
    expected_type = {".wasm": "application/wasm", ".js": "text/javascript", ".css": "text/css"}[Path(name).suffix]
    assert headers["content-type"].split(";")[0] == expected_type
    plain = client.get("/static/app.js").headers  # an ordinary static file: the same security headers
    for key in SECURITY_HEADERS:
        assert headers[key.lower()] == plain[key] == SECURITY_HEADERS[key]
    assert headers["etag"] and headers["last-modified"]
    again = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]})
    assert again.status_code == 304 and again.headers["vary"] == "Accept-Encoding" and again.content == b""


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", ""])
def test_a_client_that_does_not_accept_gzip_gets_the_original(client: TestClient, accept: str) -> None:
    url = f"/static/vendor/{WASM}"
    status, headers, body = _raw_get(client, url, **{"Accept-Encoding": accept})
    assert status == 200 and "content-encoding" not in headers
    assert len(body) == int(headers["content-length"]) == MANIFEST[WASM]["size"]
    assert hashlib.sha256(body).hexdigest() == MANIFEST[WASM]["sha256"]
    assert headers["content-type"] == "application/wasm" and headers["vary"] == "Accept-Encoding"
    assert headers["x-content-type-options"] == "nosniff"
    _, gz_headers, _ = _raw_get(client, url, **{"Accept-Encoding": "gzip"})
    assert headers["etag"] != gz_headers["etag"]  # two representations, two validators
    assert headers["last-modified"] == gz_headers["last-modified"]
    again = client.get(url, headers={"Accept-Encoding": accept, "If-None-Match": headers["etag"]})
    assert again.status_code == 304
    stale = client.get(url, headers={"Accept-Encoding": accept, "If-None-Match": gz_headers["etag"]})
    assert stale.status_code == 200 and len(stale.content) == MANIFEST[WASM]["size"]


def test_head_and_missing_files(client: TestClient) -> None:
    url = f"/static/vendor/{WASM}"
    head = client.head(url, headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and int(head.headers["content-length"]) == MANIFEST[WASM]["size"]
    missing = client.get("/static/vendor/onnxruntime-web/nothing.wasm", headers={"Accept-Encoding": "gzip"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get(f"{url}.gz").status_code == 404  # the stored form is not a URL of its own
    assert client.post(url).status_code == 405
