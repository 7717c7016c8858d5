"""The fervid service: a FastAPI app factory around one :class:`fervid.EmotionRecognizer`.

    from fervid import EmotionRecognizer
    from fervid.serve.app import create_app
    app = create_app(EmotionRecognizer("default"), api_key=None, max_upload_mb=16)

Endpoints (OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``, served from
the package, no CDN):

``POST /v1/predict``        one image: multipart field ``file``, or the raw bytes as the body
                            with an ``image/*`` or ``application/octet-stream`` content type ->
                            the JSON of ``fervid predict --json`` (``ImageResult.to_dict()``),
                            ``path`` being the uploaded file name (``upload`` for a raw body)
``POST /v1/predict/batch``  several images (multipart, each in a ``file`` or ``files`` field)
                            -> ``{"results": [...]}`` in upload order
``GET /v1/models``          the service's model, detector and labels; the models the page runs
``GET /healthz``            liveness and whether the model is loaded
``GET /``                   the web page (live camera, inference in the browser; photo upload)
``GET /models/{name}.onnx`` the ONNX files the page runs: ``yunet`` (face detector, from the
                            package) and the bundled emotion models (exported on first request
                            into ``$FERVID_CACHE/serve`` or ``~/.cache/fervid/serve``);
                            ``/models/{name}.json`` their labels, preprocessing and temperature;
                            ``/models/index.json`` the list (the page builds its model switch from it)

Errors are JSON, ``{"error": {"code": ..., "message": ...}}``, never a traceback: 400
(empty body, no ``file`` field, malformed multipart), 401 (``api_key`` set and the
``X-API-Key`` header or ``Authorization: Bearer`` token missing or wrong), 404, 413 (body
over ``max_upload_mb``, from ``Content-Length`` and counted while the body streams in,
before anything is decoded; an image whose header declares more than ``max_pixels``
pixels, i.e. a decompression bomb, is refused before its pixels are decoded), 415 (not an
image, or an image that cannot be decoded), 422, 500 (generic message; the traceback goes
to the ``fervid.serve`` logger; a model file for the page that cannot be exported, e.g. into
an unwritable cache folder, is ``model_export_failed`` with the reason).

Authentication: ``api_key`` is compared as UTF-8 bytes in constant time; an empty or blank
key is refused (:func:`check_api_key`), never read as "no authentication". Every response
carries the security headers; every HTML response (``/``, ``/static/index.html``...) the
page's Content-Security-Policy and ``X-Frame-Options: DENY``.

Concurrency: the recognizer is loaded once at startup (its lazy loading is not
thread-safe) and shared. Prediction is CPU-bound and runs in worker threads, never on the
event loop; at most ``max_concurrency`` predictions run at once (default 1: the model's own
intra-op threads already use every core, and OpenCV's Haar cascade is not documented as
thread-safe), the others wait their turn without blocking other endpoints. For more
throughput run several processes (``fervid serve --workers N``, see :func:`app_from_env`).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import mimetypes
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from fervid import EmotionRecognizer

log = logging.getLogger("fervid.serve")

DEFAULT_MAX_UPLOAD_MB = 16.0
DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image accepted, in pixels declared by its header (50 MP: an 8000 x 6000 photo)."""
DEFAULT_MAX_BATCH = 32
MULTIPART_OVERHEAD = 64 * 1024
"""Bytes allowed on top of ``max_upload_mb`` for multipart boundaries and part headers."""
YUNET_FILE = "yunet_s_dynamic.onnx"
STATIC_DIR = Path(__file__).resolve().parent / "static"
ENV_CONFIG = "FERVID_SERVE_CONFIG"

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}
_SECURITY_HEADERS = {
    # Cross-origin isolation: lets onnxruntime-web use WebAssembly threads (SharedArrayBuffer).
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # nothing of the service is meant to be framed (the CSP's frame-ancestors too)
}
_PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "connect-src 'self' blob: data:; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# The API docs page (Swagger UI) starts itself with an inline script: its own policy, as strict otherwise.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs",)


# --------------------------------------------------------------------------- errors


class ApiError(StarletteHTTPException):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "payload_too_large", f"request body over the limit of {_fmt_bytes(limit)}")


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**16 else f"{n:g} bytes"


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# --------------------------------------------------------------------------- schema (docs)


class Box(BaseModel):
    x: int
    y: int
    w: int
    h: int


class Face(BaseModel):
    """One face, as in ``fervid predict --json`` (detectors that give landmarks add them)."""

    model_config = ConfigDict(extra="allow")
    box: Box
    score: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    ambiguity: float = Field(description="normalised entropy of the probabilities, 0 certain .. 1 uniform")
    top2_margin: float
    ambiguous: bool
    labels_above: list[str]


class PredictResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    path: str = Field(description="the uploaded file name ('upload' for a raw body)")
    width: int
    height: int
    faces: list[Face]


class BatchResult(BaseModel):
    results: list[PredictResult]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    model_loaded: bool
    version: str
    auth_required: bool


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in (
        (400, "empty body, no file field or malformed multipart"),
        (401, "missing or wrong API key"),
        (413, "body over the upload limit, or an image declaring too many pixels"),
        (415, "not an image, or an image that cannot be decoded"),
        (422, "invalid request"),
        (500, "internal error (details in the server log)"),
    )
}

_IMAGE_BODY = {"type": "string", "format": "binary"}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": _IMAGE_BODY}}
            },
            "image/jpeg": {"schema": _IMAGE_BODY},
            "image/png": {"schema": _IMAGE_BODY},
            "application/octet-stream": {"schema": _IMAGE_BODY},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "array", "items": _IMAGE_BODY}},
                }
            }
        },
    }
}


# --------------------------------------------------------------------------- the guard middleware

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class _Guard:
    """Pure ASGI middleware: body size limit (``Content-Length`` and while streaming),
    security headers, and a JSON 500 instead of any traceback.

    Security headers: every response gets :data:`_SECURITY_HEADERS`; every HTML response
    (the page at ``/``, the same file at ``/static/index.html``, any other page a route
    or the static mount serves) also gets the page's Content-Security-Policy, decided by
    what is sent (``Content-Type: text/html``), not by a list of routes that can miss one.
    ``/docs`` gets its own policy (Swagger UI needs its inline script)."""

    def __init__(self, app: ASGIApp, max_body: int, limit: int):
        self.app = app
        self.max_body = max_body  # the limit plus room for multipart boundaries and part headers
        self.limit = limit  # what the error message names

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        csp = _DOCS_CSP if scope.get("path") in _DOCS_PATHS else _PAGE_CSP

        async def send_wrapper(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for k, v in _SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
                if headers.get("content-type", "").lower().startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _error_response(400, "bad_request", "invalid Content-Length header")(scope, receive, send_wrapper)
                return
            if n > self.max_body:
                await _error_response(413, "payload_too_large", BodyTooLarge(self.limit).detail)(
                    scope, receive, send_wrapper
                )
                return
        received = 0

        async def receive_wrapper() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as e:  # anything the app did not turn into a response
            if started:
                log.exception("error after the response started: %s %s", scope.get("method"), scope.get("path"))
                raise
            if isinstance(e, ApiError):
                resp = _error_response(e.status_code, e.code, str(e.detail), dict(e.headers) if e.headers else None)
            else:
                log.exception("internal error: %s %s", scope.get("method"), scope.get("path"))
                resp = _error_response(500, "internal_error", "internal server error (see the server log)")
            await resp(scope, receive, send_wrapper)


# --------------------------------------------------------------------------- browser models


def _cache_root() -> Path:
    env = os.environ.get("FERVID_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fervid"


def _package_file(*parts: str) -> Path:
    from importlib.resources import files

    return Path(str(files("fervid").joinpath(*parts)))


def _bundled_models() -> list[dict[str, str]]:
    """``[{"name", "sha256", "description"}]`` of the bundled models (the weights manifest)."""
    try:
        manifest = json.loads(_package_file("weights", "manifest.json").read_text())
        return [
            {"name": m["name"], "sha256": m.get("sha256", ""), "description": m.get("description", "")}
            for m in manifest["models"]
        ]
    except (OSError, KeyError, ValueError):
        return [{"name": "default", "sha256": "", "description": ""}, {"name": "fast", "sha256": "", "description": ""}]


def _onnx_metadata(path: Path) -> dict[str, Any]:
    """The ``fervid.*`` metadata of an exported model (labels, preprocess, temperature): read
    by onnx, or by onnxruntime in a core install without it."""
    from fervid.models.onnx import read_metadata

    meta = read_metadata(path)
    return {
        "labels": list(meta["labels"]),
        "preprocess": meta["preprocess"].to_dict(),
        "temperature": meta["temperature"],
        "input": meta.get("input", ""),
        "quantization": meta.get("quantization", "none"),
        "source": meta.get("source", ""),
    }


class BrowserModels:
    """The ONNX files the page runs: YuNet from the package and the bundled emotion models,
    exported once (fp32) into the cache folder on first request."""

    def __init__(self, cache_dir: Path | None = None):
        self._cache_dir = cache_dir
        self.models = _bundled_models()
        self._locks = {m["name"]: threading.Lock() for m in self.models}
        self._meta: dict[str, dict[str, Any]] = {}

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.models]

    def yunet(self) -> Path | None:
        p = _package_file("weights", "yunet", YUNET_FILE)
        return p if p.is_file() else None

    def path(self, name: str) -> Path:
        """The exported ONNX file of bundled model ``name`` (exported now if not cached; blocking)."""
        from fervid.inference.backends import cached_onnx
        from fervid.models.bundled import bundled_onnx
        from fervid.runtime import torch_available

        next(m for m in self.models if m["name"] == name)  # a bundled model, nothing else
        if not torch_available():  # a core install: the verified ONNX file shipped with the weights
            shipped = bundled_onnx(name)
            if shipped is not None:
                return shipped
        with self._locks[name]:
            # The verified cache (issue 12): the bundled weights' sha256 is checked before the
            # export is served, the entry against its record (a damaged one is rebuilt), and
            # it is written atomically (other processes never see a partial file).
            return cached_onnx(name, folder=(self._cache_dir or _cache_root()) / "serve")

    def metadata(self, name: str) -> dict[str, Any]:
        if name not in self._meta:
            self._meta[name] = {"name": name, "url": f"/models/{name}.onnx", **_onnx_metadata(self.path(name))}
        return self._meta[name]


# --------------------------------------------------------------------------- app


@dataclass
class _State:
    recognizer: Any
    api_key: str | None
    max_bytes: int
    max_pixels: int
    max_batch: int
    loaded: bool = False


def _check_image(name: str, data: bytes, state: _State) -> None:
    """Refuse, before any pixel is decoded: empty (400), too many bytes or pixels (413),
    not an image (415). Only the header is read here."""
    if not data:
        raise ApiError(400, "empty", f"{name}: the image is empty")
    if len(data) > state.max_bytes:
        raise ApiError(
            413, "payload_too_large", f"{name}: {len(data)} bytes, over the limit of {_fmt_bytes(state.max_bytes)}"
        )
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: parses the header, decodes nothing
            w, h = im.size
    except Image.DecompressionBombError as e:
        raise ApiError(413, "image_too_large", f"{name}: refused as a decompression bomb ({e})") from None
    except Exception:  # noqa: BLE001 -- whatever PIL cannot parse is "not an image" to the client
        raise ApiError(
            415, "not_an_image", f"{name}: not an image fervid can read (JPEG, PNG, BMP, TIFF, WebP, GIF...)"
        ) from None
    if w * h > state.max_pixels:
        raise ApiError(
            413,
            "image_too_large",
            f"{name}: {w}x{h} = {w * h} pixels, over the limit of {state.max_pixels} (decompression bomb guard)",
        )


def check_api_key(api_key: str | None) -> None:
    """Refuse a key that would leave the API open or can never be sent: empty or blank
    (``--api-key "$KEY"`` with ``KEY`` unset must not silently turn authentication off),
    with spaces at its ends (HTTP trims them from header values), or with control
    characters (not allowed in a header). ``None`` means no authentication."""
    from fervid.errors import UserValueError

    if api_key is None:
        return
    if not isinstance(api_key, str):
        raise UserValueError(f"the API key must be a string, got {type(api_key).__name__}")
    if not api_key.strip():
        raise UserValueError(
            "the API key is empty: authentication would be off; give a non-empty key, "
            "or leave --api-key (and FERVID_API_KEY) out to serve without one"
        )
    if api_key != api_key.strip():
        raise UserValueError("the API key starts or ends with spaces, which HTTP drops from headers: remove them")
    if any(ord(c) < 32 or ord(c) == 127 for c in api_key):
        raise UserValueError("the API key contains control characters, which cannot be sent in a header")


def _key_matches(given: str, key: str) -> bool:
    """Constant-time comparison of the UTF-8 bytes of the key. Header values reach the app
    as Latin-1 text (ASGI): their raw bytes are what the client sent, so a non-ASCII key
    sent as UTF-8 matches (and one typed as Latin-1 by a client does not)."""
    try:
        sent = given.encode("latin-1")
    except UnicodeEncodeError:  # not from a header: compare its UTF-8 form
        sent = given.encode("utf-8")
    return hmac.compare_digest(sent, key.encode("utf-8"))


def _safe_name(name: str | None, default: str) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    return base[:255] or default


def create_app(
    recognizer: EmotionRecognizer,
    *,
    api_key: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_concurrency: int = 1,
    load: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FastAPI:
    """The fervid ASGI app around ``recognizer`` (any :class:`fervid.EmotionRecognizer`,
    whatever its model or detector).

    Args:
        api_key: when set, ``/v1/*`` need it as ``X-API-Key: KEY`` or ``Authorization:
            Bearer KEY`` (401 otherwise); the page, ``/healthz``, ``/docs`` and the model
            files stay open (the page asks for the key for uploads).
        max_upload_mb: largest request body (one image, or a whole batch), MiB.
        max_pixels: largest image, in pixels declared by its header.
        max_batch: most images in one ``/v1/predict/batch`` request.
        max_concurrency: predictions that may run at once in worker threads.
        load: load the recognizer when the app starts (lifespan), not on the first request.
        cache_dir: where the browser's ONNX models are exported (default
            ``$FERVID_CACHE`` or ``~/.cache/fervid``, subfolder ``serve``).
    """
    import anyio
    import anyio.to_thread

    from fervid.version import __version__

    if max_upload_mb <= 0 or max_pixels <= 0 or max_batch <= 0 or max_concurrency <= 0:
        raise ValueError("max_upload_mb, max_pixels, max_batch and max_concurrency must be positive")
    mimetypes.add_type("text/javascript", ".mjs")
    mimetypes.add_type("application/wasm", ".wasm")
    check_api_key(api_key)
    state = _State(recognizer, api_key, int(max_upload_mb * 2**20), int(max_pixels), int(max_batch))
    limiter = anyio.CapacityLimiter(max_concurrency)
    load_lock = threading.Lock()
    browser = BrowserModels(Path(cache_dir) if cache_dir is not None else None)

    def ensure_loaded() -> None:
        with load_lock:
            if not state.loaded:
                recognizer.load()
                state.loaded = True

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load:
            await anyio.to_thread.run_sync(ensure_loaded)
            log.info("fervid serve: model loaded (%r)", recognizer)
        yield

    app = FastAPI(
        title="fervid",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Facial emotion recognition: faces, calibrated emotion probabilities and ambiguity "
        'for uploaded images. Errors are `{"error": {"code", "message"}}`.',
    )
    app.state.fervid = state
    app.state.browser_models = browser

    # ---- errors as JSON
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        return _error_response(exc.status_code, code, str(exc.detail), dict(headers) if headers else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return _error_response(422, "invalid_request", msgs or "invalid request")

    # ---- auth
    key_header = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="the key given to `fervid serve --api-key`"
    )
    bearer = HTTPBearer(auto_error=False, description="the same key as a Bearer token")

    # Defaults, not Annotated[...]: the annotations are strings (PEP 563) that FastAPI cannot
    # resolve to these local objects.
    async def require_key(
        key: str | None = Depends(key_header), token: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> None:  # noqa: B008
        if state.api_key is None:
            return
        given = key if key is not None else (token.credentials if token is not None else None)
        if given is None:
            raise ApiError(
                401,
                "unauthorized",
                "API key required: X-API-Key header or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not _key_matches(given, state.api_key):
            raise ApiError(401, "unauthorized", "wrong API key", headers={"WWW-Authenticate": "Bearer"})

    # ---- reading uploads
    async def read_uploads(request: Request, many: bool) -> list[tuple[str, bytes]]:
        ctype = request.headers.get("content-type", "")
        media = ctype.split(";", 1)[0].strip().lower()
        items: list[tuple[str, bytes]] = []
        if media == "multipart/form-data":
            try:
                form = await request.form(max_files=state.max_batch + 1, max_fields=16, max_part_size=1024 * 1024)
            except StarletteHTTPException:
                raise
            except Exception as e:  # noqa: BLE001 -- MultiPartException and any other malformed body
                raise ApiError(400, "bad_multipart", f"malformed multipart body: {e}") from None
            try:
                for key, value in form.multi_items():
                    if key not in ("file", "files"):
                        continue
                    if isinstance(value, UploadFile):
                        items.append((_safe_name(value.filename, f"upload-{len(items)}"), await value.read()))
                    else:
                        items.append((f"upload-{len(items)}", str(value).encode()))
            finally:
                await form.close()
            if not items:
                raise ApiError(400, "missing_file", "no image: send it in a multipart field named 'file'")
            if not many and len(items) > 1:
                raise ApiError(400, "too_many_files", "one image per request here; use /v1/predict/batch for several")
            if len(items) > state.max_batch:
                raise ApiError(400, "too_many_files", f"at most {state.max_batch} images per batch")
        elif many:
            raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data fields named 'file'")
        elif media in ("", "application/octet-stream") or media.startswith("image/"):
            items.append(("upload", await request.body()))
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"content type {media!r}: send an image (image/*, application/octet-stream) "
                "or a multipart/form-data field named 'file'",
            )
        for name, data in items:
            _check_image(name, data, state)
        return items

    def predict_sync(items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        import fervid

        ensure_loaded()
        out = []
        for name, data in items:
            try:
                result = recognizer.predict(data)
            except fervid.FERDataError as e:  # fervid's ImageLoadError: truncated, corrupt, unsupported
                raise ApiError(415, "not_an_image", f"{name}: the image cannot be decoded ({e})") from None
            d = result.to_dict()
            d["path"] = name
            out.append(d)
        return out

    async def predict(items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(predict_sync, items, limiter=limiter)

    # ---- API
    @app.post(
        "/v1/predict",
        response_model=PredictResult,
        responses=_ERRORS,
        openapi_extra=_PREDICT_BODY,
        dependencies=[Depends(require_key)],
        tags=["predict"],
        summary="faces and emotions in one image (same JSON as `fervid predict --json`)",
    )
    async def predict_one(request: Request) -> JSONResponse:
        items = await read_uploads(request, many=False)
        return JSONResponse((await predict(items))[0])

    @app.post(
        "/v1/predict/batch",
        response_model=BatchResult,
        responses=_ERRORS,
        openapi_extra=_BATCH_BODY,
        dependencies=[Depends(require_key)],
        tags=["predict"],
        summary="faces and emotions in several images (multipart fields named `file`)",
    )
    async def predict_batch(request: Request) -> JSONResponse:
        items = await read_uploads(request, many=True)
        return JSONResponse({"results": await predict(items)})

    @app.get(
        "/v1/models",
        responses={401: _ERRORS[401]},
        dependencies=[Depends(require_key)],
        tags=["models"],
        summary="the service's model and detector, and the models the web page runs",
    )
    async def models() -> dict[str, Any]:
        rec = recognizer
        if not state.loaded:
            await anyio.to_thread.run_sync(ensure_loaded, limiter=limiter)
        det = rec.detector
        model = rec.model if isinstance(rec.model, (str, os.PathLike)) else type(rec.model).__name__
        return {
            "service": {
                "model": str(model),
                "detector": str(getattr(det, "name", type(det).__name__)),
                "backend": str(getattr(rec, "backend", "")),
                "labels": list(rec.labels),
                "max_upload_bytes": state.max_bytes,
                "max_pixels": state.max_pixels,
                "max_batch": state.max_batch,
            },
            "browser": {
                "detector": {"name": "yunet", "url": "/models/yunet.onnx", "available": browser.yunet() is not None},
                "models": [
                    {
                        "name": m["name"],
                        "url": f"/models/{m['name']}.onnx",
                        "metadata": f"/models/{m['name']}.json",
                        "description": m["description"],
                    }
                    for m in browser.models
                ],
            },
        }

    @app.get("/healthz", response_model=Health, tags=["service"], summary="liveness")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_loaded": state.loaded,
            "version": __version__,
            "auth_required": state.api_key is not None,
        }

    # ---- model files for the page
    @app.get(
        "/models/{filename}",
        tags=["web page"],
        responses={404: {"model": ErrorResponse}},
        summary="ONNX models the page runs (yunet.onnx, default.onnx, fast.onnx...), their metadata (NAME.json) "
        "and the list (index.json)",
    )
    async def model_file(filename: str) -> Response:
        stem, _, ext = filename.rpartition(".")
        if filename == "index.json":  # what the page offers (open, like the files themselves)
            return JSONResponse(
                {
                    "detector": {
                        "name": "yunet",
                        "url": "/models/yunet.onnx",
                        "available": browser.yunet() is not None,
                    },
                    "models": [
                        {
                            "name": m["name"],
                            "url": f"/models/{m['name']}.onnx",
                            "metadata": f"/models/{m['name']}.json",
                            "description": m["description"],
                        }
                        for m in browser.models
                    ],
                }
            )
        if stem == "yunet" and ext == "onnx":
            p = browser.yunet()
            if p is None:
                raise ApiError(404, "not_found", f"the YuNet weights are not installed ({YUNET_FILE})")
            return FileResponse(p, media_type="application/octet-stream")
        if ext not in ("onnx", "json") or stem not in browser.names:
            raise ApiError(
                404,
                "not_found",
                f"no model file {filename!r}; available: index.json, yunet.onnx, "
                + ", ".join(f"{n}.onnx, {n}.json" for n in browser.names),
            )
        from fervid.errors import FervidError
        from fervid.inference.backends import OnnxExportError

        try:
            if ext == "json":
                return JSONResponse(await anyio.to_thread.run_sync(browser.metadata, stem))
            path = await anyio.to_thread.run_sync(browser.path, stem)
        except (FervidError, OnnxExportError) as e:  # e.g. an unwritable cache: say what is wrong, not a bare 500
            log.error("cannot serve the model file %s: %s", filename, e)
            raise ApiError(
                500,
                "model_export_failed",
                f"cannot export {stem} for the page: {e} (the server needs a writable cache folder: set FERVID_CACHE)",
            ) from None
        return FileResponse(path, media_type="application/octet-stream")

    # ---- page and docs
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="fervid API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(_Guard, max_body=state.max_bytes + MULTIPART_OVERHEAD, limit=state.max_bytes)
    return app


# --------------------------------------------------------------------------- several processes


def serve_config(
    model: str = "default",
    detector: str | None = None,
    api_key: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
) -> dict[str, Any]:
    return {"model": model, "detector": detector, "api_key": api_key, "max_upload_mb": max_upload_mb}


def app_from_env() -> FastAPI:
    """App factory for ASGI servers that import a string, e.g. several worker processes:

        FERVID_SERVE_CONFIG='{"model": "default"}' uvicorn --factory fervid.serve.app:app_from_env --workers 2

    ``FERVID_SERVE_CONFIG`` is JSON with ``model``, ``detector``, ``api_key`` and
    ``max_upload_mb`` (all optional); ``fervid serve --workers N`` sets it. Each process
    loads its own copy of the model."""
    from fervid import EmotionRecognizer

    cfg = serve_config(**json.loads(os.environ.get(ENV_CONFIG) or "{}"))
    kwargs: dict[str, Any] = {} if cfg["detector"] is None else {"detector": cfg["detector"]}
    rec = EmotionRecognizer(cfg["model"], **kwargs)
    return create_app(rec, api_key=cfg["api_key"], max_upload_mb=float(cfg["max_upload_mb"]))
