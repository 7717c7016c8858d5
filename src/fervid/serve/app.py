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
``GET /models/{name}.onnx`` the ONNX files the page runs, from the weights catalogue
                            (:mod:`fervid.models.bundled`): ``yunet`` (face detector) and the
                            bundled emotion models (exported on first request into the
                            ``serve`` subfolder of fervid's cache, the CLI's: ``$FERVID_CACHE``,
                            else ``$XDG_CACHE_HOME/fervid`` or ``~/.cache/fervid``);
                            ``/models/{name}.json`` their labels, preprocessing and temperature;
                            ``/models/index.json`` the list (the page builds its model switch from it)
``GET /static/...``         the page's files; the large vendored ones are stored as ``NAME.gz``
                            and sent gzip-encoded, or decompressed to clients that do not
                            accept gzip (:mod:`fervid.serve.files`)

Errors are JSON, ``{"error": {"code": ..., "message": ...}}``, never a traceback: 400
(empty body, no ``file`` field, a ``file`` part without a file name, malformed multipart), 401
(``api_key`` set and the ``X-API-Key`` header or ``Authorization: Bearer`` token missing or
wrong), 404, 413 (body
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

import json
import math
import mimetypes
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fervid.errors import UserValueError
from fervid.inference.config import RecognizerConfig
from fervid.inference.recognizer import EmotionRecognizer
from fervid.serve.browser import BrowserModels
from fervid.serve.files import PrecompressedStaticFiles
from fervid.serve.guards import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    MULTIPART_OVERHEAD,
    ApiError,
    BodyTooLarge,
    Guard,
    check_api_key,
    http_error,
    log,
    validation_error,
)
from fervid.serve.routers import STATIC_DIR, api, page
from fervid.serve.schemas import BatchResult, Box, ErrorBody, ErrorResponse, Face, Health, PredictResult
from fervid.serve.state import ServeState
from fervid.version import __version__

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_MB",
    "ENV_CONFIG",
    "MULTIPART_OVERHEAD",
    "STATIC_DIR",
    "ApiError",
    "BatchResult",
    "BodyTooLarge",
    "Box",
    "BrowserModels",
    "ErrorBody",
    "ErrorResponse",
    "Face",
    "Health",
    "PredictResult",
    "SERVICE_KEYS",
    "app_from_env",
    "check_api_key",
    "check_limits",
    "create_app",
    "serve_config",
]

ENV_CONFIG = "FERVID_SERVE_CONFIG"


def create_app(
    recognizer: EmotionRecognizer,
    *,
    api_key: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int | None = None,
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
        max_pixels: largest image, in pixels declared by its header (default: the
            recognizer's ``config.max_pixels``, 50 000 000 unless set).
        max_batch: most images in one ``/v1/predict/batch`` request.
        max_concurrency: predictions that may run at once in worker threads.
        load: load the recognizer when the app starts (lifespan), not on the first request.
        cache_dir: where the browser's ONNX models are exported, subfolder ``serve``
            (default: fervid's cache folder, :func:`fervid.runtime.cache_dir`, as the CLI).
    """
    if max_pixels is None:
        config = getattr(recognizer, "config", None)  # any recognizer-like object may be served
        max_pixels = config.max_pixels if isinstance(config, RecognizerConfig) else DEFAULT_MAX_PIXELS
    check_limits(
        max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_batch=max_batch, max_concurrency=max_concurrency
    )
    mimetypes.add_type("text/javascript", ".mjs")
    mimetypes.add_type("application/wasm", ".wasm")
    check_api_key(api_key)
    state = ServeState(
        recognizer,
        api_key,
        max_bytes=int(max_upload_mb * 2**20),
        max_pixels=int(max_pixels),
        max_batch=int(max_batch),
        limiter=anyio.CapacityLimiter(max_concurrency),
        browser=BrowserModels(Path(cache_dir) if cache_dir is not None else None),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load:
            await anyio.to_thread.run_sync(state.ensure_loaded)
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
    app.state.browser_models = state.browser
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.include_router(api)
    app.include_router(page)
    app.mount("/static", PrecompressedStaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(Guard, max_body=state.max_bytes + MULTIPART_OVERHEAD, limit=state.max_bytes)
    return app


def check_limits(**limits: Any) -> None:
    """Refuse (:class:`~fervid.errors.UserValueError`, naming it) a service limit that is not a
    positive finite number: ``max_upload_mb`` any number (MiB), the others whole numbers. A
    limit of NaN, infinity, ``True`` or ``"16"`` (from ``FERVID_SERVE_CONFIG``'s JSON) must not
    become a traceback at start-up nor a limit that means something else."""
    for name, value in limits.items():
        whole = name != "max_upload_mb"
        ok_type = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
        if not ok_type or not value > 0 or not math.isfinite(value * (1 if whole else 2**20)):
            what = "a whole number >= 1" if whole else "a positive finite number of MiB"
            raise UserValueError(f"{name} must be {what}, got {value!r}")


# --------------------------------------------------------------------------- several processes


SERVICE_KEYS = ("api_key", "max_upload_mb")
"""The keys of :data:`ENV_CONFIG` that are the service's; every other one is a recognizer config field."""


def serve_config(
    config: RecognizerConfig | None = None,
    api_key: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
) -> dict[str, Any]:
    """The JSON of :data:`ENV_CONFIG`: the whole recognizer config
    (:meth:`RecognizerConfig.to_dict`, one key per field) and the service's own settings."""
    return {**(config or RecognizerConfig()).to_dict(), "api_key": api_key, "max_upload_mb": max_upload_mb}


def app_from_env() -> FastAPI:
    """App factory for ASGI servers that import a string, e.g. several worker processes:

        FERVID_SERVE_CONFIG='{"model": "default"}' uvicorn --factory fervid.serve.app:app_from_env --workers 2

    ``FERVID_SERVE_CONFIG`` is JSON with the fields of :class:`~fervid.inference.config.RecognizerConfig`
    (``model``, ``detector``, ``photo_max_side``, ``threshold``, ``max_pixels``...), ``api_key``
    and ``max_upload_mb``, all optional (an unknown key is an error naming it);
    ``fervid serve --workers N`` sets it to its whole config (:func:`serve_config`). Each
    process loads its own copy of the model."""
    text = os.environ.get(ENV_CONFIG) or "{}"
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UserValueError(f"{ENV_CONFIG} is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(data, dict):
        raise UserValueError(f"{ENV_CONFIG} must be a JSON object, got {type(data).__name__}")
    service = {k: data.pop(k) for k in SERVICE_KEYS if k in data}
    try:
        rec = EmotionRecognizer.from_config(RecognizerConfig.from_dict(data))
        return create_app(
            rec,
            api_key=service.get("api_key"),
            max_upload_mb=service.get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB),
        )
    except UserValueError as e:
        raise UserValueError(f"{ENV_CONFIG}: {e}") from None
